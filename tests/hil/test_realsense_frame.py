"""Plain-data side of the RealSense driver: CameraInfo fields, drop counting, frame pairing."""

from __future__ import annotations

import math

import numpy as np
import pytest

from robot_rl.drivers.realsense.config import CameraConfig
from robot_rl.drivers.realsense.frame import CameraFrame, CameraIntrinsics, dropped_between, is_fresh_pair


def test_camera_info_fields_follow_sensor_msgs_layout() -> None:
    intr = CameraIntrinsics(640, 480, 615.0, 616.0, 321.5, 239.5, "inverse_brown_conrady",
                            (0.1, -0.2, 0.001, 0.002, 0.03))
    info = intr.camera_info_fields()
    assert info["distortion_model"] == "plumb_bob"
    assert info["D"] == [0.1, -0.2, 0.001, 0.002, 0.03]
    assert info["K"] == [615.0, 0.0, 321.5, 0.0, 616.0, 239.5, 0.0, 0.0, 1.0]
    assert info["R"] == [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
    assert info["P"] == [615.0, 0.0, 321.5, 0.0, 0.0, 616.0, 239.5, 0.0, 0.0, 0.0, 1.0, 0.0]
    assert (info["width"], info["height"]) == (640, 480)


def test_kannala_brandt_maps_to_equidistant_with_four_coefficients() -> None:
    intr = CameraIntrinsics(848, 800, 286.0, 286.0, 424.0, 400.0, "kannala_brandt4",
                            (0.1, 0.2, 0.3, 0.4, 0.0))
    info = intr.camera_info_fields()
    assert info["distortion_model"] == "equidistant"
    assert info["D"] == [0.1, 0.2, 0.3, 0.4]


def test_unknown_distortion_model_is_rejected_by_name() -> None:
    with pytest.raises(ValueError, match="ftheta"):
        CameraIntrinsics(640, 480, 600.0, 600.0, 320.0, 240.0, "ftheta")


def test_dropped_between_counts_counter_gaps() -> None:
    assert dropped_between(None, 7) == 0
    assert dropped_between(7, 8) == 0
    assert dropped_between(7, 10) == 2
    assert dropped_between(10, 1) == 0  # counter restarted (reconnect)


def test_fresh_pair_needs_new_colour_and_depth_within_half_a_period() -> None:
    assert is_fresh_pair(2, 1, 1033.3, 1033.3, 30)
    assert not is_fresh_pair(1, 1, 1000.0, 1033.3, 30)  # colour repeated
    assert not is_fresh_pair(2, 1, 1033.3, 1000.0, 30)  # depth from the previous frame
    assert is_fresh_pair(2, 1, 1033.3, 1040.0, 30)  # separate sensors: a few ms apart
    assert is_fresh_pair(2, None, 1033.3, None, 30)  # colour only


def test_depth_m_is_metres_with_nan_for_no_return() -> None:
    depth = np.array([[0, 1000], [250, 65535]], np.uint16)
    frame = CameraFrame(np.zeros((2, 2, 3), np.uint8), depth, 0.001, 1.0, "hardware_clock", 1, 0)
    depth_m = frame.depth_m
    assert depth_m is not None and depth_m.dtype == np.float32
    assert math.isnan(depth_m[0, 0])
    np.testing.assert_allclose(depth_m[0, 1:], [1.0], rtol=1e-6)
    np.testing.assert_allclose(depth_m[1], [0.25, 65.535], rtol=1e-6)


def test_config_rejects_serial_and_recording_together_and_out_of_range_values() -> None:
    with pytest.raises(ValueError, match="serial '123' and recording_path 'a.db3'"):
        CameraConfig(serial="123", recording_path="a.db3")
    with pytest.raises(ValueError, match=r"fps: 0 is out of range \[1, 90\]"):
        CameraConfig(fps=0)
    assert CameraConfig(recording_path="a.db3").source == "recording a.db3"
