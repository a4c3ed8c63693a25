"""The safety supervisor as the twin environment's command gate: the in-process path to motors."""

from __future__ import annotations

from collections import Counter

import numpy as np

from robot_rl.robot_config import RobotCalibration
from robot_rl.safety import Kinematics, RobotState, Supervisor


class SupervisorGate:
    """Feeds the measured state to the supervisor and lets only its verdict reach the actuators.

    The environment calls it every control step with the targets the policy asked for; what it returns
    is what the twin's servos receive. When the supervisor sends nothing, the servos keep the last
    goal they were sent, as a real Dynamixel chain does when no new goal is written (before any
    goal, where they are).
    """

    def __init__(self, calibration: RobotCalibration) -> None:
        self.calibration = calibration
        # Parsed once: every episode starts a fresh supervisor on the same model.
        self.kinematics = (Kinematics.from_mjcf(calibration.model_path(), calibration.joint_names)
                           if calibration.safety.workspace is not None else None)
        self.supervisor = Supervisor(calibration, self.kinematics)
        self.statuses: Counter[str] = Counter()
        self.rules: Counter[str] = Counter()  # commands each supervisor rule acted on
        self._last_goal_rad: np.ndarray | None = None

    def __call__(self, targets_rad: np.ndarray, state: dict[str, np.ndarray],
                 time_s: float) -> np.ndarray:
        self.supervisor.update_state(RobotState(
            stamp_s=time_s,
            position_rad=state["position_rad"],
            velocity_rad_s=state["velocity_rad_s"],
            effort_a=state["effort_a"],
        ), time_s)  # one clock in process: measured and received at the twin's time
        verdict = self.supervisor.filter(targets_rad, time_s)
        self.statuses[verdict.status] += 1
        self.rules.update({reason.split()[0] for reason in verdict.reasons})  # once per command
        if verdict.command_rad is not None:
            self._last_goal_rad = np.asarray(verdict.command_rad, dtype=np.float64)
        elif self._last_goal_rad is None:
            return np.asarray(state["position_rad"], dtype=np.float64)
        return self._last_goal_rad

    def reset(self) -> None:
        """A new episode restarts the twin's clock; the supervisor's history belongs to the last one."""
        self.supervisor = Supervisor(self.calibration, self.kinematics)
        self._last_goal_rad = None
