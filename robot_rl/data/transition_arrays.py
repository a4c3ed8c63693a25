"""Flat transition arrays for a replay buffer, loaded from an episode store."""

from __future__ import annotations

import os

import numpy as np

from robot_rl.data.errors import DatasetError
from robot_rl.data.store import EpisodeStore

# Units of the keys `transitions` reads, for a store's ``units`` attribute.
TRANSITION_UNITS = {"observation": "task observation layout (SI units)",
                    "action": "normalised [-1, 1]", "reward": "1",
                    "next_observation": "task observation layout (SI units)",
                    "terminated": "bool", "truncated": "bool"}


# A store's actions are in its task's action mode, named in ``attrs["extra"]``. Stores written
# before relative actions existed do not name it: theirs are absolute targets.
ACTION_MODE_KEY = "action_mode"
UNNAMED_ACTION_MODE = "absolute"


def action_mode_extra(mode: str) -> dict[str, str]:
    """The ``extra`` attributes that name a new store's action mode."""
    return {ACTION_MODE_KEY: mode}


def store_action_mode(store: EpisodeStore) -> str:
    """The action mode a store's actions were recorded in."""
    return store.attrs.get("extra", {}).get(ACTION_MODE_KEY, UNNAMED_ACTION_MODE)


def check_action_mode(store: EpisodeStore, mode: str, consumer: str) -> None:
    """Refuses a store whose actions are in another mode than ``mode``: an absolute target read
    as a step (or the reverse) trains a policy that commands something else entirely."""
    recorded = store_action_mode(store)
    if recorded != mode:
        raise DatasetError(store.path, f"actions recorded in {recorded} mode, {consumer} acts in "
                                       f"{mode} mode: record the data again in that mode, or set "
                                       f"the task's action_mode to {recorded!r}")


def check_observation_size(data: dict[str, np.ndarray], where: str, size: int,
                           consumer: str) -> None:
    """Refuses transitions whose observations are not ``size`` wide, naming both sides.

    A dataset of another task, or one recorded before a task's observation changed, would
    otherwise train a network of the wrong shape for minutes before anything noticed."""
    found = int(data["observation"].shape[1])
    if found != size:
        raise DatasetError(where, f"observations have {found} values, {consumer} makes {size}: "
                                  "recorded for another task, or before the task's observation "
                                  "changed (record it again)")


def read_finite(store: EpisodeStore, key: str) -> np.ndarray:
    """All committed rows of a key for training: refused, one line naming the store, the key and
    the first episode and step, when a float value is NaN or inf (what ``dataset validate``
    refuses; NaN is also what a lost chunk of a float key reads as)."""
    rows = store.read(key)
    if rows.dtype.kind not in "fc":
        return rows
    bad = ~np.isfinite(rows.reshape(len(rows), -1)).all(axis=1)
    if bad.any():
        first = int(np.argmax(bad))
        episode, step = store.episode_of_row(first)
        raise DatasetError(store.path, f"data/{key}, episode {episode} step {step}: NaN or inf "
                                       f"({int(bad.sum())} step(s) of {key} hold one); training "
                                       f"refuses non-finite data (`robot-rl dataset validate` "
                                       f"lists every problem)")
    return rows


def transitions(store: EpisodeStore | str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """observation, action, reward, next_observation, done (float32 0/1 = terminated).

    Refuses what ``dataset validate`` refuses among the keys it reads: a missing or unreadable
    chunk (``EpisodeStore.read`` checks every chunk it reads) and a NaN or inf float.

    Without a ``next_observation`` key it is rebuilt from the next step of the same episode; an
    episode's last step then has no successor and is kept only if it terminated (its
    next_observation is never used by the TD target, since done = 1).
    """
    if not isinstance(store, EpisodeStore):
        store = EpisodeStore.open(store, "r")
    required = ("observation", "action", "reward", "terminated")
    missing = [k for k in required if k not in store.keys]
    if missing:
        raise DatasetError(store.path,
                           f"transitions need key(s) {missing}; have {list(store.keys)}")
    store.episode_infos()  # the episode table must read too: validate refuses it otherwise
    obs = read_finite(store, "observation")
    terminated = store.read("terminated").astype(bool)  # every chunk present: read() checks
    out = {"observation": obs, "action": read_finite(store, "action"),
           "reward": read_finite(store, "reward").astype(np.float32),
           "done": terminated.astype(np.float32)}
    if "next_observation" in store.keys:
        out["next_observation"] = read_finite(store, "next_observation")
        return out
    nxt = np.empty_like(obs)
    nxt[:-1] = obs[1:]
    ends = store.episode_ends
    last = ends - 1
    nxt[last] = obs[last]
    keep = np.ones(len(obs), dtype=bool)
    keep[last] = terminated[last]
    out["next_observation"] = nxt
    return {k: v[keep] for k, v in out.items()}
