"""Camera calibration procedures: intrinsics from a recording (real pyrealsense2), extrinsics from
a ChArUco board rendered by MuJoCo at a known pose (real cv2.aruco)."""

from __future__ import annotations

import math
import os
from pathlib import Path

import cv2
import numpy as np
import pytest

os.environ.setdefault("MUJOCO_GL", "egl")

import mujoco

from robot_rl.calibration import camera_extrinsics, camera_intrinsics
from robot_rl.camera_config import (
    CameraCalibration,
    Intrinsics,
    load_camera,
    matrix_to_quaternion,
    save_camera,
)
from robot_rl.drivers.realsense.frame import CameraIntrinsics
from robot_rl.drivers.realsense.recording import write_recording
from robot_rl.robot_config import load_robot
from robot_rl.sim_twin.twin import Twin


def test_intrinsics_come_from_the_device_into_a_camera_yaml(tmp_path: Path) -> None:
    width, height = 320, 240
    device = CameraIntrinsics(width, height, 301.5, 302.25, 161.0, 118.5, "brown_conrady",
                              (0.05, -0.1, 0.001, -0.002, 0.02))
    twin = Twin(load_robot("dclaw"))
    try:
        rgb, depth_m = twin.render(width, height, depth=True)
    finally:
        twin.close()
    depth = np.rint(np.nan_to_num(depth_m) * 1000).clip(0, 65535).astype(np.uint16)
    recording = tmp_path / "cam.db3"
    write_recording(recording, [rgb] * 3, [depth] * 3, device, 30, serial="CAM42")
    out = tmp_path / "front.yaml"
    assert camera_intrinsics.main(["--name", "front", "--recording", str(recording), "--width",
                                   str(width), "--height", str(height), "--out", str(out)]) == 0
    cal = load_camera(out)
    assert (cal.camera, cal.serial) == ("front", "CAM42")
    k = cal.intrinsics
    assert (k.width, k.height, k.distortion_model) == (width, height, "plumb_bob")
    np.testing.assert_allclose([k.fx, k.fy, k.cx, k.cy], [301.5, 302.25, 161.0, 118.5], rtol=1e-6)
    np.testing.assert_allclose(k.d, device.coeffs, atol=1e-6)
    with pytest.raises(FileExistsError):
        camera_intrinsics.main(["--name", "front", "--recording", str(recording), "--width",
                                str(width), "--height", str(height), "--out", str(out)])


BOARD = camera_extrinsics.CharucoBoardSpec()
WIDTH, HEIGHT, FOVY_DEG = 640, 480, 45.0


def scene_xml(texture: Path) -> str:
    w, h = BOARD.size_m
    return f"""<mujoco>
  <asset><texture name="board" type="2d" file="{texture}"/>
    <material name="board" texture="board" texrepeat="1 1" texuniform="false"/></asset>
  <visual><headlight ambient="0.7 0.7 0.7" diffuse="0.3 0.3 0.3"/><quality shadowsize="0"/>
  </visual>
  <worldbody>
    <body name="board" pos="0.45 0.05 0.02" euler="18 -12 35">
      <geom name="board" type="plane" size="{w / 2} {h / 2} 0.01" material="board"/>
    </body>
    <camera name="cam" pos="0.15 -0.35 0.55" mode="targetbody" target="board" fovy="{FOVY_DEG}"/>
  </worldbody>
</mujoco>"""


def pose(rotation: np.ndarray, translation: np.ndarray) -> np.ndarray:
    out = np.eye(4)
    out[:3, :3], out[:3, 3] = rotation, translation
    return out


def test_extrinsics_from_a_rendered_charuco_board(tmp_path: Path) -> None:
    texture = tmp_path / "board.png"
    cv2.imwrite(str(texture), cv2.cvtColor(camera_extrinsics.board_image(BOARD), cv2.COLOR_GRAY2BGR))
    model = mujoco.MjModel.from_xml_string(scene_xml(texture))
    data = mujoco.MjData(model)
    mujoco.mj_forward(model, data)
    with mujoco.Renderer(model, HEIGHT, WIDTH) as renderer:
        renderer.update_scene(data, camera="cam")
        rgb = renderer.render()
    image = tmp_path / "frame.png"
    cv2.imwrite(str(image), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))

    # truth: MuJoCo's camera looks down its -z with y up; the optical frame is x right, y down
    cam = model.camera("cam").id
    true_camera = pose(data.cam_xmat[cam].reshape(3, 3) @ np.diag([1, -1, -1]),
                       data.cam_xpos[cam])
    # the board frame on the plane: MuJoCo maps the image's top-left to the plane's (-x, +y)
    # corner with rows running along -y; OpenCV's board frame has z into the board
    w, h = BOARD.size_m
    geom = model.geom("board").id
    world_board = pose(data.geom_xmat[geom].reshape(3, 3), data.geom_xpos[geom]) @ pose(
        np.diag([1.0, -1.0, -1.0]), np.array([-w / 2, h / 2, 0.0]))

    f_px = 0.5 * HEIGHT / math.tan(math.radians(FOVY_DEG) / 2)
    camera_yaml = tmp_path / "cam.yaml"
    save_camera(CameraCalibration("cam", Intrinsics(WIDTH, HEIGHT, f_px, f_px, (WIDTH - 1) / 2,
                                                    (HEIGHT - 1) / 2)), camera_yaml)
    q = matrix_to_quaternion(world_board[:3, :3])
    board_pose = ",".join(f"{v:.9f}" for v in (*world_board[:3, 3], *q))
    out = tmp_path / "cam.posed.yaml"
    assert camera_extrinsics.main(["--camera", str(camera_yaml), "--image", str(image),
                                   "--board-pose", board_pose, "--parent-frame", "world",
                                   "--out", str(out)]) == 0
    found = load_camera(out).extrinsics
    assert found is not None and found.parent_frame == "world"
    got = found.matrix()
    assert np.linalg.norm(got[:3, 3] - true_camera[:3, 3]) < 0.005  # m
    angle = math.acos(np.clip((np.trace(got[:3, :3].T @ true_camera[:3, :3]) - 1) / 2, -1, 1))
    assert math.degrees(angle) < 0.5

    blank = np.zeros((HEIGHT, WIDTH, 3), np.uint8)
    with pytest.raises(camera_extrinsics.BoardNotFoundError, match="found 0 ChArUco corners"):
        camera_extrinsics.calibrate(load_camera(camera_yaml), blank, world_board, BOARD)
