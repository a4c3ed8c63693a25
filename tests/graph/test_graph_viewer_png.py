"""The twin node writing its live view as a PNG (its own process, real DDS) when ``viewer:=true``
finds no display; the PNG itself is tested in tests/unit/test_viewer_png.py."""

from __future__ import annotations

import json
import os
import sys
from typing import Any

import numpy as np
from helpers.viewer import read_png, wait_for

from robot_rl.nodes import topics
from robot_rl.ros import messages as m
from robot_rl.ros.qos import QOS_DEFAULT
from robot_rl.ros.runtime import make_node
from robot_rl.tasks.valve import ValveTaskConfig

HOME = np.tile(ValveTaskConfig().finger_home_rad, 3)  # the valve task's reset pose


def test_twin_node_writes_the_live_png_without_display(ros_domain: int, spawn: Any,
                                                       tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("DISPLAY", raising=False)      # the node's environment: headless
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    png = tmp_path / "live.png"
    code = "import sys, robot_rl.sim_twin.node as n; sys.exit(n.main())"
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
