"""The teleop node in its own process: keys from a real pseudo-terminal, Joy over DDS, and a
leader robot mirrored through the safety node onto the twin."""

from __future__ import annotations

import json
import os
import subprocess
from typing import Any

import numpy as np
import pytest
from graph_probe import Probe, node_cmd, params, stop
from helpers.backends import both_backends

from robot_rl.nodes import topics
from robot_rl.robot_config import load_robot
from robot_rl.ros import messages as m
from robot_rl.ros.qos import QOS_DEFAULT, QOS_SENSOR_DATA

CAL = load_robot("dclaw")
NAMES = list(CAL.joint_names)
N = len(NAMES)


@both_backends
def test_keys_and_gamepad_move_targets_and_publish_events(ros_domain: int, spawn: Any) -> None:
    master, slave = os.openpty()  # the node's stdin is a terminal, as for a person at a keyboard
    teleop = spawn(node_cmd("robot_rl.nodes.teleop", "-r", "__ns:=/hand",
                            *params(device="gamepad", key_step_rad=0.05,
                                    joint_speed_rad_s=1.0, control_rate_hz=50.0)),
                   stdin=slave)
    os.close(slave)
    probe = Probe()
    try:
        joints = probe.node.create_publisher(m.JointState, topics.JOINT_STATES, QOS_SENSOR_DATA)
        joy = probe.node.create_publisher(m.Joy, topics.TELEOP_JOY, QOS_SENSOR_DATA)
        raw = probe.listen("raw", m.JointState, topics.COMMAND_RAW, QOS_DEFAULT)
        events = probe.listen("episode", m.String, topics.EPISODE, QOS_DEFAULT)
        estops = probe.listen("estop", m.Bool, topics.ESTOP, QOS_DEFAULT)
        measured = np.zeros(N)

        def robot() -> None:
            joints.publish(m.joint_state(NAMES, measured))

        probe.wait_until(lambda: bool(raw), 25.0, robot, what="teleop commands")
        np.testing.assert_allclose(raw[-1].position, measured)  # starts where the robot is

        os.write(master, b"2www")  # select f0_mid, three steps up
        probe.wait_until(lambda: raw[-1].position[1] > 0.14, 5.0, robot, what="f0_mid +0.15")
        assert raw[-1].position[1] == pytest.approx(0.15)
        assert np.count_nonzero(raw[-1].position) == 1

        axes = [0.0] * 6
        axes[4] = 1.0  # right stick up: the gamepad's selected joint (f0_base) at 1 rad/s
        probe.wait_until(lambda: raw[-1].position[0] > 0.1, 5.0,
                         lambda: (robot(), joy.publish(m.Joy(axes=axes, buttons=[0] * 9))),
                         what="f0_base moving")
        assert raw[-1].position[0] <= 0.3 + 1e-9  # never leads the measurement by more

        os.write(master, b"b")
        buttons = [0] * 9
        buttons[3] = 1  # Y: end as a failure
        probe.wait_until(lambda: len(events) >= 1, 5.0, robot, what="start event")
        probe.wait_until(lambda: len(events) >= 2, 5.0,
                         lambda: (robot(), joy.publish(m.Joy(axes=[0.0] * 6, buttons=buttons))),
                         what="end event")
        assert [json.loads(e.data) for e in events[:2]] == [
            {"event": "start", "episode": 0}, {"event": "end", "episode": 0, "success": False}]
        os.write(master, b" ")
        probe.wait_until(lambda: bool(estops), 5.0, robot, what="e-stop")
        assert estops[-1].data is True
    finally:
        probe.destroy()
        os.close(master)
    assert stop(teleop) == 0


@both_backends
def test_leader_is_mirrored_through_safety_onto_the_twin(ros_domain: int, spawn: Any) -> None:
    ns = ("-r", "__ns:=/hand")
    twin = spawn(node_cmd("robot_rl.sim_twin.node", *ns, *params(publish_rate_hz=50.0)))
    safety = spawn(node_cmd("robot_rl.nodes.safety", *ns))
    teleop = spawn(node_cmd("robot_rl.nodes.teleop", *ns,
                            *params(device="leader", leader_topic="/leader/joint_states")),
                   stdin=subprocess.DEVNULL)
    probe = Probe()
    try:
        leader = probe.node.create_publisher(m.JointState, "/leader/joint_states",
                                             QOS_SENSOR_DATA)
        states = probe.listen("joints", m.JointState, topics.JOINT_STATES, QOS_SENSOR_DATA)
        status = probe.listen("status", m.String, topics.SAFETY_STATUS, QOS_DEFAULT)
        pose = np.zeros(N)
        pose[NAMES.index("f1_mid")] = -0.4  # away from the valve: no contact current
        pose[NAMES.index("f2_base")] = -0.3

        probe.wait_until(
            lambda: bool(states) and np.allclose(states[-1].position, pose, atol=0.08), 40.0,
            lambda: leader.publish(m.joint_state(NAMES, pose)), 0.05,
            what="the twin to take the leader's pose")
        # moving fast can trip the current limit (a hold, then motion resumes); at rest it passes
        # (the status is latched and repeated each second: a volatile reader that matched after
        # the last change, as Fast DDS's slower discovery allows, has none until then)
        probe.wait_until(lambda: bool(status) and status[-1].data in ("pass", "clipped"), 5.0,
                         lambda: leader.publish(m.joint_state(NAMES, pose)), 0.05,
                         what="safety passing the mirrored commands at rest")
    finally:
        probe.destroy()
    for proc in (teleop, safety, twin):
        assert stop(proc) == 0
