"""RealSense camera driver: pipeline-based camera, recordings, plain-data frames and intrinsics."""

from __future__ import annotations

from robot_rl.drivers.realsense.config import CameraConfig
from robot_rl.drivers.realsense.errors import CameraError, CameraNotFoundError, RecordingEnded, RecordingError
from robot_rl.drivers.realsense.frame import CameraFrame, CameraIntrinsics, CameraStats

__all__ = [
    "CameraConfig",
    "CameraError",
    "CameraFrame",
    "CameraIntrinsics",
    "CameraNotFoundError",
    "CameraStats",
    "RecordingEnded",
    "RecordingError",
]
