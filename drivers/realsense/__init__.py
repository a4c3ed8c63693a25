"""RealSense camera driver: pipeline-based camera, recordings, plain-data frames and intrinsics."""

from __future__ import annotations

from drivers.realsense.config import CameraConfig
from drivers.realsense.errors import CameraError, CameraNotFoundError, RecordingEnded, RecordingError
from drivers.realsense.frame import CameraFrame, CameraIntrinsics, CameraStats

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
