"""Small transition datasets with a known success rule, for the learned reward's tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from robot_rl.data import EpisodeStore

UNITS = {"observation": "-", "next_observation": "-", "reward": "1"}


def store(path: Path, lengths: list[int], transitions: bool = True) -> EpisodeStore:
    """Episodes whose observation's column 0 rises from 0 to 1; success (reward 0) at >= 0.9."""
    store = EpisodeStore.create(path, robot="r", task="t", calibration_digest="d", units=UNITS)
    for k, n in enumerate(lengths):
        x = np.linspace(0.0, 1.0 if k % 2 == 0 else 0.6, n + 1, dtype=np.float32)
        obs = np.stack([x, np.full(n + 1, 0.1 * k, np.float32)], axis=1)
        steps = {"observation": obs[:-1], "reward": np.where(x[1:] >= 0.9, 0.0, -1.0)
                 .astype(np.float32)}
        if transitions:
            steps["next_observation"] = obs[1:]
        store.add_episode(steps, {"success": bool(k % 2 == 0)})
    return store


VIEW_UNITS = {**UNITS, "camera_color": "rgb8 view"}


def view_store(path: Path, lengths: list[int], success: list[list[int]],
               transitions: bool = True, size: int = 16) -> EpisodeStore:
    """Episodes whose camera view at row t of episode k is filled with 10 * k + t, and whose
    observation t is (10 * k + t, 0) (so a test can tell which row a frame's view or vector came
    from); reward 0 (success) at the frames in ``success[k]`` (frame t: the state after action t,
    as the reward judges)."""
    store = EpisodeStore.create(path, robot="r", task="t", calibration_digest="d",
                                units=VIEW_UNITS)
    for k, n in enumerate(lengths):
        obs = np.zeros((n + 1, 2), np.float32)
        obs[:, 0] = 10 * k + np.arange(n + 1)
        reward = np.full(n, -1.0, np.float32)
        reward[success[k]] = 0.0
        steps = {"observation": obs[:-1], "reward": reward,
                 "camera_color": np.stack([np.full((size, size, 3), 10 * k + t, np.uint8)
                                           for t in range(n)])}
        if transitions:
            steps["next_observation"] = obs[1:]
        store.add_episode(steps, {"success": bool(success[k])})
    return store
