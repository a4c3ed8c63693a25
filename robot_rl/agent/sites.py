"""A task's named sites (world frame, m) from the measured state, where no simulator reads them.

The twin's env reads site positions from MuJoCo. On the graph the acting side computes them the
way a real cell would: forward kinematics on the calibration's MJCF (the robot and the calibrated
pose of the object it works on), with the object's joint (e.g. the drawer's slide) at the measured
object position.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from robot_rl.robot_config import RobotCalibration
from robot_rl.safety.kinematics import Kinematics
from robot_rl.tasks.base import Task


class SiteKinematics:
    """``scene``: the model holding the robot and the task's object (``RobotCalibration.
    scene_path(task)``); the robot's model by default."""

    def __init__(self, calibration: RobotCalibration, site_names: Sequence[str],
                 scene: Path | None = None) -> None:
        path = calibration.model_path() if scene is None else scene
        robot = tuple(calibration.joint_names)
        self.object_joint = calibration.object_joint(
            Kinematics.from_mjcf(path, robot).model_joint_names, str(path))
        self.site_names = tuple(site_names)
        self._kinematics = Kinematics.from_mjcf(path, (*robot, self.object_joint))
        missing = [n for n in self.site_names if n not in self._kinematics.site_names]
        if missing:
            raise ValueError(f"{path}: the task needs sites {missing}, which the model lacks")

    def __call__(self, joint_positions_rad: np.ndarray, object_position: float
                 ) -> dict[str, np.ndarray]:
        q = np.append(np.asarray(joint_positions_rad, dtype=float), object_position)
        positions = self._kinematics.site_positions_m(q, self.site_names)
        return dict(zip(self.site_names, positions))


def task_sites(task: Task) -> SiteKinematics | None:
    """What computes a task's named sites from the measured state; None for a task without any.

    Every node that turns joint states into a task's observations (the acting side, the recorder)
    takes its sites from here."""
    if not task.required_sites:
        return None
    return SiteKinematics(task.calibration, task.required_sites, task.scene_path())
