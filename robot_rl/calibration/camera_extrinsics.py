"""Camera-to-robot extrinsics from a ChArUco board at a known pose on the robot.

Fix the board where its pose in the robot's base frame is known (a jig on the table, or the
board held by the arm at a known tool pose), take one image, and this finds the board in the
camera (OpenCV's cv2.aruco: ChArUco corners, then solvePnP with the camera's K and D):
``T_base_camera = T_base_board @ inv(T_camera_board)``, written into a copy of the camera YAML.

Board frame (OpenCV's): origin at the top-left corner of the board as its image is generated
(``board_image``), x along the image's width, y down the image, z into the board.
Camera frame: the optical frame (x right, y down, z forward), as in the camera YAML.

    python -m robot_rl.calibration.camera_extrinsics --camera d435_front --image frame.png \\
        --board-pose 0.40,0.10,0.0,0,0,0,1 --out robot_rl/calibration/cameras/d435_front.posed.yaml
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from dataclasses import dataclass, field

import cv2
import numpy as np

from robot_rl.camera_config import (
    CameraCalibration,
    Extrinsics,
    camera_path,
    load_camera,
    quaternion_to_matrix,
    save_camera,
)

DICTIONARIES = ("DICT_4X4_50", "DICT_5X5_100", "DICT_6X6_250", "DICT_APRILTAG_36h11")


class BoardNotFoundError(RuntimeError):
    """Too few board corners in the image to estimate a pose."""


@dataclass(frozen=True)
class CharucoBoardSpec:
    squares_x: int = field(default=5, metadata={"range": (3, 30)})
    squares_y: int = field(default=7, metadata={"range": (3, 30)})
    square_length_m: float = field(default=0.04, metadata={"range": (0.002, 1.0)})
    marker_length_m: float = field(default=0.03, metadata={"range": (0.001, 1.0)})
    dictionary: str = field(default="DICT_5X5_100", metadata={"choices": DICTIONARIES})
    min_corners: int = field(default=6, metadata={"range": (4, 1000)})

    def board(self) -> cv2.aruco.CharucoBoard:
        dictionary = cv2.aruco.getPredefinedDictionary(getattr(cv2.aruco, self.dictionary))
        return cv2.aruco.CharucoBoard((self.squares_x, self.squares_y), self.square_length_m,
                                      self.marker_length_m, dictionary)

    @property
    def size_m(self) -> tuple[float, float]:
        return (self.squares_x * self.square_length_m, self.squares_y * self.square_length_m)


def board_image(spec: CharucoBoardSpec, pixels_per_m: float = 4000.0) -> np.ndarray:
    """The board to print (or to texture a simulated one), grey uint8, no margin."""
    width_m, height_m = spec.size_m
    size = (int(round(width_m * pixels_per_m)), int(round(height_m * pixels_per_m)))
    return spec.board().generateImage(size, marginSize=0)


def board_in_camera(image: np.ndarray, spec: CharucoBoardSpec, k: np.ndarray, d: np.ndarray
                    ) -> tuple[np.ndarray, int]:
    """T_camera_board (4x4) and the number of ChArUco corners it rests on."""
    grey = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    board = spec.board()
    corners, ids, _, _ = cv2.aruco.CharucoDetector(board).detectBoard(grey)
    found = 0 if ids is None else len(ids)
    if found < spec.min_corners:
        raise BoardNotFoundError(f"found {found} ChArUco corners of a {spec.squares_x}x"
                                 f"{spec.squares_y} {spec.dictionary} board, need "
                                 f"{spec.min_corners}: is the board in view, lit, in focus?")
    object_points, image_points = board.matchImagePoints(corners, ids)
    ok, rvec, tvec = cv2.solvePnP(object_points, image_points, k, d,
                                  flags=cv2.SOLVEPNP_ITERATIVE)
    if not ok:
        raise BoardNotFoundError(f"solvePnP failed on {found} corners")
    transform = np.eye(4)
    transform[:3, :3] = cv2.Rodrigues(rvec)[0]
    transform[:3, 3] = tvec.ravel()
    return transform, found


def camera_in_base(base_board: np.ndarray, camera_board: np.ndarray) -> np.ndarray:
    """T_base_camera from the board's pose in the base frame and in the camera."""
    return base_board @ np.linalg.inv(camera_board)


def calibrate(camera: CameraCalibration, image: np.ndarray, base_board: np.ndarray,
              spec: CharucoBoardSpec = CharucoBoardSpec(), parent_frame: str = "base_link"
              ) -> CameraCalibration:
    """``camera`` with its extrinsics from one image of the board at ``base_board``."""
    k = camera.intrinsics
    if image.shape[:2] != (k.height, k.width):
        raise ValueError(f"image is {image.shape[1]}x{image.shape[0]}, camera {camera.camera}'s "
                         f"intrinsics are for {k.width}x{k.height}")
    camera_board, _ = board_in_camera(image, spec, k.k, k.dist)
    transform = camera_in_base(base_board, camera_board)
    return dataclasses.replace(camera, extrinsics=Extrinsics.from_matrix(transform, parent_frame))


def pose_matrix(text: str) -> np.ndarray:
    """'x,y,z,qx,qy,qz,qw' (m, unit quaternion) -> 4x4."""
    values = [float(v) for v in text.split(",")]
    if len(values) != 7:
        raise ValueError(f"--board-pose {text!r}: expected x,y,z,qx,qy,qz,qw")
    out = np.eye(4)
    out[:3, :3] = quaternion_to_matrix(values[3:])
    out[:3, 3] = values[:3]
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m robot_rl.calibration.camera_extrinsics",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--camera", required=True, help="camera YAML name or path (intrinsics)")
    parser.add_argument("--image", required=True, help="an image of the board (png, jpg)")
    parser.add_argument("--board-pose", required=True,
                        help="board frame in the base frame: x,y,z,qx,qy,qz,qw (m)")
    parser.add_argument("--parent-frame", default="base_link")
    defaults = CharucoBoardSpec()
    parser.add_argument("--squares", default=f"{defaults.squares_x}x{defaults.squares_y}")
    parser.add_argument("--square-length", type=float, default=defaults.square_length_m)
    parser.add_argument("--marker-length", type=float, default=defaults.marker_length_m)
    parser.add_argument("--dictionary", default=defaults.dictionary, choices=DICTIONARIES)
    parser.add_argument("--out", required=True, help="the camera YAML to write")
    parser.add_argument("--overwrite", "--force", dest="overwrite", action="store_true",
                        help="replace --out if it exists (--force: its old spelling)")
    args = parser.parse_args(argv)
    sx, sy = (int(v) for v in args.squares.lower().split("x"))
    spec = CharucoBoardSpec(sx, sy, args.square_length, args.marker_length, args.dictionary)
    bgr = cv2.imread(args.image, cv2.IMREAD_COLOR)
    if bgr is None:
        raise FileNotFoundError(f"--image {args.image}: cannot read it as an image")
    camera = load_camera(args.camera)
    result = calibrate(camera, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), pose_matrix(args.board_pose),
                       spec, args.parent_frame)
    save_camera(result, args.out, overwrite=args.overwrite,
                header=f"Extrinsics from {args.image} (calibration.camera_extrinsics), "
                       f"intrinsics from {camera_path(args.camera)}")
    assert result.extrinsics is not None
    print(f"camera in {args.parent_frame}: translation_m {result.extrinsics.translation_m}, "
          f"rotation_xyzw {result.extrinsics.rotation_xyzw}")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
