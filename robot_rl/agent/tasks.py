"""Tasks by name, as the nodes' ``task`` parameter names them (robot_rl.registry holds them)."""

from __future__ import annotations

from robot_rl.registry import make_task as _make_task
from robot_rl.registry import task_spec
from robot_rl.robot_config import RobotCalibration
from robot_rl.tasks.base import Task


def make_task(name: str, calibration: RobotCalibration) -> Task:
    """The task ``name`` on ``calibration``'s robot: its defaults and the robot's settings."""
    try:
        return _make_task(name, calibration)
    except ValueError as err:
        if "is not registered" in str(err):
            raise ValueError(f"parameter task: {err}") from None
        raise


def env_id_task(env_id: str) -> str:
    """The task name of a pipeline env id (robot_rl/ValveTurn-v0 -> valve); '' if none."""
    try:
        return task_spec(env_id).name
    except ValueError:
        return ""
