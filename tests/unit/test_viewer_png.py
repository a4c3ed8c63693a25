"""The headless live view: the twin's latest frame as a PNG file, from the real renderer, and the
twin node writing it (its own process, real DDS) when ``viewer:=true`` finds no display."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

import sim_twin  # noqa: F401  (sets MUJOCO_GL before mujoco renders)
from robot_rl.nodes import topics
from robot_rl.ros import messages as m
from robot_rl.ros.qos import QOS_DEFAULT
from robot_rl.ros.runtime import make_node
from robot_rl.tasks.valve import ValveTaskConfig
from sim_twin.viewer import PngViewer, display_available, open_viewers

HOME = np.tile(ValveTaskConfig().finger_home_rad, 3)  # the valve task's reset pose


def wait_for(condition: Any, timeout_s: float, what: str, every: Any = None) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        if every is not None:
            every()
        time.sleep(0.02)


def read_png(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"), dtype=np.int16)


def test_png_shows_the_latest_state_and_is_replaced_whole(twin, tmp_path) -> None:
    path = tmp_path / "view" / "twin.png"
    viewer = PngViewer(twin.model, path, width=64, height=48)
    try:
        viewer.update(twin.data)
        wait_for(lambda: viewer.frames_written >= 1, 10.0, "the first PNG")
        first = read_png(path)
        assert first.shape == (48, 64, 3) and first.std() > 0
        twin.reset(HOME, 1.2)                          # the valve turns
        viewer.update(twin.data)
        wait_for(lambda: viewer.frames_written >= 2, 10.0, "the second PNG")
        assert np.abs(read_png(path) - first).mean() > 0.05
        assert viewer.error is None
        assert sorted(p.name for p in path.parent.iterdir()) == ["twin.png"]  # no temp file left
    finally:
        viewer.close()


def test_window_without_display_falls_back_to_png_and_says_why(twin, tmp_path,
                                                               monkeypatch) -> None:
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    monkeypatch.chdir(tmp_path)
    viewers, notes = open_viewers(twin.model, twin.data, window=True, png_path="", width=64,
                                  height=48)
    try:
        assert len(viewers) == 1 and isinstance(viewers[0], PngViewer)
        assert "no display" in notes[0] and "PNG instead" in notes[0]
        assert str(tmp_path / "twin_view.png") in notes[1]
        viewers[0].update(twin.data)
        wait_for((tmp_path / "twin_view.png").exists, 10.0, "twin_view.png")
    finally:
        for viewer in viewers:
            viewer.close()


def test_display_detection_and_bad_camera(twin, tmp_path) -> None:
    assert display_available({"DISPLAY": ":0"}) == ""
    assert display_available({"WAYLAND_DISPLAY": "wayland-0"}) == ""
    assert "no display" in display_available({})
    with pytest.raises(ValueError, match=r"viewer camera 'top' .* cameras: \['realsense'\]"):
        PngViewer(twin.model, tmp_path / "x.png", camera="top")


@pytest.mark.graph
def test_twin_node_writes_the_live_png_without_display(ros_domain: int, spawn: Any,
                                                       tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("DISPLAY", raising=False)      # the node's environment: headless
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    png = tmp_path / "live.png"
    code = "import sys, sim_twin.node as n; sys.exit(n.main())"
    twin = spawn([sys.executable, "-c", code, "--ros-args", "-r", "__ns:=/hand",
                  "-p", "viewer:=true", "-p", f"viewer_png:={png}", "-p", "viewer_rate_hz:=10.0",
                  "-p", "camera_width:=64", "-p", "camera_height:=48"],
                 stderr=(tmp_path / "twin.log").open("w"))
    probe = make_node("probe", "/hand", argv=[])
    try:
        replies: list[m.String] = []
        probe.create_subscription(m.String, topics.EPISODE_STATUS, replies.append, QOS_DEFAULT)
        episode = probe.create_publisher(m.String, topics.EPISODE, QOS_DEFAULT)
        wait_for(png.exists, 25.0, "the twin node's PNG", lambda: probe.spin_once(0.05))
        log = (tmp_path / "twin.log").read_text()
        assert "viewer window unavailable: no display" in log
        before = read_png(png)
        reset = {"event": "reset", "episode": 0, "object_position": 1.2,
                 "joint_positions_rad": HOME.tolist()}

        def ask() -> None:
            if not replies:
                episode.publish(m.String(data=json.dumps(reset)))
            probe.spin_once(0.05)

        wait_for(lambda: bool(replies), 15.0, "reset_done", ask)
        wait_for(lambda: np.abs(read_png(png) - before).mean() > 0.05, 10.0,
                 "the PNG to show the turned valve", lambda: probe.spin_once(0.05))
        assert twin.poll() is None
    finally:
        probe.destroy()
        if twin.poll() is None:
            twin.send_signal(2)
            twin.wait(timeout=10)
    assert os.path.getsize(png) > 0
