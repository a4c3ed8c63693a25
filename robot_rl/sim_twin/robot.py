"""The MuJoCo twin as a ``robot_rl.robot.Robot``: driver kind ``twin``.

What the generic driver node drives when there is no hardware, and the shortest complete example
of a driver. Physics advances with wall-clock time between reads (at most ``MAX_CATCH_UP_S`` at
once, so a stalled process does not make the robot jump); the object (the valve, the drawer) is
reported as the calibration's sensor when it has one.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from robot_rl.robot import Robot, RobotReading
from robot_rl.robot_config import RobotCalibration
from robot_rl.sim_twin.twin import Twin

MAX_CATCH_UP_S = 0.25


class TwinRobot(Robot):
    def __init__(self, calibration: RobotCalibration, *, task: str = "", seed: int = 0,
                 physics_timestep_s: float = 0.002, **options: Any) -> None:
        """``task``: whose scene to play (the calibration's ``tasks.<task>.scene``)."""
        super().__init__(calibration, **options)
        self._task, self._seed, self._timestep_s = task or None, seed, physics_timestep_s
        self.twin: Twin | None = None
        self._last_s = 0.0

    @property
    def is_connected(self) -> bool:
        return self.twin is not None

    def connect(self) -> None:
        # at rest where the task starts, the servos holding where the joints are
        self.twin = Twin(self.calibration, task=self._task, seed=self._seed,
                         physics_timestep_s=self._timestep_s)
        self.twin.reset_to_task_start(self._seed)
        self._last_s = time.monotonic()

    def read(self) -> RobotReading:
        twin = self._connected()
        now = time.monotonic()
        twin.advance(min(now - self._last_s, MAX_CATCH_UP_S))
        self._last_s = now
        sensors = np.array([twin.object_position()]) if self.calibration.sensors else None
        return RobotReading(stamp_s=time.time(), position_rad=twin.joint_positions_rad(),
                            velocity_rad_s=twin.joint_velocities_rad_s(),
                            effort_a=twin.joint_efforts_a(), sensors_rad=sensors)

    def write_goal(self, positions_rad: np.ndarray) -> None:
        self._connected().set_joint_targets(positions_rad)

    def disconnect(self) -> None:
        if self.twin is not None:
            self.twin.close()
        self.twin = None

    def _connected(self) -> Twin:
        if self.twin is None:
            raise RuntimeError(f"TwinRobot({self.calibration.robot}): connect() first")
        return self.twin
