"""The safety supervisor's logic: pure functions of (command, state, time); numpy, and MuJoCo's
forward kinematics on the robot's model for the workspace check (``kinematics``).

See docs/safety.md for what each limit means and what happens on each fault.
"""

from __future__ import annotations

from robot_rl.safety.kinematics import Kinematics, MjcfError
from robot_rl.safety.limits import JointLimits
from robot_rl.safety.supervisor import Supervisor
from robot_rl.safety.types import ERROR, OK, STALE, WARN, DiagnosticStatusData, RobotState, Verdict
from robot_rl.safety.workspace import WorkspaceGuard

__all__ = ["ERROR", "OK", "STALE", "WARN", "DiagnosticStatusData", "JointLimits", "Kinematics",
           "MjcfError", "RobotState", "Supervisor", "Verdict", "WorkspaceGuard"]
