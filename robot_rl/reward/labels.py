"""Success labels for recorded frames, and the frames' features.

A *frame* is the state a step's reward judges. In a transition store (one with
``next_observation``) frame t of an episode is ``next_observation[t]``, the state after action t;
in a store of plain rows (the recorder's, an imported bag's) frame t is row t. Labels are success
ranges per episode, ``[first, last]`` frame indices within the episode, both included; an episode
listed without ranges is all failure; an episode not listed is unlabelled and is not used. The file
is YAML that a person can read and edit::

    dataset: runs/valve/dataset.zarr
    steps: 2140          # the dataset's steps when it was labelled: a changed dataset is refused
    episodes:
      0: [[27, 27]]      # frame 27 of episode 0 shows success
      1: []              # episode 1 never does

Automatic labels (``from_reward``) mark success where a dataset's ground-truth reward says so (at
least ``success_reward``: 0 is success under the tasks' sparse reward).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from robot_rl.data import DatasetError, EpisodeStore

Range = tuple[int, int]
NEXT_KEY = {"observation": "next_observation"}  # a transition store's frame of each key


def frame_key(store: EpisodeStore, key: str) -> str:
    """The store key that holds ``key``'s frames (``next_observation`` for ``observation`` in a
    transition store)."""
    nxt = NEXT_KEY.get(key)
    return nxt if nxt is not None and nxt in store.keys else key


@dataclass
class FrameLabels:
    dataset: str
    steps: int
    episodes: dict[int, list[Range]] = field(default_factory=dict)

    # ---- making them ---------------------------------------------------------------------
    @classmethod
    def from_ranges(cls, store: EpisodeStore, success: Mapping[int, Sequence[Range]],
                    failure: Iterable[int] = ()) -> FrameLabels:
        """Success ranges a person marked, plus episodes marked all failure."""
        labels = cls(str(store.path), store.n_steps)
        for episode in failure:
            labels.add(store, int(episode), [])
        for episode, ranges in success.items():
            labels.add(store, int(episode), [tuple(r) for r in ranges])
        return labels

    @classmethod
    def from_reward(cls, store: EpisodeStore, episodes: Iterable[int] | None = None,
                    success_reward: float = 0.0) -> FrameLabels:
        """Success where the reward is at least ``success_reward``. Reward t judges frame t of a
        transition store, and row t + 1 of a store of plain rows."""
        if "reward" not in store.keys:
            raise DatasetError(store.path, "automatic labels need a 'reward' key; label the "
                                           "success frames by hand (--success EPISODE:FIRST-LAST)")
        shift = 0 if "next_observation" in store.keys else 1
        labels = cls(str(store.path), store.n_steps)
        chosen = range(store.n_episodes) if episodes is None else episodes
        for episode in chosen:
            reward = store.episode(int(episode), ["reward"])["reward"].reshape(-1)
            frames = np.flatnonzero(reward >= success_reward) + shift
            frames = frames[frames < len(reward)]
            labels.add(store, int(episode), _runs(frames))
        return labels

    def add(self, store: EpisodeStore, episode: int, ranges: list[Range]) -> None:
        if not 0 <= episode < store.n_episodes:
            raise DatasetError(store.path, f"labels: episode {episode} does not exist (the "
                                           f"dataset has episodes 0-{store.n_episodes - 1})")
        length = int(store.episode_lengths[episode])
        for first, last in ranges:
            if not 0 <= first <= last < length:
                raise DatasetError(store.path, f"labels: episode {episode}: success range "
                                               f"{first}-{last} is not within its frames "
                                               f"0-{length - 1}")
        self.episodes[episode] = sorted(self.episodes.get(episode, []) + list(ranges))

    # ---- the file ------------------------------------------------------------------------
    def save(self, path: str | os.PathLike[str], overwrite: bool = False) -> Path:
        path = Path(path)
        if path.exists() and not overwrite:
            raise DatasetError(path, "already exists; pass --overwrite to replace it")
        data = {"dataset": self.dataset, "steps": self.steps,
                "episodes": {k: [list(r) for r in v] for k, v in sorted(self.episodes.items())}}
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(yaml.safe_dump(data, default_flow_style=None, sort_keys=False))
        os.replace(tmp, path)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> FrameLabels:
        path = Path(path)
        try:
            data = yaml.safe_load(path.read_text())
        except (OSError, yaml.YAMLError) as err:
            raise DatasetError(path, f"labels do not load: {err}") from err
        if not isinstance(data, dict) or not isinstance(data.get("episodes"), dict):
            raise DatasetError(path, "labels: expected a mapping with 'dataset', 'steps' and "
                                     "'episodes: {episode: [[first, last], ...]}'")
        episodes: dict[int, list[Range]] = {}
        for key, ranges in data["episodes"].items():
            try:
                episodes[int(key)] = [(int(a), int(b)) for a, b in (ranges or [])]
            except (TypeError, ValueError) as err:
                raise DatasetError(path, f"labels: episode {key}: expected a list of "
                                         f"[first, last] pairs, got {ranges!r}") from err
        return cls(str(data.get("dataset", "")), int(data.get("steps", -1)), episodes)

    def check(self, store: EpisodeStore) -> None:
        """Refuses labels made for a dataset of another size (frames would be misattributed)."""
        if self.steps != store.n_steps:
            raise DatasetError(store.path, f"labels were made for a dataset of {self.steps} "
                                           f"steps ({self.dataset}); this one has "
                                           f"{store.n_steps}: label it again")
        for episode, ranges in list(self.episodes.items()):
            self.episodes.pop(episode)
            self.add(store, episode, ranges)  # checks the episode and its ranges again

    # ---- using them ----------------------------------------------------------------------
    def frames(self, store: EpisodeStore) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(store rows, success flags, episode of each) of every labelled frame."""
        self.check(store)
        ends = store.episode_ends
        rows, flags, ids = [], [], []
        for episode, ranges in sorted(self.episodes.items()):
            start = int(ends[episode - 1]) if episode else 0
            length = int(ends[episode]) - start
            success = np.zeros(length, dtype=bool)
            for first, last in ranges:
                success[first:last + 1] = True
            rows.append(start + np.arange(length))
            flags.append(success)
            ids.append(np.full(length, episode))
        if not rows:
            raise DatasetError(store.path, "labels: no episode is labelled")
        return np.concatenate(rows), np.concatenate(flags), np.concatenate(ids)

    @property
    def success_frames(self) -> int:
        return sum(last - first + 1 for ranges in self.episodes.values() for first, last in ranges)


def _runs(frames: np.ndarray) -> list[Range]:
    """Consecutive frame indices as [first, last] ranges."""
    if frames.size == 0:
        return []
    breaks = np.flatnonzero(np.diff(frames) > 1)
    firsts = np.r_[frames[0], frames[breaks + 1]]
    lasts = np.r_[frames[breaks], frames[-1]]
    return [(int(a), int(b)) for a, b in zip(firsts, lasts)]


def frame_features(store: EpisodeStore, inputs: Sequence[tuple[str, int, int]]) -> np.ndarray:
    """Every frame's classifier input: for each (key, start, stop), columns start:stop of that
    key's frames (see the module), concatenated. Float32, shape (store steps, width)."""
    parts = []
    for key, start, stop in inputs:
        source = frame_key(store, key)
        if source not in store.keys:
            raise DatasetError(store.path, f"classifier input '{key}' is not a key of the "
                                           f"dataset; it has {list(store.keys)}")
        values = store.read(source)
        values = values.reshape(len(values), -1).astype(np.float32)
        if stop > values.shape[1]:
            raise DatasetError(store.path, f"classifier input '{key}[{start}:{stop}]': the "
                                           f"dataset's '{source}' has {values.shape[1]} values "
                                           "per step")
        parts.append(values[:, start:stop])
    return np.concatenate(parts, axis=1)


# ---- camera views ------------------------------------------------------------------------------
def is_view_key(store: EpisodeStore, key: str) -> bool:
    """Whether ``key`` holds camera views in the store: uint8 (H, W, 3) per step."""
    spec = store.specs.get(key)
    return (spec is not None and spec.dtype == np.uint8 and len(spec.step_shape) == 3
            and spec.step_shape[2] == 3)


def view_frames(store: EpisodeStore, key: str) -> tuple[np.ndarray, np.ndarray]:
    """(views (store steps, H, W, 3), valid (store steps,)): the view of every frame, with the
    frame rule of the module ("frame t is the state after action t").

    A pixel task's store keeps at row t the view the policy acted on: the view of observation t.
    In a transition store frame t is the state after action t, so its view is row t + 1's of the
    same episode; the last step of an episode has no stored view (its next frame is not kept, as
    no frame is stored twice) and is not valid. In a store of plain rows frame t is row t itself,
    every row valid."""
    if not is_view_key(store, key):
        raise DatasetError(store.path, f"'{key}' is not a camera view of the dataset (uint8 "
                                       f"(H, W, 3) per step); it has {list(store.keys)}")
    views = store.read(key)
    valid = np.ones(len(views), bool)
    if "next_observation" not in store.keys:
        return views, valid
    shifted = np.empty_like(views)
    shifted[:-1] = views[1:]
    last = store.episode_ends.astype(np.int64) - 1  # each episode's last step
    last = last[last >= 0]
    shifted[last] = 0
    valid[last] = False
    return shifted, valid


def labelled_image_frames(store: EpisodeStore, labels: FrameLabels, key: str,
                          vectors: Sequence[tuple[str, int, int]] = ()) -> tuple[
                              Any, np.ndarray, np.ndarray, int]:
    """(views, success flags, episode of each, frames left out) of every labelled frame that has
    a view (``view_frames``), with the vector inputs of the same frames beside the views where
    ``vectors`` are given (an ``image_classifier.ImageFrames``): frame t's vector is
    ``frame_features``' (``next_observation[t]`` in a transition store), its view
    ``view_frames``' (row t + 1's); a frame without a view is left out of both. Refuses labels
    whose success frames all lack a view, naming the cause and the cure."""
    views, rows, flags, ids, left_out = _labelled_view_rows(store, labels, key)
    if not vectors:
        return views[rows], flags, ids, left_out
    from robot_rl.reward.image_classifier import ImageFrames

    return ImageFrames(views[rows], frame_features(store, vectors)[rows]), flags, ids, left_out


def _labelled_view_rows(store: EpisodeStore, labels: FrameLabels, key: str
                        ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, int]:
    """(every frame's view, store rows of the labelled frames with a view, their flags and
    episodes, labelled frames left out)."""
    views, valid = view_frames(store, key)
    rows, flags, ids = labels.frames(store)
    keep = valid[rows]
    if flags.any() and not flags[keep].any():
        raise DatasetError(store.path, f"labels: none of the {int(flags.sum())} success frames "
                                       f"has a stored view: each is the last step of its "
                                       f"episode (the episode ended at success), whose view is "
                                       f"not kept. Record the classifier's data with the task's "
                                       f"terminate_on_success false (--set 'env_kwargs={{config: "
                                       f"{{observation: pixels, terminate_on_success: false}}}}') "
                                       f"so the robot holds at the goal and its success views "
                                       f"are recorded")
    return views, rows[keep], flags[keep], ids[keep], int((~keep).sum())
