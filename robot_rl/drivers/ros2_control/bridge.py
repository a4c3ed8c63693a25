"""The ros2_control bridge: an arm's controllers on one side, our topics on the other.

In:  the arm's ``/joint_states`` (joint_state_broadcaster; any joint order, extra joints such as a
     gripper are ignored) -> our JOINT_STATES in the calibration's order and names, same stamp.
     Effort passes through as the hardware interface reports it (UR's is the joint current, A).
In:  our gated COMMAND (never COMMAND_RAW) -> either
     ``joint_trajectory``: trajectory_msgs/JointTrajectory on ``/<controller>/joint_trajectory``,
     one point, time_from_start = ``command_period_s`` (the controller interpolates over one
     control period and replaces the previous goal), header stamp zero (= start now); or
     ``forward_command``: std_msgs/Float64MultiArray on ``/<controller>/commands`` in the
     calibration's joint order (a forward_command_controller's ``joints`` must list them so).
Parameters are the fields of ``BridgeConfig``, checked like a config file.

Defense in depth (docs/safety.md, "The drivers' own rules"), because any publisher can reach
COMMAND: a command is clamped to the calibration's position limits shrunk by
``safety.position_margin_rad``, and refused (not forwarded, counted, logged) when the arm's last
joint state is older than ``safety.state_timeout_s`` or when a joint's target is more than
``safety.max_step_rad`` from that state.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Sequence

import numpy as np

from robot_rl.config import from_dict, to_dict
from robot_rl.drivers.ros2_control.config import BridgeConfig
from robot_rl.nodes import topics
from robot_rl.robot_config import load_robot
from robot_rl.ros import messages as m
from robot_rl.ros.api import Node
from robot_rl.ros.qos import QOS_DEFAULT, QOS_SENSOR_DATA
from robot_rl.ros.runtime import make_node, run

_LOG_GAP_S = 2.0
_STEP_TOLERANCE_RAD = 1e-9  # float rounding of a target computed exactly at the step limit


def pick(names: Sequence[str], values: Sequence[float], wanted: Sequence[str]
         ) -> np.ndarray | None:
    """``values`` of the ``wanted`` names, in that order; None if one is missing or the lengths
    differ (an optional JointState field left empty also gives None)."""
    if len(names) != len(values):
        return None
    index = {name: i for i, name in enumerate(names)}
    if any(w not in index for w in wanted):
        return None
    return np.array([values[index[w]] for w in wanted], dtype=np.float64)


def trajectory_command(arm_names: Sequence[str], positions: np.ndarray, period_s: float
                       ) -> m.JointTrajectory:
    point = m.JointTrajectoryPoint(positions=[float(p) for p in positions],
                                   time_from_start=m.s_to_duration(period_s))
    return m.JointTrajectory(joint_names=list(arm_names), points=[point])


def forward_command(positions: np.ndarray) -> m.Float64MultiArray:
    return m.Float64MultiArray(data=[float(p) for p in positions])


class Ros2ControlBridge:
    def __init__(self, argv: list[str]) -> None:
        self.node: Node = make_node("ros2_control_bridge", argv=argv)
        defaults = to_dict(BridgeConfig())
        values = {k: self.node.declare_parameter(k, v) for k, v in defaults.items()}
        self.config = from_dict(BridgeConfig, values,
                                source=f"node {self.node.fully_qualified_name} parameters")
        self.calibration = load_robot(self.config.robot)
        self._names = list(self.calibration.joint_names)
        self._arm_names = list(self.config.arm_joint_names(self.calibration.joint_names))
        self._counters = {"states": 0, "states_missing_joints": 0, "commands": 0,
                          "commands_rejected": 0, "commands_refused_step": 0,
                          "commands_refused_stale": 0}
        self._last_state_s = -math.inf
        self._measured: np.ndarray | None = None  # calibration order, from the last arm state
        safety = self.calibration.safety
        self._lower = self.calibration.lower_rad + safety.position_margin_rad
        self._upper = self.calibration.upper_rad - safety.position_margin_rad
        self._last_log_s = -math.inf
        self._make_endpoints()
        self.node.create_timer(1.0, self._publish_diagnostics)
        self.node.get_logger().info(
            f"{self.calibration.robot}: {self._arm_states_topic} -> {self._joints.topic}; "
            f"{self._command_topic} -> {self._out.topic} ({self.config.mode})")

    def _make_endpoints(self) -> None:
        node, cfg = self.node, self.config
        self._joints = node.create_publisher(m.JointState, topics.JOINT_STATES, QOS_SENSOR_DATA)
        self._diagnostics = node.create_publisher(m.DiagnosticArray, topics.DIAGNOSTICS,
                                                  QOS_DEFAULT)
        out_type = m.JointTrajectory if cfg.mode == "joint_trajectory" else m.Float64MultiArray
        # controllers subscribe with the system default QoS (reliable)
        self._out = node.create_publisher(out_type, cfg.command_topic, QOS_DEFAULT)
        # best effort matches the broadcaster's reliable writer and a sensor-data one alike
        states = node.create_subscription(m.JointState, cfg.joint_states_topic, self._on_arm_state,
                                          QOS_SENSOR_DATA)
        self._arm_states_topic = states.topic
        command = node.create_subscription(m.JointState, topics.COMMAND, self._on_command,
                                           QOS_DEFAULT)
        self._command_topic = command.topic

    def _on_arm_state(self, msg: m.JointState) -> None:
        names = list(msg.name)
        position = pick(names, msg.position, self._arm_names)
        if position is None:
            self._counters["states_missing_joints"] += 1
            self._log(f"{self._arm_states_topic}: names {names} lack some of {self._arm_names}")
            return
        velocity = pick(names, msg.velocity, self._arm_names)
        effort = pick(names, msg.effort, self._arm_names)
        self._joints.publish(m.JointState(
            header=msg.header, name=list(self._names), position=position.tolist(),
            velocity=[] if velocity is None else velocity.tolist(),
            effort=[] if effort is None else effort.tolist()))
        self._counters["states"] += 1
        self._last_state_s = time.monotonic()
        self._measured = position

    def _on_command(self, msg: m.JointState) -> None:
        targets = pick(list(msg.name), msg.position, self._names)
        if targets is None or len(msg.name) != len(self._names) \
                or not np.all(np.isfinite(targets)):
            self._counters["commands_rejected"] += 1
            self._log(f"{self._command_topic}: ignored a command with names {list(msg.name)}; "
                      f"expected finite positions for {self._names}")
            return
        targets = np.clip(targets, self._lower, self._upper)
        if not self._within_reach(targets):
            return
        if self.config.mode == "joint_trajectory":
            self._out.publish(trajectory_command(self._arm_names, targets,
                                                 self.config.command_period_s))
        else:
            self._out.publish(forward_command(targets))
        self._counters["commands"] += 1

    def _within_reach(self, targets: np.ndarray) -> bool:
        """The target is within safety.max_step_rad of a fresh measured state (else counted and
        logged: the controller keeps its previous goal)."""
        safety = self.calibration.safety
        age_s = time.monotonic() - self._last_state_s
        if self._measured is None or age_s > safety.state_timeout_s:
            self._counters["commands_refused_stale"] += 1
            self._log(f"{self._command_topic}: refused a command: the last state on "
                      f"{self._arm_states_topic} is {age_s:.3f} s old (safety.state_timeout_s "
                      f"{safety.state_timeout_s} s, calibration {self.calibration.robot})")
            return False
        step = np.abs(targets - self._measured)
        worst = int(np.argmax(step))
        if step[worst] > safety.max_step_rad + _STEP_TOLERANCE_RAD:
            self._counters["commands_refused_step"] += 1
            self._log(f"{self._command_topic}: refused a command: joint {self._names[worst]} "
                      f"target {targets[worst]:.4f} rad is {step[worst]:.4f} rad from its "
                      f"measured {self._measured[worst]:.4f} rad (safety.max_step_rad "
                      f"{safety.max_step_rad}, calibration {self.calibration.robot})")
            return False
        return True

    def _log(self, text: str) -> None:
        now = time.monotonic()
        if now - self._last_log_s >= _LOG_GAP_S:
            self._last_log_s = now
            self.node.get_logger().warning(text)

    def _publish_diagnostics(self) -> None:
        age_s = time.monotonic() - self._last_state_s
        fresh = age_s < 1.0
        status = m.DiagnosticStatus(
            level=m.DiagnosticStatus.OK if fresh else m.DiagnosticStatus.WARN,
            name=f"{self.node.fully_qualified_name}: ros2_control {self.calibration.robot}",
            message="ok" if fresh else f"no joint states on {self._arm_states_topic}",
            hardware_id=self.config.controller,
            values=[m.KeyValue(key=k, value=str(v)) for k, v in self._counters.items()])
        self._diagnostics.publish(m.DiagnosticArray(header=m.header(self.node.now_s()),
                                                    status=[status]))


def main(argv: list[str] | None = None) -> int:
    return run(Ros2ControlBridge, sys.argv[1:] if argv is None else argv)


if __name__ == "__main__":
    sys.exit(main())
