"""The latest measured state of one robot, assembled from joint-state and object-state messages.

Freshness is judged by arrival time on this node's steady clock (``Node.steady_s``: monotonic, or
sim time under ``use_sim_time``), not by header stamps, so clock offsets between machines do not
make a live robot look stale. The stamps are kept to tell which measurement came after which.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np

from robot_rl.tasks.base import TaskState


class JointOrder:
    """Reorders a message's joints into the calibration's order (cached per name list)."""

    def __init__(self, joint_names: Sequence[str]) -> None:
        self.joint_names = tuple(joint_names)
        self._index: dict[tuple[str, ...], np.ndarray] = {}

    def indices(self, names: Sequence[str]) -> np.ndarray:
        key = tuple(names)
        if key not in self._index:
            where = {n: i for i, n in enumerate(key)}
            missing = [n for n in self.joint_names if n not in where]
            if missing:
                raise ValueError(f"joint state lacks joints {missing} (has {list(key)}, "
                                 f"expected {list(self.joint_names)})")
            self._index[key] = np.array([where[n] for n in self.joint_names])
        return self._index[key]

    def reorder(self, names: Sequence[str], values: Sequence[float], what: str) -> np.ndarray:
        if len(values) == 0:
            return np.zeros(len(self.joint_names))
        if len(values) != len(names):
            raise ValueError(f"joint state: {what} has {len(values)} values for "
                             f"{len(names)} names")
        return np.asarray(values, dtype=np.float64)[self.indices(names)]


class LatestState:
    """Latest joint and object samples of one robot; a TaskState while both are fresh.

    ``sites``: computes the task's named sites from joints and object position (the drawer's hook
    tip and handle); None when the task needs none.

    ``object_optional``: for a robot whose policy and reward read no object (a pixel task whose
    success a classifier judges), as in a cell with no sensor on the object. A TaskState then
    needs fresh joints only; while no fresh object sample is at hand its ``object_position`` is
    NaN and it has no sites, so that nothing can read a stale or absent object as measured (the
    task's own success is then unknown: see ``EpisodeMachine``)."""

    def __init__(self, joint_names: Sequence[str], max_age_s: float,
                 sites: Callable[[np.ndarray, float], dict[str, np.ndarray]] | None = None,
                 object_optional: bool = False) -> None:
        if not max_age_s > 0:
            raise ValueError(f"max_age_s must be > 0, got {max_age_s}")
        self.order = JointOrder(joint_names)
        self.sites = sites
        self.object_optional = bool(object_optional)
        self.max_age_s = float(max_age_s)
        self.joint_positions_rad: np.ndarray | None = None
        self.joint_velocities_rad_s: np.ndarray | None = None
        self.joint_stamp_s = 0.0
        self.joint_received_s = -np.inf
        self.object_position: float | None = None
        self.object_velocity = 0.0
        self.object_received_s = -np.inf
        self.object_stamp_s: float | None = None

    def on_joints(self, names: Sequence[str], position: Sequence[float],
                  velocity: Sequence[float], stamp_s: float, received_s: float) -> None:
        self.joint_positions_rad = self.order.reorder(names, position, "position")
        self.joint_velocities_rad_s = self.order.reorder(names, velocity, "velocity")
        self.joint_stamp_s, self.joint_received_s = float(stamp_s), float(received_s)

    def on_object(self, position: Sequence[float], velocity: Sequence[float],
                  received_s: float, stamp_s: float | None = None) -> None:
        if len(position) < 1:
            raise ValueError("object state: position is empty (expected one value)")
        self.object_position = float(position[0])
        self.object_velocity = float(velocity[0]) if len(velocity) else 0.0
        self.object_received_s = float(received_s)
        self.object_stamp_s = None if stamp_s is None else float(stamp_s)

    @property
    def received_s(self) -> float:
        """When the older of the samples a state needs arrived (-inf before they have)."""
        if self.object_optional:
            return self.joint_received_s
        return min(self.joint_received_s, self.object_received_s)

    @property
    def stamp_s(self) -> float | None:
        """The older of the needed samples' stamps; None while one of them is unknown."""
        if self.joint_positions_rad is None:
            return None
        if self.object_optional:
            return self.joint_stamp_s
        if self.object_stamp_s is None:
            return None
        return min(self.joint_stamp_s, self.object_stamp_s)

    def staleness(self, now_s: float) -> str | None:
        """Why there is no usable state now, or None."""
        if self.joint_positions_rad is None:
            return "no joint state received yet"
        if self.object_position is None and not self.object_optional:
            return "no object state received yet"
        needed = [("joint state", self.joint_received_s)]
        if not self.object_optional:
            needed.append(("object state", self.object_received_s))
        for what, received in needed:
            age = now_s - received
            if age > self.max_age_s:
                return f"{what} is {age * 1e3:.0f} ms old (limit {self.max_age_s * 1e3:.0f} ms)"
        return None

    def task_state(self, now_s: float) -> TaskState | None:
        if self.staleness(now_s) is not None:
            return None
        assert self.joint_positions_rad is not None and self.joint_velocities_rad_s is not None
        fresh = (self.object_position is not None
                 and now_s - self.object_received_s <= self.max_age_s)
        if not fresh:  # only where the object is optional (staleness said so otherwise)
            return TaskState(joint_positions_rad=self.joint_positions_rad.copy(),
                             joint_velocities_rad_s=self.joint_velocities_rad_s.copy(),
                             object_position=math.nan, object_velocity=math.nan)
        assert self.object_position is not None
        sites = {} if self.sites is None else self.sites(self.joint_positions_rad,
                                                         self.object_position)
        return TaskState(joint_positions_rad=self.joint_positions_rad.copy(),
                         joint_velocities_rad_s=self.joint_velocities_rad_s.copy(),
                         object_position=self.object_position,
                         object_velocity=self.object_velocity, sites_m=sites)
