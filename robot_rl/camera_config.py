"""A camera's calibration: intrinsics (K, D, size, distortion model) and its pose on the robot.

One YAML file per camera in ``robot_rl/calibration/cameras/``; ``load_camera("d435_dclaw")`` or a path.
Extrinsics are the pose of the camera's optical frame (ROS/OpenCV optical: x right, y down,
z forward) in the robot's base frame: ``p_base = R(rotation_xyzw) @ p_camera + translation_m``.
Quaternions are (x, y, z, w), as geometry_msgs and tf2 write them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml

from robot_rl.config import ConfigError, from_dict, load_yaml, named_yaml, to_dict

CAMERAS_DIR = Path(__file__).resolve().parent.parent / "robot_rl" / "calibration" / "cameras"
# sensor_msgs/CameraInfo distortion models and their number of coefficients
DISTORTION_COEFFICIENTS = {"plumb_bob": 5, "rational_polynomial": 8, "equidistant": 4}


@dataclass(frozen=True)
class Intrinsics:
    width: int = field(metadata={"range": (1, 16384), "help": "image width, px"})
    height: int = field(metadata={"range": (1, 16384), "help": "image height, px"})
    fx: float = field(metadata={"range": (1.0, 1e5), "help": "focal length, px"})
    fy: float = field(metadata={"range": (1.0, 1e5), "help": "focal length, px"})
    cx: float = field(metadata={"range": (-1e5, 1e5), "help": "principal point, px"})
    cy: float = field(metadata={"range": (-1e5, 1e5), "help": "principal point, px"})
    distortion_model: str = field(default="plumb_bob", metadata={
        "choices": tuple(DISTORTION_COEFFICIENTS)})
    d: tuple[float, ...] = field(default=(0.0, 0.0, 0.0, 0.0, 0.0), metadata={
        "help": "distortion coefficients in OpenCV's order (k1 k2 p1 p2 k3 ...)"})

    def __post_init__(self) -> None:
        expected = DISTORTION_COEFFICIENTS[self.distortion_model]
        if len(self.d) != expected:
            raise ConfigError(f"intrinsics.d: distortion_model {self.distortion_model} needs "
                              f"{expected} coefficients, got {len(self.d)}")

    @property
    def k(self) -> np.ndarray:
        """The 3x3 camera matrix."""
        return np.array([[self.fx, 0.0, self.cx], [0.0, self.fy, self.cy], [0.0, 0.0, 1.0]])

    @property
    def dist(self) -> np.ndarray:
        return np.asarray(self.d, dtype=np.float64)


@dataclass(frozen=True)
class Extrinsics:
    translation_m: tuple[float, float, float] = field(metadata={"range": (-100.0, 100.0)})
    rotation_xyzw: tuple[float, float, float, float] = field(metadata={"range": (-1.0, 1.0)})
    parent_frame: str = field(default="base_link", metadata={"help": "the robot's base frame"})
    child_frame: str = field(default="camera_color_optical_frame")

    def __post_init__(self) -> None:
        norm = math.sqrt(sum(q * q for q in self.rotation_xyzw))
        if abs(norm - 1.0) > 1e-3:
            raise ConfigError(f"extrinsics.rotation_xyzw: {self.rotation_xyzw} has norm "
                              f"{norm:.6f}; expected a unit quaternion (x, y, z, w)")

    def matrix(self) -> np.ndarray:
        """The 4x4 transform from the camera's optical frame to the parent frame."""
        out = np.eye(4)
        out[:3, :3] = quaternion_to_matrix(self.rotation_xyzw)
        out[:3, 3] = self.translation_m
        return out

    @classmethod
    def from_matrix(cls, transform: np.ndarray, parent_frame: str = "base_link",
                    child_frame: str = "camera_color_optical_frame") -> Extrinsics:
        t = tuple(float(v) for v in transform[:3, 3])
        q = tuple(float(v) for v in matrix_to_quaternion(transform[:3, :3]))
        return cls(t, q, parent_frame, child_frame)  # type: ignore[arg-type]


@dataclass(frozen=True)
class CameraCalibration:
    camera: str = field(metadata={"help": "a name for this camera"})
    intrinsics: Intrinsics
    serial: str | None = field(default=None, metadata={"help": "device serial number"})
    extrinsics: Extrinsics | None = None


def quaternion_to_matrix(q_xyzw: tuple[float, ...] | np.ndarray) -> np.ndarray:
    x, y, z, w = np.asarray(q_xyzw, dtype=np.float64) / np.linalg.norm(q_xyzw)
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])


def matrix_to_quaternion(rotation: np.ndarray) -> np.ndarray:
    """(x, y, z, w) with w >= 0 from a rotation matrix (Shepperd's method)."""
    r = np.asarray(rotation, dtype=np.float64)
    trace = np.trace(r)
    if trace > 0:
        s = 2.0 * math.sqrt(trace + 1.0)
        q = [(r[2, 1] - r[1, 2]) / s, (r[0, 2] - r[2, 0]) / s, (r[1, 0] - r[0, 1]) / s, s / 4]
    else:
        i = int(np.argmax(np.diag(r)))
        j, k = (i + 1) % 3, (i + 2) % 3
        s = 2.0 * math.sqrt(1.0 + r[i, i] - r[j, j] - r[k, k])
        q = [0.0, 0.0, 0.0, (r[k, j] - r[j, k]) / s]
        q[i], q[j], q[k] = s / 4, (r[j, i] + r[i, j]) / s, (r[k, i] + r[i, k]) / s
    out = np.array(q)
    return -out if out[3] < 0 else out


def camera_path(name_or_path: str | Path) -> Path:
    return named_yaml(name_or_path, CAMERAS_DIR, "camera calibration")


def load_camera(name_or_path: str | Path) -> CameraCalibration:
    path = camera_path(name_or_path)
    try:
        return from_dict(CameraCalibration, load_yaml(path), source=str(path))
    except ConfigError as err:
        message = str(err)
        raise ConfigError(message if message.startswith(str(path)) else f"{path}: {message}") \
            from None


def save_camera(calibration: CameraCalibration, path: str | Path, *, overwrite: bool = False,
                header: str = "") -> Path:
    """Writes ``calibration`` as YAML; refuses to replace an existing file unless ``overwrite``."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; choose another output path or pass overwrite "
                              "(--force) to replace it")
    comment = "".join(f"# {line}\n" for line in header.splitlines())
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(comment + yaml.safe_dump(to_dict(calibration), sort_keys=False))
    return path
