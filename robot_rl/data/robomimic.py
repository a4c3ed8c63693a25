"""Export an episode store to robomimic's HDF5 layout (needs ``h5py``).

Layout written: ``data`` (attrs ``total``, ``env_args`` JSON) with one ``demo_<i>`` group per
episode (attr ``num_samples``) holding ``actions``, ``rewards``, ``dones``, ``obs/<key>`` and,
where the store has ``next_<key>``, ``next_obs/<key>``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from robot_rl.data.errors import DatasetError
from robot_rl.data.replay import store_action_mode
from robot_rl.data.store import OVERWRITE_HINT, EpisodeStore

ROBOMIMIC_GYM_ENV_TYPE = 2  # robomimic's EnvType.GYM_TYPE
NON_OBS_KEYS = ("action", "reward", "terminated", "truncated")


def export_robomimic_hdf5(input: str | os.PathLike[str], output: str | os.PathLike[str], *,
                          obs_keys: Sequence[str] | None = None, action_key: str = "action",
                          reward_key: str = "reward", done_key: str = "terminated",
                          env_args: Mapping[str, Any] | None = None,
                          overwrite: bool = False) -> dict[str, Any]:
    """Write ``output`` (.hdf5) episode by episode; returns a summary.

    ``dones`` is ``done_key`` where the store has it, else 1 on each episode's last step only;
    missing rewards are written as zeros (robomimic's loader expects the dataset).
    """
    try:
        import h5py
    except ImportError as err:  # optional dependency of the data layer
        raise DatasetError(output, "robomimic export needs h5py (pip install 'h5py>=3.8,<4')") \
            from err
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
        for index in range(store.n_episodes):
            _write_demo(data.create_group(f"demo_{index}"), store, index, obs_keys, action_key,
                        reward_key, done_key)
        data.attrs["total"] = store.n_steps
        data.attrs["env_args"] = json.dumps(args)
    os.replace(partial, output)  # a reader never sees a half-written export
    return {"output": str(output), "n_demos": store.n_episodes, "total": store.n_steps,
            "obs_keys": list(obs_keys)}


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
    wanted |= {k for k in (reward_key, done_key) if k in store.keys}
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
    specs = store.specs
    for group_name, prefix in (("obs", ""), ("next_obs", "next_")):
        present = [k for k in obs_keys if f"{prefix}{k}" in steps]
        if not present:
            continue
        group = demo.create_group(group_name)
        for k in present:
            compression = "gzip" if specs[f"{prefix}{k}"].is_image else None
            group.create_dataset(k, data=steps[f"{prefix}{k}"], compression=compression)
