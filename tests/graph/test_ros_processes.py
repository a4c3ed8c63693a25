"""Two processes exchange JointState and Image over real Cyclone DDS on a private domain."""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from graph_probe import read_line_containing
from helpers.backends import both_backends
from helpers.processes import python_cmd

from robot_rl.ros import messages as m
from robot_rl.ros.qos import QOS_DEFAULT, QOS_SENSOR_DATA
from robot_rl.ros.runtime import make_node

# A node in its own process that sends back what it receives, under another topic.
ECHO_NODE = """
import sys
from robot_rl.ros import messages as m
from robot_rl.ros.qos import QOS_DEFAULT, QOS_SENSOR_DATA
from robot_rl.ros.runtime import make_node, run

def build(argv):
    node = make_node("echo", argv=argv)
    joints = node.create_publisher(m.JointState, "pong/joint_states", QOS_DEFAULT)
    image = node.create_publisher(m.Image, "pong/image", QOS_SENSOR_DATA)
    node.create_subscription(m.JointState, "ping/joint_states", joints.publish, QOS_DEFAULT)
    node.create_subscription(m.Image, "ping/image", image.publish, QOS_SENSOR_DATA)
    node.get_logger().info("ready on " + joints.topic)
    return node

sys.exit(run(build))
"""


def _spin_until(node: Any, condition: Callable[[], bool], timeout_s: float,
                every: Callable[[], None] | None = None) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting for the other process"
        if every is not None:
            every()
        node.spin_once(0.05)


@both_backends
def test_joint_state_and_image_cross_processes(ros_domain: int, spawn: Any) -> None:
    echo = spawn(python_cmd(ECHO_NODE, "--ros-args", "-r", "__ns:=/peer"),
                 stderr=subprocess.PIPE, text=True)
    assert echo.stderr is not None
    read_line_containing(echo.stderr, "[peer.echo]: ready on /peer/pong/joint_states")

    node = make_node("tester", "/peer", argv=[])
    try:
        joints_back: list[m.JointState] = []
        images_back: list[m.Image] = []
        endpoints = [
            node.create_subscription(m.JointState, "pong/joint_states", joints_back.append,
                                     QOS_DEFAULT),
            node.create_subscription(m.Image, "pong/image", images_back.append, QOS_SENSOR_DATA)]
        joints_out = node.create_publisher(m.JointState, "ping/joint_states", QOS_DEFAULT)
        image_out = node.create_publisher(m.Image, "ping/image", QOS_SENSOR_DATA)
        endpoints += [joints_out, image_out]
        # discovery first (Cyclone: milliseconds; Fast DDS: seconds), then the exchange
        _spin_until(node, lambda: all(e.matched_count() for e in endpoints), 30.0)

        sent = m.joint_state([f"joint_{i}" for i in range(9)], np.linspace(-1, 1, 9),
                             np.arange(9.0), np.full(9, 0.25), stamp_s=100.125)
        _spin_until(node, lambda: bool(joints_back), 10.0, lambda: joints_out.publish(sent))
        assert joints_back[0] == sent

        pixels = np.random.default_rng(1).integers(0, 256, (480, 640, 3), dtype=np.uint8)
        frame = m.image_from_numpy(pixels, "rgb8", stamp_s=7.5, frame_id="camera")
        # best effort: a frame may be dropped, so keep offering until one comes back
        _spin_until(node, lambda: bool(images_back), 10.0, lambda: image_out.publish(frame))
        back = images_back[0]
        assert (back.header, back.encoding, back.step) == (frame.header, "rgb8", 640 * 3)
        np.testing.assert_array_equal(m.image_to_numpy(back), pixels)
    finally:
        node.destroy()

    echo.send_signal(signal.SIGINT)
    assert echo.wait(timeout=5) == 0  # clean shutdown on SIGINT
    assert echo.poll() is not None
