"""When a stand-in operator takes over: no progress for N steps, or out of the demonstrations' region.

A person watching a robot learn takes over when it is stuck or heading somewhere it has never been
shown. These are the two rules a scripted operator (``robot_rl.sim_twin.operator``) applies, so that the
effect of interventions can be measured and tested without a person.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence

import numpy as np


class ProgressWatch:
    """"No progress for ``window_steps`` steps": the best progress value of the last
    ``window_steps`` steps is less than ``min_progress`` above the value just before them.

    Progress is any scalar that rises toward success (the twin's operator uses the task's dense
    reward, -|angle error| / pi on the valve). The first ``window_steps`` steps of an episode never
    count as stuck: the policy has had no chance yet.
    """

    def __init__(self, window_steps: int, min_progress: float) -> None:
        if window_steps < 1 or not min_progress >= 0:
            raise ValueError(f"ProgressWatch: window_steps must be >= 1 and min_progress >= 0, "
                             f"got {window_steps}, {min_progress}")
        self.window_steps, self.min_progress = int(window_steps), float(min_progress)
        self._values: deque[float] = deque(maxlen=self.window_steps + 1)

    def reset(self) -> None:
        """A new episode, or a handback: the policy gets a fresh window."""
        self._values.clear()

    def stuck(self, progress: float) -> bool:
        """Adds this step's progress; True when the last window made no progress."""
        self._values.append(float(progress))
        if len(self._values) <= self.window_steps:
            return False
        before, *window = self._values
        return max(window) - before < self.min_progress


class DemoRegion:
    """The region of observation space the demonstrations cover, as nearest-neighbour distances.

    Distances are Euclidean on the chosen columns, each scaled by its standard deviation over the
    demonstrations. The radius is the ``quantile`` of every demonstration frame's distance to the
    nearest frame of *another* demonstration episode (so a region of one densely sampled
    trajectory is not a thread), times ``margin``. An observation farther than that from every
    demonstration frame is outside.
    """

    def __init__(self, observations: np.ndarray, episode_ids: np.ndarray, *,
                 columns: Sequence[int] | slice | None = None, quantile: float = 0.99,
                 margin: float = 1.0) -> None:
        obs = np.asarray(observations, dtype=np.float64)
        ids = np.asarray(episode_ids)
        if obs.ndim != 2 or len(obs) != len(ids):
            raise ValueError(f"DemoRegion: observations {obs.shape} and episode_ids {ids.shape} "
                             "must be (frames, values) and (frames,)")
        if len(np.unique(ids)) < 2:
            raise ValueError("DemoRegion: needs at least two demonstration episodes (the radius "
                             "comes from distances between episodes)")
        if not 0.0 < quantile <= 1.0 or not margin > 0:
            raise ValueError(f"DemoRegion: quantile in (0, 1] and margin > 0, got {quantile}, "
                             f"{margin}")
        self.columns = slice(None) if columns is None else columns
        points = obs[:, self.columns]
        self.scale = np.where(points.std(axis=0) > 1e-9, points.std(axis=0), 1.0)
        self.points = points / self.scale
        nearest = np.full(len(points), np.inf)
        for episode in np.unique(ids):
            mine = ids == episode
            nearest[mine] = self._distances(self.points[mine], self.points[~mine])
        self.radius = float(np.quantile(nearest, quantile) * margin)

    @staticmethod
    def _distances(queries: np.ndarray, points: np.ndarray) -> np.ndarray:
        """Each query's distance to its nearest point (chunked: memory stays small)."""
        out = np.empty(len(queries))
        for start in range(0, len(queries), 256):
            q = queries[start:start + 256]
            d2 = (q * q).sum(1)[:, None] - 2 * q @ points.T + (points * points).sum(1)[None, :]
            out[start:start + 256] = np.sqrt(np.maximum(d2.min(axis=1), 0.0))
        return out

    def distance(self, observation: np.ndarray) -> float:
        """Scaled distance from one observation to the nearest demonstration frame."""
        x = np.asarray(observation, dtype=np.float64)[self.columns] / self.scale
        return float(self._distances(x[None, :], self.points)[0])

    def outside(self, observation: np.ndarray) -> bool:
        return self.distance(observation) > self.radius
