"""Pairing joint states with camera frames: the closest stamp within the tolerance, or a named
reason (stale frame, no frame); full frames cut to the task's view; depth by capture stamp."""

from __future__ import annotations

import numpy as np
import pytest

from robot_rl.agent.frames import NO_FRAME, STALE_FRAME, LatestFrames
from robot_rl.tasks.camera import ImageObservationConfig, preprocess_color

VIEW = ImageObservationConfig(width=8, height=6, crop=(0.25, 0.0, 0.75, 1.0),
                              max_frame_age_s=0.05)


def _frame(value: int, shape: tuple[int, ...] = (6, 8, 3)) -> np.ndarray:
    return np.full(shape, value, np.uint8)


def test_a_joint_state_gets_the_frame_closest_in_time() -> None:
    frames = LatestFrames(VIEW, full_frames=False)
    for i, stamp in enumerate((1.0, 1.033, 1.066)):
        frames.on_color(_frame(i), stamp)
    for joint_stamp, expected in ((1.05, 2), (1.045, 1), (1.0, 0), (1.09, 2)):
        frame, reason = frames.pair(joint_stamp)
        assert reason is None and frame is not None
        assert frame.color[0, 0, 0] == expected and frame.color.shape == (6, 8, 3)
    assert frames.counts == {"paired": 4, STALE_FRAME: 0, NO_FRAME: 0}


def test_a_frame_too_far_from_the_joint_state_is_a_stale_frame_not_a_reuse() -> None:
    frames = LatestFrames(VIEW, full_frames=False)
    assert frames.pair(1.0) == (None, f"{NO_FRAME}: no camera frame received yet")
    frames.on_color(_frame(7), 1.0)
    frame, reason = frames.pair(1.2)  # the camera stopped 200 ms before this joint state
    assert frame is None
    assert reason == (f"{STALE_FRAME}: the closest camera frame is 200 ms from the joint state "
                      "(limit 50 ms; newest frame 200 ms before it)")
    frames.on_color(_frame(8), 1.19)  # it came back
    frame, reason = frames.pair(1.2)
    assert reason is None and frame.color[0, 0, 0] == 8
    assert frames.counts == {"paired": 1, STALE_FRAME: 1, NO_FRAME: 1}


def test_full_frames_are_cut_to_the_view_once_per_frame() -> None:
    frames = LatestFrames(VIEW, full_frames=True)
    full = np.random.default_rng(0).integers(0, 255, (24, 32, 3), dtype=np.uint8)
    frames.on_color(full, 2.0)
    first, _ = frames.pair(2.0)
    np.testing.assert_array_equal(first.color, preprocess_color(full, VIEW))
    again, _ = frames.pair(2.01)
    assert again is first  # two control steps on one frame: cut once


def test_the_view_stream_must_carry_the_views_size() -> None:
    frames = LatestFrames(VIEW, full_frames=False)
    with pytest.raises(ValueError, match=r"expected \(6, 8, 3\) uint8 rgb \(the view stream\)"):
        frames.on_color(_frame(0, (24, 32, 3)), 1.0)


def test_depth_joins_the_colour_frame_of_the_same_capture() -> None:
    view = ImageObservationConfig(width=8, height=6, depth=True, max_frame_age_s=0.05)
    frames = LatestFrames(view, full_frames=False)
    frames.on_color(_frame(1), 1.0)
    frame, reason = frames.pair(1.0)
    assert frame is None and reason.startswith(f"{NO_FRAME}: no depth frame")
    frames.on_depth(np.full((6, 8), 500, np.uint16), 0.967)  # an older capture's depth
    assert frames.pair(1.0)[0] is None
    frames.on_depth(np.full((6, 8), 600, np.uint16), 1.0)
    frame, reason = frames.pair(1.01)
    assert reason is None and frame.depth[0, 0] == 600
