"""hil mode with a RealSense recording as the camera: the RealSense node (real pyrealsense2) plays a
recording; the actor pairs the twin's joint states with its frames by their stamps, cuts the full
frames to the valve's view itself (``camera_frames:=full``) and acts from a pixel checkpoint,
through the safety node, to the end of an episode."""

from __future__ import annotations

import csv
import subprocess
from pathlib import Path
from typing import Any

import pytest
from graph.graph_probe import node_cmd, params, stop
from helpers.pixels import PixelRun, make_pixel_run
from test_driver_realsense_node import FPS, HEIGHT, WIDTH, twin_recording  # noqa: F401


@pytest.fixture(scope="module")
def pixel_run(tmp_path_factory: pytest.TempPathFactory) -> PixelRun:
    return make_pixel_run(tmp_path_factory.mktemp("pixels"))


def test_the_actor_acts_on_a_realsense_recordings_frames(ros_domain: int, spawn: Any,
                                                         tmp_path: Path, pixel_run: PixelRun,
                                                         twin_recording: Any  # noqa: F811
                                                         ) -> None:
    path = twin_recording[0]
    camera = spawn(node_cmd("robot_rl.drivers.realsense.node", *params(
        recording_path=str(path), width=WIDTH, height=HEIGHT, fps=FPS, loop=True)),
        stderr=subprocess.DEVNULL)
    twin = spawn(node_cmd("robot_rl.sim_twin.node", "-r", "__ns:=/hand", *params(publish_rate_hz=50.0)),
                 stderr=subprocess.DEVNULL)  # the joints and the valve; no camera of its own
    safety = spawn(node_cmd("robot_rl.nodes.safety", "-r", "__ns:=/hand"),
                   stderr=subprocess.DEVNULL)
    log = tmp_path / "episodes.csv"
    actor = spawn(node_cmd("robot_rl.nodes.actor", *params(
        checkpoint=pixel_run.checkpoint, observation="pixels", camera_frames="full",
        max_episodes=1, episode_log=log, reset_timeout_s=2.0)), stderr=subprocess.PIPE,
        text=True)
    try:  # the actor exits by itself after its one episode
        _, err = actor.communicate(timeout=180)
    except subprocess.TimeoutExpired:
        stop(actor)
        raise AssertionError(f"no episode in 180 s; the actor said: {actor.stderr.read()[-2000:]}"
                             ) from None
    assert actor.returncode == 0, err[-2000:]
    assert "camera /camera/color/image_raw (64x64 view, cut here)" in err
    assert "1 episodes done (max_episodes 1)" in err
    for proc in (camera, twin, safety):
        assert stop(proc) == 0
    with open(log, newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 1 and int(rows[0]["steps"]) > 1
