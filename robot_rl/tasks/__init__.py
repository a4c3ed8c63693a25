"""Task definitions: observation layout, reward, success, action mapping, resets (pure numpy)."""

from __future__ import annotations

from robot_rl.tasks.base import ActionMapping, ResetSample, ResetStep, Task, TaskState
from robot_rl.tasks.drawer import DrawerTask, DrawerTaskConfig
from robot_rl.tasks.valve import ValveTask, ValveTaskConfig

__all__ = ["ActionMapping", "DrawerTask", "DrawerTaskConfig", "ResetSample", "ResetStep", "Task",
           "TaskState", "ValveTask", "ValveTaskConfig"]
