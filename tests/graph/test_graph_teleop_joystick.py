"""The teleop node driven by a joystick (its own process, real DDS): js_event bytes through a FIFO
to commands and episode events; the reader itself is tested in tests/unit/test_teleop_joystick.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from typing import Any

import numpy as np
from helpers.joystick import RY, A, Fifo, axis, button

from robot_rl.nodes import topics
from robot_rl.robot_config import load_robot
from robot_rl.ros import messages as m
from robot_rl.ros.qos import QOS_DEFAULT, QOS_SENSOR_DATA
from robot_rl.ros.runtime import make_node

NAMES = list(load_robot("dclaw").joint_names)


def test_teleop_node_with_a_joystick(ros_domain: int, spawn: Any, tmp_path) -> None:
    path = str(tmp_path / "js0")
    os.mkfifo(path)
    code = "import sys, robot_rl.nodes.teleop as n; sys.exit(n.main())"
    teleop = spawn([sys.executable, "-c", code, "--ros-args", "-r", "__ns:=/hand",
                    "-p", "device:=joystick", "-p", f"joystick_path:={path}",
                    "-p", "joint_speed_rad_s:=1.0", "-p", "control_rate_hz:=50.0"],
                   stdin=subprocess.DEVNULL)
    probe = make_node("probe", "/hand", argv=[])
    writer = Fifo(path)
    try:
        joints = probe.create_publisher(m.JointState, topics.JOINT_STATES, QOS_SENSOR_DATA)
        raw: list[m.JointState] = []
        episodes: list[m.String] = []
        probe.create_subscription(m.JointState, topics.COMMAND_RAW, raw.append, QOS_DEFAULT)
        probe.create_subscription(m.String, topics.EPISODE, episodes.append, QOS_DEFAULT)

        def wait(condition: Any, what: str, timeout_s: float = 20.0) -> None:
            deadline = time.monotonic() + timeout_s
            while not condition():
                assert time.monotonic() < deadline, f"timed out waiting for {what}"
                joints.publish(m.joint_state(NAMES, np.zeros(len(NAMES))))
                probe.spin_once(0.02)

        wait(lambda: bool(raw), "teleop commands")
        writer.write(axis(-32767, RY))                 # right stick up: f0_base at 1 rad/s
        wait(lambda: raw[-1].position[0] > 0.1, "f0_base moving")
        writer.write(button(1, A) + button(0, A))
        wait(lambda: bool(episodes), "the start event")
        assert json.loads(episodes[0].data) == {"event": "start", "episode": 0}
        assert teleop.poll() is None
    finally:
        writer.close()
        probe.destroy()
        if teleop.poll() is None:
            teleop.send_signal(2)
            teleop.wait(timeout=10)
