"""The generic driver node: any ``robot_rl.robot.Robot`` on the graph.

The driver is the calibration's ``kind`` (or the ``driver`` parameter), found through
robot_rl.registry: a robot whose driver a package provides needs no node of its own. Every
control period the node reads the robot and publishes JOINT_STATES (rad, rad/s, effort A,
calibration order, stamped with the measurement's time), OBJECT_STATE for the calibration's
sensors, and TEMPERATURE / HARDWARE_ERROR when the driver measured them. It obeys only COMMAND,
the safety supervisor's gated output, never COMMAND_RAW, and then only:

- a command based on a state it published after connecting (contract C1: COMMAND's header stamp
  is the stamp of the state the supervisor decided on; earlier ones are counted
  ``commands_before_connect`` and dropped);
- after the drivers' own rules (robot_rl.robot.check_goal): clamped into the limits shrunk by
  the margin, refused more than ``max_step_rad`` from the last measurement or when that is older
  than ``state_timeout_s`` (counted ``refused_<reason>``), and whatever the driver itself refuses.

The robot is disconnected (torque off where the driver does so) on shutdown.
"""

from __future__ import annotations

import json
import math
import sys
import time
from collections import Counter

import numpy as np

from robot_rl.nodes import topics
from robot_rl.nodes.robot_state import RobotStatePublishers
from robot_rl.registry import driver_class
from robot_rl.robot import GoalRefused, Robot, RobotReading, check_goal
from robot_rl.robot_config import load_robot
from robot_rl.ros import messages as m
from robot_rl.ros.api import Node
from robot_rl.ros.qos import QOS_DEFAULT, QOS_SENSOR_DATA
from robot_rl.ros.runtime import make_node, run

_LOG_GAP_S = 2.0  # repeated warnings of one kind are logged at most this often
_STAMP_TOLERANCE_S = 1e-6  # a stamp through a float and back may move by a few hundred ns


class RobotDriverNode:
    def __init__(self, argv: list[str]) -> None:
        self.node: Node = make_node("robot_driver", argv=argv)
        p = self.node.declare_parameter
        robot = p("robot", "dclaw", "calibration name or YAML path")
        driver = p("driver", "", "driver kind (robot_rl.registry); '': the calibration's kind")
        options = p("driver_options", "{}", "the driver's own settings as a JSON object, e.g. "
                                            '{"port": "/dev/ttyUSB1"}')
        rate_hz = p("control_rate_hz", 100.0, "read/publish rate (Hz)")
        if not rate_hz > 0:
            raise ValueError(f"node {self.node.fully_qualified_name}: control_rate_hz must be "
                             f"> 0, got {rate_hz}")
        try:
            settings = json.loads(options)
        except json.JSONDecodeError as err:
            raise ValueError(f"node {self.node.fully_qualified_name}: parameter driver_options "
                             f"is not JSON: {err}") from None
        if not isinstance(settings, dict):
            raise ValueError(f"node {self.node.fully_qualified_name}: parameter driver_options "
                             f"must be a JSON object, got {options!r}")
        self.calibration = load_robot(robot)
        kind = driver or self.calibration.kind
        self.robot: Robot = driver_class(kind)(self.calibration, **settings)
        self._names = list(self.calibration.joint_names)
        self._sensor_names = [s.name for s in self.calibration.sensors]
        self._counters: Counter[str] = Counter()
        self._last_log: dict[str, float] = {}
        self._measured: np.ndarray | None = None
        self._measured_at_s = -math.inf  # time.monotonic() when the latest reading came
        self._obey_from_s: float | None = None  # stamp of the first state published
        state = RobotStatePublishers.create(self.node)
        self._joints, self._temperature = state.joints, state.temperature
        self._errors = state.hardware_error
        self._object = (self.node.create_publisher(m.JointState, topics.OBJECT_STATE,
                                                   QOS_SENSOR_DATA)
                        if self._sensor_names else None)
        self.robot.connect()
        command = self.node.create_subscription(m.JointState, topics.COMMAND, self._on_command,
                                                QOS_DEFAULT)
        self._command_topic = command.topic
        self.node.create_timer(1.0 / rate_hz, self._tick)
        self.node.get_logger().info(
            f"{self.calibration.robot} through driver {kind} ({type(self.robot).__name__}): "
            f"publishing {self._joints.topic} at {rate_hz:g} Hz, obeying {self._command_topic}")

    # ---- the cycle -----------------------------------------------------------------------------
    def _tick(self) -> None:
        reading = self.robot.read()
        self._measured, self._measured_at_s = reading.position_rad, time.monotonic()
        self._publish(reading)
        if self._obey_from_s is None:
            self._obey_from_s = m.stamp_to_s(m.s_to_stamp(reading.stamp_s))  # as published

    def _publish(self, reading: RobotReading) -> None:
        self._joints.publish(m.joint_state(self._names, reading.position_rad,
                                           reading.velocity_rad_s, reading.effort_a,
                                           stamp_s=reading.stamp_s))
        if self._object is not None and reading.sensors_rad is not None:
            self._object.publish(m.joint_state(self._sensor_names, reading.sensors_rad,
                                               stamp_s=reading.stamp_s))
        if reading.temperature_c is not None:
            self._temperature.publish(m.Float32MultiArray(
                data=[float(t) for t in reading.temperature_c]))
        if reading.hardware_error is not None:
            self._errors.publish(m.UInt8MultiArray(
                data=bytes(int(bool(e)) for e in reading.hardware_error)))

    # ---- commands ------------------------------------------------------------------------------
    def _on_command(self, msg: m.JointState) -> None:
        names = list(msg.name)
        if sorted(names) != sorted(self._names) or len(msg.position) != len(names):
            self._refused("malformed", f"names {names} with {len(msg.position)} positions; "
                                       f"expected {self._names}")
            return
        by_name = dict(zip(names, msg.position))
        goal = np.array([by_name[n] for n in self._names])
        basis_s = m.stamp_to_s(msg.header.stamp)
        if self._obey_from_s is None or basis_s < self._obey_from_s - _STAMP_TOLERANCE_S:
            self._counters["commands_before_connect"] += 1
            self._throttled("before", f"{self._command_topic}: ignored a command based on a "
                                      f"state stamped {basis_s:.6f}, before this node's first "
                                      f"({self._obey_from_s}) (contract C1)")
            return
        try:
            goal = check_goal(self.robot.limits, goal, self._measured,
                              time.monotonic() - self._measured_at_s)
            self.robot.write_goal(goal)
        except GoalRefused as err:
            self._refused(err.reason, str(err))
            return
        self._counters["commands"] += 1

    def _refused(self, reason: str, why: str) -> None:
        self._counters[f"refused_{reason}"] += 1
        self._throttled(reason, f"{self._command_topic}: goal not written: {why}")

    def _throttled(self, kind: str, text: str) -> None:
        now = time.monotonic()
        if now - self._last_log.get(kind, -math.inf) >= _LOG_GAP_S:
            self._last_log[kind] = now
            self.node.get_logger().warning(text)

    @property
    def counters(self) -> dict[str, int]:
        return dict(self._counters)

    def close(self) -> None:
        self.node.get_logger().info(f"stopping: {dict(sorted(self._counters.items()))}; "
                                    "disconnecting the robot")
        self.robot.disconnect()


def main(argv: list[str] | None = None) -> int:
    return run(RobotDriverNode, sys.argv[1:] if argv is None else argv)
