"""Leader-follower teleop: a second robot's joint states, mirrored onto this robot's joints.

follower[j] = scale[j] * leader[leader_names[j]] + offset_rad[j]. The leader may publish its
joints in any order and more of them than the follower has; a missing one stops the mirror.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


class LeaderMirror:
    def __init__(self, follower_names: Sequence[str], leader_names: Sequence[str] = (),
                 scale: Sequence[float] = (), offset_rad: Sequence[float] = ()) -> None:
        n = len(follower_names)
        self.follower_names = tuple(follower_names)
        self.leader_names = tuple(leader_names) or self.follower_names
        self.scale = np.asarray(scale, dtype=float) if len(scale) else np.ones(n)
        self.offset_rad = np.asarray(offset_rad, dtype=float) if len(offset_rad) else np.zeros(n)
        for what, size in (("leader_joints", len(self.leader_names)),
                           ("leader_scale", self.scale.size),
                           ("leader_offset_rad", self.offset_rad.size)):
            if size != n:
                raise ValueError(f"LeaderMirror: {what} has {size} entries, expected {n} (one per "
                                 f"follower joint {self.follower_names})")
        if not (np.isfinite(self.scale).all() and np.isfinite(self.offset_rad).all()):
            raise ValueError("LeaderMirror: leader_scale and leader_offset_rad must be finite")

    def targets(self, names: Sequence[str], positions_rad: Sequence[float]
                ) -> tuple[np.ndarray | None, str]:
        """Follower targets from one leader JointState, or None and why not."""
        if len(names) != len(positions_rad):
            return None, f"leader state has {len(names)} names but {len(positions_rad)} positions"
        index = {name: i for i, name in enumerate(names)}
        missing = [n for n in self.leader_names if n not in index]
        if missing:
            return None, f"leader state lacks joints {missing}"
        leader = np.array([positions_rad[index[n]] for n in self.leader_names], dtype=float)
        if not np.isfinite(leader).all():
            return None, "leader state has non-finite positions"
        return self.scale * leader + self.offset_rad, ""
