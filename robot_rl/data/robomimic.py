"""Export an episode store to robomimic's HDF5 layout, and import it back (needs ``h5py``).

Layout written: ``data`` (attrs ``total``, ``env_args`` JSON) with one ``demo_<i>`` group per
episode (attr ``num_samples``) holding ``actions``, ``rewards``, ``dones``, ``obs/<key>`` and,
where the store has ``next_<key>``, ``next_obs/<key>``. What robomimic has no place for travels
where its loader does not look, so that an export imports back as it was: the store's robot,
units and calibration digest in ``env_args["robot_rl"]``, each episode's info as the demo's
``robot_rl_info`` attribute (JSON), and ``truncated`` (not an observation, not robomimic's
``dones``) as ``robot_rl_extra/truncated``.

Import reads that layout: ``actions`` -> ``action``, ``rewards`` -> ``reward``, ``dones`` ->
``terminated``, ``obs/<key>`` -> ``<key>``, ``next_obs/<key>`` -> ``next_<key>``; a file robot_rl
did not write gets its robot, task and calibration from the caller (default ``unknown``; the task
from ``env_args["env_name"]``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from robot_rl.data.errors import DatasetError
from robot_rl.data.store import OVERWRITE_HINT, EpisodeStore, remove_store
from robot_rl.data.transition_arrays import store_action_mode

ROBOMIMIC_GYM_ENV_TYPE = 2  # robomimic's EnvType.GYM_TYPE
NON_OBS_KEYS = ("action", "reward", "terminated", "truncated")
EXTRA_GROUP = "robot_rl_extra"  # keys that are neither observations nor robomimic's own
INFO_ATTR = "robot_rl_info"


def export_robomimic_hdf5(input: str | os.PathLike[str], output: str | os.PathLike[str], *,
                          obs_keys: Sequence[str] | None = None, action_key: str = "action",
                          reward_key: str = "reward", done_key: str = "terminated",
                          env_args: Mapping[str, Any] | None = None,
                          overwrite: bool = False, progress: bool = False) -> dict[str, Any]:
    """Write ``output`` (.hdf5) episode by episode; returns a summary.

    ``dones`` is ``done_key`` where the store has it, else 1 on each episode's last step only;
    missing rewards are written as zeros (robomimic's loader expects the dataset).
    """
    h5py = _h5py(output)
    output = Path(output)
    _check_output(output, overwrite, h5py)
    store = EpisodeStore.open(input, "r")
    if action_key not in store.keys:
        raise DatasetError(store.path, f"no action key '{action_key}'; keys are {list(store.keys)}")
    if obs_keys is None:
        obs_keys = [k for k in store.keys if k not in (action_key, reward_key, done_key)
                    and k not in NON_OBS_KEYS and not k.startswith("next_")]
    missing = [k for k in obs_keys if k not in store.keys]
    if missing:
        raise DatasetError(store.path, f"no observation key(s) {missing}")
    attrs = store.attrs
    # a twin env reads the actions in the mode they were recorded in
    args = dict(env_args or {"env_name": attrs["task"], "type": ROBOMIMIC_GYM_ENV_TYPE,
                             "env_kwargs": {"config": {"action_mode": store_action_mode(store)}}})
    args.setdefault("robot_rl", {"robot": attrs["robot"], "units": attrs["units"],
                                 "calibration_digest": attrs["calibration_digest"]})
    partial = output.with_name(output.name + ".partial")
    with h5py.File(partial, "w") as f:
        data = f.create_group("data")
        infos = store.episode_infos()
        for index in tqdm(range(store.n_episodes), desc="export robomimic", unit="episode",
                          disable=not progress, delay=0.5):
            demo = data.create_group(f"demo_{index}")
            _write_demo(demo, store, index, obs_keys, action_key, reward_key, done_key)
            demo.attrs[INFO_ATTR] = json.dumps(infos[index], sort_keys=True)
        data.attrs["total"] = store.n_steps
        data.attrs["env_args"] = json.dumps(args)
    os.replace(partial, output)  # a reader never sees a half-written export
    return {"output": str(output), "n_demos": store.n_episodes, "total": store.n_steps,
            "obs_keys": list(obs_keys)}


def _h5py(path: str | os.PathLike[str]) -> Any:
    try:
        import h5py
    except ImportError as err:  # optional dependency of the data layer
        raise DatasetError(path, "robomimic HDF5 needs h5py (pip install 'h5py>=3.8,<4')") \
            from err
    return h5py


def _check_output(output: Path, overwrite: bool, h5py: Any) -> None:
    """An existing output is replaced only with ``overwrite``, and only if it is an HDF5 file:
    a folder, a link or a file of another kind (notes, a video) is never replaced."""
    if not (output.exists() or output.is_symlink()):
        return
    if output.is_symlink() or not output.is_file() or not h5py.is_hdf5(output):
        raise DatasetError(output, "exists and is not an HDF5 file; robot_rl never replaces it, "
                                   "even with --overwrite: write to another path")
    if not overwrite:
        raise DatasetError(output, f"already exists; {OVERWRITE_HINT}")


def _write_demo(demo: Any, store: EpisodeStore, index: int, obs_keys: Sequence[str],
                action_key: str, reward_key: str, done_key: str) -> None:
    wanted = {*obs_keys, action_key, *(f"next_{k}" for k in obs_keys)}
    wanted |= {k for k in (reward_key, done_key, *NON_OBS_KEYS) if k in store.keys}
    steps = store.episode(index, [k for k in store.keys if k in wanted])
    n = len(steps[action_key])
    demo.attrs["num_samples"] = n
    demo.create_dataset("actions", data=steps[action_key])
    demo.create_dataset("rewards", data=steps.get(reward_key, np.zeros(n, np.float32)))
    if done_key in steps:
        dones = steps[done_key].astype(np.int64)
    else:
        dones = np.zeros(n, np.int64)
        dones[-1] = 1
    demo.create_dataset("dones", data=dones)
    extras = [k for k in NON_OBS_KEYS if k in steps and k not in (action_key, reward_key,
                                                                     done_key)]
    if extras:
        group = demo.create_group(EXTRA_GROUP)
        for k in extras:
            group.create_dataset(k, data=steps[k])
    specs = store.specs
    for group_name, prefix in (("obs", ""), ("next_obs", "next_")):
        present = [k for k in obs_keys if f"{prefix}{k}" in steps]
        if not present:
            continue
        group = demo.create_group(group_name)
        for k in present:
            compression = "gzip" if specs[f"{prefix}{k}"].is_image else None
            group.create_dataset(k, data=steps[f"{prefix}{k}"], compression=compression)


def import_robomimic_hdf5(input: str | os.PathLike[str], output: str | os.PathLike[str], *,
                          robot: str | None = None, task: str | None = None,
                          calibration_digest: str | None = None, overwrite: bool = False,
                          progress: bool = False) -> dict[str, Any]:
    """Read a robomimic HDF5 file into a new episode store; returns a summary.

    Demos are read in their numeric order (``demo_2`` before ``demo_10``). ``dones`` becomes the
    bool ``terminated``; a file that robot_rl exported comes back with its attributes, episode
    info and ``truncated``. Nothing is left at ``output`` if the import fails.
    """
    h5py = _h5py(input)
    source = Path(input)
    if not source.is_file() or not h5py.is_hdf5(source):
        raise DatasetError(source, "not an HDF5 file (a robomimic dataset is one .hdf5 file)")
    out = Path(output)
    created = False
    try:
        with h5py.File(source, "r") as f:
            data = f.get("data")
            if not isinstance(data, h5py.Group):
                raise DatasetError(source, "no 'data' group: not a robomimic dataset")
            demos = sorted((name for name in data if name.startswith("demo_")),
                           key=lambda name: _demo_number(source, name))
            if not demos:
                raise DatasetError(source, "no demo_<i> groups under 'data'")
            attrs = _import_attrs(source, data, robot, task, calibration_digest)
            store = EpisodeStore.create(out, overwrite=overwrite, **attrs)
            created = True
            with store:
                for name in tqdm(demos, desc="import robomimic", unit="episode",
                                 disable=not progress, delay=0.5):
                    steps, info = _read_demo(source, data[name], name)
                    store.add_episode(steps, info)
                summary = {"output": str(out), "n_episodes": store.n_episodes,
                           "n_steps": store.n_steps, "keys": list(store.keys)}
    except BaseException:
        if created:
            remove_store(out)
        raise
    return summary


def _demo_number(path: Path, name: str) -> int:
    try:
        return int(name.removeprefix("demo_"))
    except ValueError:
        raise DatasetError(path, f"data/{name}: expected demo_<number>") from None


def _import_attrs(path: Path, data: Any, robot: str | None, task: str | None,
                  calibration_digest: str | None) -> dict[str, Any]:
    try:
        env_args = json.loads(data.attrs.get("env_args", "{}"))
    except (TypeError, ValueError) as err:
        raise DatasetError(path, f"data attribute env_args is not JSON: {err}") from err
    ours = env_args.get("robot_rl", {}) if isinstance(env_args, dict) else {}
    config = (env_args.get("env_kwargs", {}) or {}).get("config", {}) or {}
    extra = {"action_mode": config["action_mode"]} if "action_mode" in config else {}
    if not ours:
        extra["imported_from"] = {"format": "robomimic HDF5", "path": str(path)}
    return {"robot": robot or ours.get("robot") or "unknown",
            "task": task or env_args.get("env_name") or "unknown",
            "calibration_digest": calibration_digest or ours.get("calibration_digest")
            or "unknown", "units": dict(ours.get("units", {})), "extra": extra}


def _read_demo(path: Path, demo: Any, name: str) -> tuple[dict[str, np.ndarray], dict]:
    missing = [k for k in ("actions", "rewards", "dones") if k not in demo]
    if missing:
        raise DatasetError(path, f"data/{name}: missing {missing}")
    steps = {"action": demo["actions"][()], "reward": demo["rewards"][()],
             "terminated": demo["dones"][()].astype(bool)}
    for group_name, prefix in (("obs", ""), ("next_obs", "next_"), (EXTRA_GROUP, "")):
        for key, values in (demo[group_name].items() if group_name in demo else ()):
            steps[f"{prefix}{key}"] = values[()]
    lengths = {k: len(v) for k, v in steps.items()}
    if len(set(lengths.values())) != 1:
        raise DatasetError(path, f"data/{name}: datasets of different lengths {lengths}")
    info = {"source_demo": name}
    if INFO_ATTR in demo.attrs:
        try:
            info = json.loads(demo.attrs[INFO_ATTR])
        except (TypeError, ValueError) as err:
            raise DatasetError(path, f"data/{name}: attribute {INFO_ATTR} is not JSON: "
                                     f"{err}") from err
    return steps, info
