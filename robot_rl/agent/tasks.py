"""Tasks by name, as the nodes' ``task`` parameter names them."""

from __future__ import annotations

import importlib

from robot_rl.robot_config import RobotCalibration
from robot_rl.tasks.base import Task

# name -> (module, class); a task whose module is missing is reported, not guessed
TASKS = {"valve": ("robot_rl.tasks.valve", "ValveTask"),
         "drawer": ("robot_rl.tasks.drawer", "DrawerTask")}


def make_task(name: str, calibration: RobotCalibration) -> Task:
    """The task ``name`` with its default config on ``calibration``'s robot."""
    if name not in TASKS:
        raise ValueError(f"parameter task: {name!r} is not one of {sorted(TASKS)}")
    module_name, class_name = TASKS[name]
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError) as err:
        raise ValueError(f"parameter task: {name!r} needs {module_name}.{class_name}, "
                         f"which is not available ({err})") from err
    return cls(calibration)


def env_id_task(env_id: str) -> str:
    """The task name of a pipeline env id (robot_rl/ValveTurn-v0 -> valve)."""
    return {"robot_rl/ValveTurn-v0": "valve", "robot_rl/DrawerOpen-v0": "drawer"}.get(env_id, "")
