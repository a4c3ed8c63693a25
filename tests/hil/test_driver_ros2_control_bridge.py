"""The ros2_control bridge as a process, against a fake controller process written here.

The fake stands in for a UR5e's ros2_control stack (not installable here): it takes commands the
way a joint_trajectory_controller or a forward_command_controller does, moves its joints there at
a bounded speed, and publishes /joint_states as joint_state_broadcaster does, in its own joint
order and with an extra joint (a gripper) the bridge must drop. It echoes what it received.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest
from graph.graph_probe import Probe, node_cmd, params, stop
from helpers.backends import both_backends
from helpers.processes import python_cmd

from robot_rl.nodes import topics
from robot_rl.robot_config import load_robot
from robot_rl.ros import messages as m
from robot_rl.ros.qos import QOS_DEFAULT, QOS_SENSOR_DATA

CAL = load_robot("ur5e")
NAMES = list(CAL.joint_names)
START_TIMEOUT_S = 40.0

FAKE_CONTROLLER = r'''
import json, sys
import numpy as np
from robot_rl.ros import messages as m
from robot_rl.ros.qos import QOS_DEFAULT
from robot_rl.ros.runtime import make_node, run

CONTROLLER, MODE, NAMES = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
ORDER = [*NAMES[::-1], "gripper_joint"]        # its own order, and a joint that is not ours

class Fake:
    def __init__(self, argv):
        self.node = make_node("fake_controller", argv=[])
        self.position = dict.fromkeys(ORDER, 0.0)
        self.goal = dict(self.position)
        self.states = self.node.create_publisher(m.JointState, "/joint_states", QOS_DEFAULT)
        self.echo = self.node.create_publisher(m.String, "/fake_controller/received", QOS_DEFAULT)
        if MODE == "joint_trajectory":
            self.node.create_subscription(m.JointTrajectory, f"/{CONTROLLER}/joint_trajectory",
                                          self.on_trajectory, QOS_DEFAULT)
        else:
            self.node.create_subscription(m.Float64MultiArray, f"/{CONTROLLER}/commands",
                                          self.on_commands, QOS_DEFAULT)
        self.node.create_timer(0.01, self.tick)

    def on_trajectory(self, msg):
        point = msg.points[-1]
        self.goal.update(zip(msg.joint_names, point.positions))
        self.echo.publish(m.String(data=json.dumps({
            "joint_names": list(msg.joint_names), "points": len(msg.points),
            "time_from_start_s": m.stamp_to_s(point.time_from_start)})))

    def on_commands(self, msg):
        self.goal.update(zip(NAMES, msg.data))     # a forward controller's configured order
        self.echo.publish(m.String(data=json.dumps({"data": list(msg.data)})))

    def tick(self):
        for name in ORDER:                          # 2 rad/s at most, like a real arm
            error = self.goal[name] - self.position[name]
            self.position[name] += float(np.clip(error, -0.02, 0.02))
        self.states.publish(m.joint_state(ORDER, [self.position[n] for n in ORDER],
                                          [0.0] * len(ORDER),
                                          [0.1 * i for i in range(len(ORDER))]))

sys.exit(run(Fake, []))
'''


@pytest.mark.parametrize("mode", ["joint_trajectory", "forward_command"])
@both_backends
def test_bridge_reorders_states_and_commands_the_controller(ros_domain: int, spawn: Any,
                                                            mode: str) -> None:
    controller = "fake_arm_controller"
    fake = spawn(python_cmd(FAKE_CONTROLLER, controller, mode, json.dumps(NAMES)))
    bridge = spawn(node_cmd("robot_rl.drivers.ros2_control.bridge", "-r", "__ns:=/arm",
                            *params(robot="ur5e", controller=controller, mode=mode,
                                    command_period_s=0.04)))
    probe = Probe("/arm")
    try:
        joints = probe.listen("joints", m.JointState, topics.JOINT_STATES, QOS_SENSOR_DATA)
        echo = probe.listen("echo", m.String, "/fake_controller/received", QOS_DEFAULT)
        command = probe.node.create_publisher(m.JointState, topics.COMMAND, QOS_DEFAULT)
        probe.wait_until(lambda: len(joints) > 3, START_TIMEOUT_S, what="bridged joint states")
        last = joints[-1]
        assert list(last.name) == NAMES  # the calibration's order, the gripper dropped
        # effort passed through by name: the fake's effort is 0.1 x its index in ITS order
        fake_order = [*NAMES[::-1], "gripper_joint"]
        np.testing.assert_allclose(last.effort, [0.1 * fake_order.index(n) for n in NAMES])

        goal = np.array([0.3, -0.4, 0.5, -0.2, 0.1, 0.25])

        def step_toward_goal() -> None:  # as the supervisor steps: within max_step_rad (0.05)
            measured = np.array(joints[-1].position)
            command.publish(m.joint_state(NAMES, measured + np.clip(goal - measured, -0.04, 0.04),
                                          stamp_s=m.stamp_to_s(joints[-1].header.stamp)))

        # (and the fake's echo of it: this reader may match after the first commands, as Fast
        # DDS's slower discovery allows)
        probe.wait_until(lambda: np.allclose(joints[-1].position, goal, atol=1e-6)
                         and bool(echo), 20.0, every=step_toward_goal, period_s=0.05,
                         what="the arm at the commanded goal, and its echo")
        got = json.loads(echo[-1].data)
        if mode == "joint_trajectory":
            assert got == {"joint_names": NAMES, "points": 1,
                           "time_from_start_s": pytest.approx(0.04)}
        else:
            np.testing.assert_allclose(got["data"], goal)

        # COMMAND_RAW is not the bridge's business, a malformed COMMAND is dropped, and so is
        # a COMMAND more than safety.max_step_rad from the measured position (any publisher can
        # reach COMMAND: the bridge keeps the step limit itself)
        probe.spin_for(0.3)  # echoes of the commands still in flight
        sent = len(echo)
        raw = probe.node.create_publisher(m.JointState, topics.COMMAND_RAW, QOS_DEFAULT)
        far = goal.copy()
        far[2] += 0.3
        diagnostics = probe.listen("diagnostics", m.DiagnosticArray, topics.DIAGNOSTICS,
                                   QOS_DEFAULT)
        probe.spin_for(0.5, every=lambda: (raw.publish(m.joint_state(NAMES, -goal)),
                                           command.publish(m.joint_state(NAMES[:2], [0, 0])),
                                           command.publish(m.joint_state(NAMES, far))))
        assert len(echo) == sent
        np.testing.assert_allclose(joints[-1].position, goal, atol=1e-6)
        probe.wait_until(lambda: any(kv.key == "commands_refused_step" and int(kv.value) > 0
                                     for d in diagnostics for s in d.status for kv in s.values),
                         5.0, what="commands_refused_step in the bridge's diagnostics")
    finally:
        probe.destroy()
    assert stop(bridge) == 0
    assert stop(fake) == 0
