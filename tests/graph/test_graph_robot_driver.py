"""The generic driver node puts a Robot implementation on the graph (here the twin as a robot,
driver kind ``twin``), obeying only the safety node's COMMAND, separate processes over real DDS."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import numpy as np
from graph_probe import Probe, node_cmd, params, stop
from helpers.backends import both_backends
from test_graph_learner import Lines

from robot_rl.nodes import topics
from robot_rl.robot_config import load_robot
from robot_rl.ros import messages as m
from robot_rl.ros.qos import QOS_DEFAULT, QOS_SENSOR_DATA

ARM = load_robot("ur5e")
NAMES = list(ARM.joint_names)


@both_backends
def test_a_robot_driver_follows_the_supervisor_and_only_commands_based_on_its_states(
        ros_domain: int, spawn: Any, tmp_path: Path) -> None:
    ns = ["-r", "__ns:=/arm"]
    driver = spawn(node_cmd("robot_rl.nodes.robot_driver", *ns, *params(
        robot="ur5e", driver="twin", driver_options='{"task": "drawer"}',
        control_rate_hz=100.0)), stderr=subprocess.PIPE, text=True)
    log = Lines(driver)
    safety = spawn(node_cmd("robot_rl.nodes.safety", *ns, *params(robot="ur5e")),
                   stderr=subprocess.DEVNULL)
    probe = Probe("/arm")
    try:
        states = probe.listen("joints", m.JointState, topics.JOINT_STATES, QOS_SENSOR_DATA)
        objects = probe.listen("object", m.JointState, "/object/state", QOS_SENSOR_DATA)
        gated = probe.listen("gated", m.JointState, topics.COMMAND, QOS_DEFAULT)
        raw = probe.node.create_publisher(m.JointState, topics.COMMAND_RAW, QOS_DEFAULT)
        forged = probe.node.create_publisher(m.JointState, topics.COMMAND, QOS_DEFAULT)
        probe.wait_until(lambda: bool(states), 60.0, what="joint states from the driver node")
        assert list(states[-1].name) == NAMES and not objects  # the UR5e calibration: no sensor
        # the twin starts at zero, the arm stretched out: it settles under gravity first
        probe.wait_until(lambda: np.abs(states[-1].velocity).max() < 1e-3, 30.0,
                         what="the arm to come to rest")
        start = np.array(states[-1].position)
        # a COMMAND stamped before the node's first state (C1) is never written
        early = start.copy()
        early[0] += 0.04
        log.wait_for(r"publishing /arm/joint_states", 30)
        probe.spin_for(0.5, lambda: forged.publish(m.joint_state(NAMES, early, stamp_s=1.0)),
                       0.05)
        log.wait_for(r"ignored a command based on a state stamped 1\.0+, before this node", 10)
        assert np.abs(np.array(states[-1].position) - start).max() < 1e-3
        # a raw command reaches the robot through the supervisor, stepped by its limits
        target = start.copy()
        target[0] += 0.3
        probe.wait_until(lambda: states[-1].position[0] > start[0] + 0.25, 30.0,
                         lambda: raw.publish(m.joint_state(NAMES, target)), 0.05,
                         what="the arm to follow a raw command through the safety node")
        steps = np.diff([g.position[0] for g in gated])
        assert steps.max() <= ARM.safety.max_step_rad + 1e-9  # the supervisor's step limit
    finally:
        probe.destroy()
    assert stop(safety) == 0
    assert stop(driver) == 0
    log.wait_for(r"stopping: .*'commands': \d+.*'commands_before_connect': [1-9]", 10)
