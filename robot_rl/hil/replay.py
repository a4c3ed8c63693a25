"""Operator transitions go to the demonstration side of the replay as well as the online side.

HIL-SERL's rule: a correction is both experience (the online buffer, as every step the robot took)
and a demonstration (the offline buffer, which symmetric and balanced replay sample by its own
share, so a handful of corrections is not drowned by thousands of online steps). With the uniform
replay there is one buffer, so an operator transition is stored twice: the nearest equivalent,
twice the chance of being sampled. Room for them is reserved when the replay is made
(``factory.make_replay(..., extra_offline_capacity=)``), so they never overwrite the dataset.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from robot_rl.learning.factory import Replay, batch_from_steps
from robot_rl.learning.replay import ReplayBuffer

INTERVENTION_KEY = "intervention"  # per step: the operator commanded it (bool)


def intervention_mask(steps: Mapping[str, np.ndarray]) -> np.ndarray:
    """The steps the operator commanded; all False when the episode has no such key."""
    n = len(steps["reward"])
    if INTERVENTION_KEY not in steps:
        return np.zeros(n, dtype=bool)
    mask = np.asarray(steps[INTERVENTION_KEY]).astype(bool).reshape(-1)
    if mask.shape != (n,):
        raise ValueError(f"episode: '{INTERVENTION_KEY}' has {mask.size} values for {n} steps")
    return mask


def add_online_episode(replay: Replay, steps: Mapping[str, np.ndarray],
                       to_offline: bool = True) -> int:
    """Adds an online episode; its operator transitions also to the offline side when
    ``to_offline``. Returns how many went to the offline side."""
    batch = batch_from_steps(steps)
    replay.add_episode(batch)
    mask = intervention_mask(steps)
    if not to_offline or not mask.any():
        return 0
    corrections = {key: value[mask] for key, value in batch.items()}
    if isinstance(replay, ReplayBuffer):
        replay.add_episode(corrections)
    else:  # balanced and symmetric replay: their offline buffer
        replay.add_offline_episode(corrections)
    return int(mask.sum())
