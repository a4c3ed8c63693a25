"""Takeover during online learning on the graph: the teleop node in its intervene role (its own
process, a gamepad over DDS and keys from a real pseudo-terminal)."""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import pytest
from graph_probe import Probe, node_cmd, params, stop

from robot_rl.nodes import topics
from robot_rl.robot_config import load_robot
from robot_rl.ros import messages as m
from robot_rl.ros.qos import QOS_DEFAULT, QOS_SENSOR_DATA

pytestmark = pytest.mark.graph
CAL = load_robot("dclaw")
NAMES = list(CAL.joint_names)
N = len(NAMES)


def test_the_operator_takes_over_with_the_trigger_and_hands_back_on_release(
        ros_domain: int, spawn: Any) -> None:
    master, slave = os.openpty()
    teleop = spawn(node_cmd("robot_rl.nodes.teleop", "-r", "__ns:=/hand",
                            *params(device="gamepad", role="intervene", control_rate_hz=50.0,
                                    joint_speed_rad_s=1.0)), stdin=slave)
    os.close(slave)
    probe = Probe()
    try:
        joints = probe.node.create_publisher(m.JointState, topics.JOINT_STATES, QOS_SENSOR_DATA)
        gated = probe.node.create_publisher(m.JointState, topics.COMMAND, QOS_DEFAULT)
        joy = probe.node.create_publisher(m.Joy, topics.TELEOP_JOY, QOS_SENSOR_DATA)
        raw = probe.listen("raw", m.JointState, topics.COMMAND_RAW, QOS_DEFAULT)
        operator = probe.listen("operator", m.JointState, topics.COMMAND_OPERATOR, QOS_DEFAULT)
        takeover = probe.listen("takeover", m.Bool, topics.TAKEOVER, QOS_DEFAULT)
        measured, sent = np.zeros(N), np.full(N, 0.05)   # the last gated command differs
        axes = [0.0, 0.0, 1.0, 0.0, 0.0, 1.0]             # triggers released (+1)

        def robot(pulled: bool = False, stick: float = 0.0) -> None:
            joints.publish(m.joint_state(NAMES, measured))
            gated.publish(m.joint_state(NAMES, sent))
            joy.publish(m.Joy(axes=axes[:4] + [stick, -1.0 if pulled else 1.0], buttons=[0] * 9))

        probe.wait_until(lambda: len(takeover) >= 5, 25.0, robot, what="TAKEOVER false")
        assert not any(t.data for t in takeover) and not operator

        probe.wait_until(lambda: bool(operator), 5.0, lambda: robot(pulled=True),
                         what="the operator's first target")
        assert takeover[-1].data is True
        np.testing.assert_allclose(operator[0].position, sent)  # from the last gated command
        probe.wait_until(lambda: operator[-1].position[0] > 0.15, 5.0,
                         lambda: robot(pulled=True, stick=1.0), what="f0_base moving")
        count = len(operator)
        probe.wait_until(lambda: not takeover[-1].data, 5.0, robot, what="hand back on release")
        probe.spin_for(0.3, robot)
        assert len(operator) <= count + 2                  # no targets once handed back
        os.write(master, b"t")                             # a gamepad takes over by its trigger
        probe.spin_for(0.3, robot)
        assert not takeover[-1].data
        assert not raw                                     # never COMMAND_RAW in this role
    finally:
        probe.destroy()
        os.close(master)
    assert stop(teleop) == 0


def test_the_keyboard_toggles_the_takeover(ros_domain: int, spawn: Any) -> None:
    master, slave = os.openpty()
    teleop = spawn(node_cmd("robot_rl.nodes.teleop", "-r", "__ns:=/hand",
                            *params(device="keyboard", role="intervene", control_rate_hz=50.0,
                                    key_step_rad=0.05)), stdin=slave)
    os.close(slave)
    probe = Probe()
    try:
        joints = probe.node.create_publisher(m.JointState, topics.JOINT_STATES, QOS_SENSOR_DATA)
        operator = probe.listen("operator", m.JointState, topics.COMMAND_OPERATOR, QOS_DEFAULT)
        takeover = probe.listen("takeover", m.Bool, topics.TAKEOVER, QOS_DEFAULT)

        def robot() -> None:
            joints.publish(m.joint_state(NAMES, np.zeros(N)))

        probe.wait_until(lambda: bool(takeover), 25.0, robot, what="TAKEOVER")
        os.write(master, b"t")
        probe.wait_until(lambda: bool(operator), 5.0, robot, what="takeover by key")
        np.testing.assert_allclose(operator[0].position, 0.0)  # no COMMAND yet: the measurement
        os.write(master, b"1w")
        probe.wait_until(lambda: operator[-1].position[0] > 0.04, 5.0, robot, what="key step")
        os.write(master, b"t")
        probe.wait_until(lambda: not takeover[-1].data, 5.0, robot, what="hand back by key")
    finally:
        probe.destroy()
        os.close(master)
    assert stop(teleop) == 0
