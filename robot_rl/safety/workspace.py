"""Cartesian workspace bounds: named sites must stay inside an axis-aligned box (world frame, m).

A command that would take a site outside is scaled back along the straight joint-space segment
from a safe base configuration (the measured one, moved into the hard limits) toward the command,
to the last sampled point from which the whole sampled path is inside. The search is a bracketing
one: 16 evenly spaced fractions in one batched forward-kinematics call, then 16 more inside the
first bracket that leaves the box (resolution 1/256 of the step, the same as 8 bisection steps,
in two calls instead of eight, and it checks the path, not just its end).
"""

from __future__ import annotations

import numpy as np

from robot_rl.config import ConfigError
from robot_rl.robot_config import WorkspaceBounds
from robot_rl.safety.kinematics import Kinematics

_SUBDIVISIONS = 16


class WorkspaceGuard:
    def __init__(self, kinematics: Kinematics, bounds: WorkspaceBounds) -> None:
        missing = [s for s in bounds.sites if s not in kinematics.site_names]
        if missing:
            raise ConfigError(f"safety.workspace.sites: {', '.join(missing)} not in the model "
                              f"{kinematics.source}; its sites: {', '.join(kinematics.site_names)}")
        self.kinematics = kinematics
        self.sites = tuple(bounds.sites)
        self.lower_m = np.asarray(bounds.lower_m, dtype=float)
        self.upper_m = np.asarray(bounds.upper_m, dtype=float)

    def inside(self, joints_rad: np.ndarray) -> np.ndarray:
        """Whether every site is inside, per configuration: shape (...,) for joints (..., n)."""
        p = self.kinematics.site_positions_m(joints_rad, self.sites)
        return ((p >= self.lower_m) & (p <= self.upper_m)).all(axis=(-1, -2))

    def outside_sites(self, joints_rad: np.ndarray) -> tuple[str, ...]:
        p = self.kinematics.site_positions_m(joints_rad, self.sites)
        bad = ~((p >= self.lower_m) & (p <= self.upper_m)).all(axis=-1)
        return tuple(s for s, b in zip(self.sites, bad) if b)

    def retreat(self, bases: list[np.ndarray], target_rad: np.ndarray
                ) -> tuple[np.ndarray | None, tuple[str, ...]]:
        """``target_rad`` if inside; else the farthest point toward it from the first base that is
        inside; None if no base is. Reasons name the sites the target would have taken outside."""
        if self.inside(target_rad):  # the usual case: the bases are not needed
            return target_rad, ()
        reasons = tuple(f"workspace {s}" for s in self.outside_sites(target_rad))
        for base, base_ok in zip(bases, self.inside(np.stack(bases)) if bases else ()):
            if base_ok:
                return self._search(base, target_rad), reasons
        return None, reasons

    def _search(self, base: np.ndarray, target: np.ndarray) -> np.ndarray:
        lo, hi = 0.0, 1.0  # invariant: the path up to lo is inside (as sampled), hi is outside
        for _ in range(2):
            fractions = np.linspace(lo, hi, _SUBDIVISIONS + 1)[1:]
            ok = self.inside(base + fractions[:, None] * (target - base))
            first_out = int(np.argmin(ok)) if not ok.all() else len(ok) - 1
            if first_out > 0:
                lo = fractions[first_out - 1]
            hi = fractions[first_out]
        return base + lo * (target - base)
