"""Plain data that leaves the camera: frames as numpy arrays, intrinsics as numbers.

Nothing here imports pyrealsense2, so a ROS node (or a test) can use these types without it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

# librealsense distortion model name -> sensor_msgs/CameraInfo distortion_model.
# The Brown-Conrady family keeps OpenCV's coefficient order (k1, k2, p1, p2, k3), so it maps to
# ROS "plumb_bob" (as realsense-ros publishes it); Kannala-Brandt's four map to "equidistant".
_ROS_DISTORTION = {
    "none": "plumb_bob",
    "brown_conrady": "plumb_bob",
    "modified_brown_conrady": "plumb_bob",
    "inverse_brown_conrady": "plumb_bob",
    "kannala_brandt4": "equidistant",
}


@dataclass(frozen=True)
class CameraIntrinsics:
    """Pinhole intrinsics of one stream, in pixels, plus its distortion model and coefficients."""

    width: int
    height: int
    fx: float
    fy: float
    ppx: float
    ppy: float
    model: str = "brown_conrady"
    coeffs: tuple[float, ...] = (0.0, 0.0, 0.0, 0.0, 0.0)

    def __post_init__(self) -> None:
        if self.model not in _ROS_DISTORTION:
            raise ValueError(
                f"distortion model {self.model!r} is not supported; "
                f"expected one of {', '.join(sorted(_ROS_DISTORTION))}"
            )
        if self.width <= 0 or self.height <= 0 or not (self.fx > 0 and self.fy > 0):
            raise ValueError(f"intrinsics need positive size and focal lengths, got {self}")

    def camera_info_fields(self) -> dict[str, Any]:
        """The fields of a sensor_msgs/CameraInfo: width, height, distortion_model, D, K, R, P."""
        coeffs = list(self.coeffs)
        if self.model == "kannala_brandt4":
            coeffs = coeffs[:4]
        return {
            "width": self.width,
            "height": self.height,
            "distortion_model": _ROS_DISTORTION[self.model],
            "D": [float(c) for c in coeffs],
            "K": [self.fx, 0.0, self.ppx, 0.0, self.fy, self.ppy, 0.0, 0.0, 1.0],
            "R": [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0],
            "P": [self.fx, 0.0, self.ppx, 0.0, 0.0, self.fy, self.ppy, 0.0, 0.0, 0.0, 1.0, 0.0],
        }


@dataclass(frozen=True, eq=False)
class CameraFrame:
    """One colour image and (optionally) the depth image taken with it.

    ``timestamp_s`` is the device's timestamp of the colour frame in seconds, in the clock named by
    ``timestamp_domain`` (librealsense's names: hardware_clock, system_time, global_time).
    ``dropped_frames`` counts colour frames the device produced since the previous read that this
    reader never saw (gaps in the frame counter).
    """

    color: np.ndarray  # (H, W, 3) uint8, RGB
    depth: np.ndarray | None  # (H, W) uint16, raw units; 0 means no return
    depth_scale_m: float  # metres per depth unit
    timestamp_s: float
    timestamp_domain: str
    frame_number: int
    dropped_frames: int
    depth_timestamp_s: float | None = None

    @property
    def depth_m(self) -> np.ndarray | None:
        """Depth in metres as float32, NaN where the camera saw nothing (REP 118)."""
        if self.depth is None:
            return None
        depth_m = self.depth.astype(np.float32) * np.float32(self.depth_scale_m)
        depth_m[self.depth == 0] = np.nan
        return depth_m


@dataclass
class CameraStats:
    """Counters a node publishes as diagnostics."""

    frames_read: int = 0
    frames_dropped: int = 0
    stale_framesets_skipped: int = 0
    timeouts: int = 0
    reconnects: int = 0


def dropped_between(previous_number: int | None, number: int) -> int:
    """Frames missing between two frame counters; 0 when the counter restarted or on the first."""
    if previous_number is None or number <= previous_number:
        return 0
    return number - previous_number - 1


def is_fresh_pair(
    color_number: int,
    previous_color_number: int | None,
    color_timestamp_ms: float,
    depth_timestamp_ms: float | None,
    fps: float,
) -> bool:
    """Whether a frameset carries a colour frame not yet returned, with depth taken at its time.

    The pipeline fills a frameset's missing streams with the last frame it saw, so a set can pair
    a new colour frame with an old depth frame (or repeat the colour frame). Accept a set when the
    colour frame is new and the depth frame lies within half a frame period of it.
    """
    if previous_color_number is not None and color_number == previous_color_number:
        return False
    if depth_timestamp_ms is None:
        return True
    half_period_ms = 500.0 / fps
    return math.fabs(color_timestamp_ms - depth_timestamp_ms) < half_period_ms
