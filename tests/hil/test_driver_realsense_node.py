"""The RealSense node as a process, on real pyrealsense2, playing a recording of the twin's renders.

The recording is written with the camera package's writer (a software device recorded with
rs.recorder) from ``Twin.render(depth=True)`` while the fingers move, then played through the
node's pipeline; the test checks, over DDS, pixel-exact images, the depth in millimetres, the
CameraInfo of the recorded intrinsics and stamps spaced as the device's timestamps.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from graph.graph_probe import Probe, node_cmd, params, stop
from helpers.backends import both_backends

os.environ.setdefault("MUJOCO_GL", "egl")

from robot_rl.drivers.realsense.frame import CameraIntrinsics
from robot_rl.drivers.realsense.recording import write_recording
from robot_rl.nodes import topics
from robot_rl.robot_config import load_robot
from robot_rl.ros import messages as m
from robot_rl.ros.qos import QOS_DEFAULT, QOS_SENSOR_DATA
from robot_rl.sim_twin.twin import Twin

WIDTH, HEIGHT, FPS, N_FRAMES = 320, 240, 30, 8
START_TIMEOUT_S = 40.0


def twin_intrinsics(twin: Twin) -> CameraIntrinsics:
    """Pinhole intrinsics of the twin's 'realsense' camera (MuJoCo's fovy is vertical)."""
    fovy_rad = math.radians(float(twin.model.cam_fovy[twin.model.camera("realsense").id]))
    f_px = 0.5 * HEIGHT / math.tan(0.5 * fovy_rad)
    return CameraIntrinsics(WIDTH, HEIGHT, f_px, f_px, (WIDTH - 1) / 2, (HEIGHT - 1) / 2)


@pytest.fixture(scope="module")
def twin_recording(tmp_path_factory: pytest.TempPathFactory
                   ) -> tuple[Path, list[np.ndarray], list[np.ndarray], CameraIntrinsics]:
    twin = Twin(load_robot("dclaw"))
    colors, depths = [], []
    try:
        for i in range(N_FRAMES):
            twin.set_joint_targets(np.full(twin.n_joints, 0.1 * i) * np.tile([1, -1, -1], 3))
            twin.advance(0.05)
            rgb, depth_m = twin.render(WIDTH, HEIGHT, depth=True)
            colors.append(np.ascontiguousarray(rgb))
            depths.append(np.where(np.isfinite(depth_m), np.rint(depth_m * 1000), 0)
                          .clip(0, 65535).astype(np.uint16))
        intrinsics = twin_intrinsics(twin)
    finally:
        twin.close()
    assert len({c.tobytes() for c in colors}) == N_FRAMES, "each rendered frame differs"
    path = tmp_path_factory.mktemp("twin_camera") / "twin.db3"
    assert write_recording(path, colors, depths, intrinsics, FPS) == N_FRAMES
    return path, colors, depths, intrinsics


@both_backends
def test_node_plays_the_twin_recording_over_dds(ros_domain: int, spawn: Any,
                                                twin_recording: Any) -> None:
    path, colors, depths, intrinsics = twin_recording
    node = spawn(node_cmd("robot_rl.drivers.realsense.node", *params(
        recording_path=str(path), width=WIDTH, height=HEIGHT, fps=FPS, loop=True,
        diagnostics_rate_hz=4.0)))
    probe = Probe("/")
    try:
        color = probe.listen("color", m.Image, topics.CAMERA_COLOR, QOS_SENSOR_DATA)
        depth = probe.listen("depth", m.Image, topics.CAMERA_DEPTH, QOS_SENSOR_DATA)
        info = probe.listen("info", m.CameraInfo, topics.CAMERA_INFO, QOS_SENSOR_DATA)
        diagnostics = probe.listen("diagnostics", m.DiagnosticArray, topics.DIAGNOSTICS,
                                   QOS_DEFAULT)
        probe.wait_until(lambda: len(color) >= 2 * N_FRAMES and len(depth) >= N_FRAMES,
                         START_TIMEOUT_S, what="two loops of the recording")
        probe.wait_until(lambda: any("recording_restarts" in {v.key for v in s.values}
                                     and dict((v.key, v.value) for v in s.values)
                                     ["recording_restarts"] != "0"
                                     for d in diagnostics for s in d.status), 10.0,
                         what="diagnostics counting the loops")
    finally:
        probe.destroy()
    assert stop(node) == 0

    by_bytes = {c.tobytes(): i for i, c in enumerate(colors)}
    index_by_stamp: dict[float, int] = {}
    for msg in color:
        assert (msg.encoding, msg.width, msg.height) == ("rgb8", WIDTH, HEIGHT)
        assert msg.header.frame_id == "camera_color_optical_frame"
        pixels = m.image_to_numpy(msg)
        assert pixels.tobytes() in by_bytes, "every image is one of the recorded frames, exactly"
        index_by_stamp[m.stamp_to_s(msg.header.stamp)] = by_bytes[pixels.tobytes()]
    assert len(set(index_by_stamp.values())) >= N_FRAMES // 2

    matched = 0
    for msg in depth:
        assert msg.encoding == "16UC1"  # realsense-ros: aligned depth in millimetres
        i = index_by_stamp.get(m.stamp_to_s(msg.header.stamp))
        if i is not None:
            # rs.align reprojects pixel by pixel even between identical intrinsics: it leaves
            # holes (0) and lets near surfaces cover far ones by a pixel or two at edges
            got = m.image_to_numpy(msg)
            filled = got != 0
            assert filled.mean() > 0.85
            assert (got[filled] == depths[i][filled]).mean() > 0.95
            matched += 1
    assert matched >= N_FRAMES // 2

    # within one pass, stamps are spaced as the recorded device timestamps (1 / fps)
    stamps = sorted(index_by_stamp)
    steps = [(b - a, index_by_stamp[b] - index_by_stamp[a]) for a, b in zip(stamps, stamps[1:])
             if index_by_stamp[b] > index_by_stamp[a]]
    assert steps
    for dt_s, frames in steps:
        assert dt_s == pytest.approx(frames / FPS, abs=1e-5)

    last = info[-1]
    assert (last.width, last.height, last.distortion_model) == (WIDTH, HEIGHT, "plumb_bob")
    np.testing.assert_allclose(last.k, [intrinsics.fx, 0, intrinsics.ppx, 0, intrinsics.fy,
                                        intrinsics.ppy, 0, 0, 1], rtol=1e-6)
    np.testing.assert_allclose(last.p[:3], [intrinsics.fx, 0, intrinsics.ppx], rtol=1e-6)


def test_node_publishes_the_valve_tasks_view_of_each_frame(ros_domain: int, spawn: Any,
                                                           twin_recording: Any) -> None:
    """With view_task:=valve every recorded frame also goes out cut and resized to the valve
    task's view (tasks.camera.preprocess_color), with the full frame's stamp, and the view's
    CameraInfo: the intrinsics cut by the crop and scaled."""
    from robot_rl.agent.tasks import make_task
    from robot_rl.tasks.camera import preprocess_color

    path, colors, _depths, intrinsics = twin_recording
    view = make_task("valve", load_robot("dclaw")).pixel_view()
    expected = {preprocess_color(c, view).tobytes() for c in colors}
    node = spawn(node_cmd("robot_rl.drivers.realsense.node", *params(
        recording_path=str(path), width=WIDTH, height=HEIGHT, fps=FPS, loop=True,
        view_task="valve", view_robot="dclaw")))
    probe = Probe("/")
    try:
        full = probe.listen("color", m.Image, topics.CAMERA_COLOR, QOS_SENSOR_DATA)
        views = probe.listen("view", m.Image, topics.camera_topic(topics.CAMERA,
                                                                  topics.VIEW_COLOR),
                             QOS_SENSOR_DATA)
        info = probe.listen("view_info", m.CameraInfo,
                            topics.camera_topic(topics.CAMERA, topics.VIEW_INFO), QOS_SENSOR_DATA)
        probe.wait_until(lambda: len(views) >= N_FRAMES and len(full) >= N_FRAMES and info,
                         START_TIMEOUT_S, what="a loop of views")
    finally:
        probe.destroy()
    assert stop(node) == 0
    full_stamps = {m.stamp_to_s(msg.header.stamp) for msg in full}
    for msg in views:
        assert (msg.encoding, msg.width, msg.height) == ("rgb8", view.width, view.height)
        assert m.image_to_numpy(msg).tobytes() in expected  # the recorded frame's view, exactly
    assert {m.stamp_to_s(msg.header.stamp) for msg in views} & full_stamps
    left = round(view.crop[0] * WIDTH)
    scale = view.width / (round(view.crop[2] * WIDTH) - left)
    assert info[-1].k[0] == pytest.approx(intrinsics.fx * scale)
    assert info[-1].k[2] == pytest.approx((intrinsics.ppx - left + 0.5) * scale - 0.5)
