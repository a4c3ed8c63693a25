"""The safety node: ``robot_rl.safety.Supervisor`` on the graph, the only publisher of COMMAND.

Telemetry (JOINT_STATES, TEMPERATURE, HARDWARE_ERROR) becomes the supervisor's RobotState; every
COMMAND_RAW is filtered and what comes out is published on COMMAND; a watchdog timer publishes the
hold commands the supervisor asks for when state or commands go stale. DIAGNOSTICS go out at
``diagnostics_rate_hz`` and at once (at most every MIN_DIAGNOSTICS_GAP_S) when the status or the
set of reasons changes. ``keyboard_estop``: space in the node's terminal latches the e-stop.
Under ``use_sim_time`` a COMMAND_RAW stamped at an instant whose ``/clock`` has come but whose
joint state has not is judged once that state comes (``STATE_WAIT_S`` of wall time at most): see
``SafetyNode._waits_for_state``.

Clocks (contract C2): the supervisor runs on ``steady_s()``, which never goes back; everything is
timed on receipt with it. A joint state's header stamp is checked against ``now_s()`` (ROS time)
at receipt, and each COMMAND's header stamp is the stamp of the joint state its verdict was based
on (contract C1), not the time of publishing.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable, Sequence

import numpy as np

from robot_rl.nodes import topics
from robot_rl.robot_config import load_robot
from robot_rl.ros import messages as m
from robot_rl.ros.api import Node
from robot_rl.ros.qos import QOS_DEFAULT, QOS_LATCHED, QOS_SENSOR_DATA
from robot_rl.ros.runtime import make_node, run
from robot_rl.safety import DiagnosticStatusData, RobotState, Supervisor, Verdict
from robot_rl.teleop.terminal import TerminalKeys

MIN_DIAGNOSTICS_GAP_S = 0.02
# sim time: a command waiting for the state of its instant is judged on what there is after this
# much wall time (the state may never come: a twin that died, a rejected state)
STATE_WAIT_S = 0.5


def reorder(names: Sequence[str], values: Sequence[float], order: Sequence[str]
            ) -> np.ndarray | None:
    """``values`` (one per name) in ``order``; None when the names are not exactly ``order``'s."""
    if len(names) != len(values):
        return None
    if list(names) == list(order):  # the usual case: already in order
        return np.array(values, dtype=float)
    if sorted(names) != sorted(order):
        return None
    by_name = dict(zip(names, values))
    return np.array([by_name[n] for n in order], dtype=float)


def status_message(data: DiagnosticStatusData) -> m.DiagnosticStatus:
    return m.DiagnosticStatus(level=data.level, name=data.name, message=data.message,
                              hardware_id=data.hardware_id,
                              values=[m.KeyValue(key=k, value=v) for k, v in data.values])


def reason_kinds(verdict: Verdict) -> frozenset[str]:
    """What a verdict is about, without the joint names (a new kind is news, a new joint less)."""
    return frozenset(r.split()[0] for r in verdict.reasons) | {verdict.status}


class SafetyNode:
    def __init__(self, argv: list[str]) -> None:
        self.node: Node = make_node("safety", argv=argv)
        p = self.node.declare_parameter
        robot = p("robot", "dclaw", "calibration name or YAML path")
        watchdog_rate_hz = p("watchdog_rate_hz", 100.0, "watchdog tick rate (Hz)")
        diagnostics_rate_hz = p("diagnostics_rate_hz", 1.0, "periodic diagnostics rate (Hz)")
        self._use_stamps = p("use_message_stamps", True,
                             "check and echo joint state header stamps (else: the ROS time of "
                             "receipt stands for them, for a driver without usable stamps)")
        keyboard = p("keyboard_estop", False, "space in this terminal latches the e-stop")
        if not (watchdog_rate_hz > 0 and diagnostics_rate_hz >= 1.0):
            raise ValueError(f"node {self.node.fully_qualified_name}: watchdog_rate_hz must be "
                             f"> 0 and diagnostics_rate_hz >= 1, got {watchdog_rate_hz}, "
                             f"{diagnostics_rate_hz}")
        self.calibration = load_robot(robot)
        self.supervisor = Supervisor(self.calibration)
        self._names = list(self.calibration.joint_names)
        self._diagnostics_period_s = 1.0 / diagnostics_rate_hz
        # the latest joint state: RobotState fields, then steady and ROS time of receipt
        self._last_state: tuple[float, np.ndarray, np.ndarray, np.ndarray, float, float] | None \
            = None
        self._temperature_c: np.ndarray | None = None
        self._hardware_error: np.ndarray | None = None
        # telemetry has no header: stamped on receipt, so a stream that stops goes stale
        self._temperature_s: float | None = None
        self._hardware_error_s: float | None = None
        self._node_counters = {"command_names_rejected": 0, "state_names_rejected": 0}
        self._last_kinds: frozenset[str] = frozenset()
        self._last_status = ""
        self._diagnostics_due = True
        self._last_diagnostics_s = -math.inf
        self._keys = TerminalKeys.open_if_tty() if keyboard else None
        self._sim_time = self.node.uses_sim_time
        # sim time: commands waiting for their state, oldest first: (stamp_s, command, since_s)
        self._waiting: list[tuple[float, np.ndarray, float]] = []
        if keyboard and self._keys is None:
            self.node.get_logger().warning("keyboard_estop: stdin is not a terminal; disabled")
        self._make_endpoints()
        self.node.create_timer(1.0 / watchdog_rate_hz, self._tick)
        if self._sim_time:
            self.node.create_wall_timer(STATE_WAIT_S / 10, self._release)
        self.node.get_logger().info(
            f"guarding {self.calibration.robot}: {self._raw_topic} -> {self._command.topic}"
            + (" (space: E-STOP)" if self._keys else ""))

    def _make_endpoints(self) -> None:
        node = self.node
        self._command = node.create_publisher(m.JointState, topics.COMMAND, QOS_DEFAULT)
        self._diagnostics = node.create_publisher(m.DiagnosticArray, topics.DIAGNOSTICS,
                                                  QOS_DEFAULT)
        self._status = node.create_publisher(m.String, topics.SAFETY_STATUS, QOS_LATCHED)
        node.create_subscription(m.JointState, topics.JOINT_STATES, self._on_joints,
                                 QOS_SENSOR_DATA)
        node.create_subscription(m.Float32MultiArray, topics.TEMPERATURE, self._on_temperature,
                                 QOS_SENSOR_DATA)
        node.create_subscription(m.UInt8MultiArray, topics.HARDWARE_ERROR, self._on_hw_error,
                                 QOS_SENSOR_DATA)
        raw = node.create_subscription(m.JointState, topics.COMMAND_RAW, self._on_command,
                                       QOS_DEFAULT)
        self._raw_topic = raw.topic
        node.create_subscription(m.Bool, topics.ESTOP, self._on_estop, QOS_DEFAULT)
        node.create_subscription(m.Bool, topics.ESTOP_RESET, self._on_reset, QOS_DEFAULT)

    # ---- telemetry -----------------------------------------------------------------------------
    def _on_joints(self, msg: m.JointState) -> None:
        n = len(self._names)
        position = reorder(msg.name, msg.position, self._names)
        if position is None:
            self._node_counters["state_names_rejected"] += 1
            self.node.get_logger().debug(f"joint state names {list(msg.name)} != {self._names}")
            return
        # velocity and effort are optional in JointState; a missing one reads as zero
        velocity = reorder(msg.name, msg.velocity, self._names)
        effort = reorder(msg.name, msg.effort, self._names)
        received_s, ros_now_s = self.node.steady_s(), self.node.now_s()
        stamp_s = m.stamp_to_s(msg.header.stamp)
        if not self._use_stamps or stamp_s == 0.0:
            stamp_s = ros_now_s
        self._last_state = (stamp_s, position, np.zeros(n) if velocity is None else velocity,
                            np.zeros(n) if effort is None else effort, received_s, ros_now_s)
        self._update_state()
        self._judge_waiting(lambda stamp: stamp <= stamp_s)

    def _on_temperature(self, msg: m.Float32MultiArray) -> None:
        self._temperature_c = np.asarray(msg.data, dtype=float)
        self._temperature_s = self.node.steady_s()
        self._update_state()  # an overheating joint holds now, not at the next joint state

    def _on_hw_error(self, msg: m.UInt8MultiArray) -> None:
        self._hardware_error = np.frombuffer(bytes(msg.data), dtype=np.uint8) != 0
        self._hardware_error_s = self.node.steady_s()
        self._update_state()

    def _update_state(self) -> None:
        """The latest joint state with the latest telemetry; after a telemetry sample that is the
        same joint state again, with its own times of receipt (a repeat: it refreshes nothing)."""
        if self._last_state is None:
            return
        stamp_s, position, velocity, effort, received_s, ros_now_s = self._last_state
        self.supervisor.update_state(RobotState(stamp_s, position, velocity, effort,
                                                self._temperature_c, self._hardware_error,
                                                self._temperature_s, self._hardware_error_s),
                                     received_s, ros_now_s)

    # ---- commands ------------------------------------------------------------------------------
    def _on_command(self, msg: m.JointState) -> None:
        command = reorder(msg.name, msg.position, self._names)
        if command is None:
            self._node_counters["command_names_rejected"] += 1
            self.node.get_logger().warning(
                f"{self._raw_topic}: names {list(msg.name)} with {len(msg.position)} positions, "
                f"expected {self._names}: treated as a malformed command")
            command = np.zeros(0)  # the supervisor holds on a malformed command and counts it
        stamp_s = m.stamp_to_s(msg.header.stamp)
        self._judge_waiting(lambda _: True)  # in order: an older command is judged first
        if self._waits_for_state(stamp_s):
            self._waiting.append((stamp_s, command, time.monotonic()))
            return
        self._apply(self.supervisor.filter(command, self.node.steady_s()))

    def _waits_for_state(self, stamp_s: float) -> bool:
        """Under sim time, whether a command stamped ``stamp_s`` (the state it answers) waits for
        that state. A controller acts on a state and its command can reach this node before the
        state does (two writers, two processes: no order between them), and judged on the state
        before, the verdict depends on which came first: runs would not repeat. Waiting costs no
        sim time (a lockstep twin waits for the gated command). Only for instants the node's
        clock has reached, or leads by no more than the supervisor's ``stamp_tolerance_s`` (the
        lead it allows a state; on rclpy the /clock of an instant may be handed over after a
        message of it): a stamp further ahead is not a state on its way. Never on wall time,
        where the command would age instead."""
        return (self._sim_time and self._last_state is not None and self._last_state[0]
                < stamp_s <= self.node.now_s() + self.supervisor.limits.stamp_tolerance_s)

    def _judge_waiting(self, ready: Callable[[float], bool]) -> None:
        """Judge the waiting commands, oldest first, while ``ready(stamp_s)``."""
        while self._waiting and ready(self._waiting[0][0]):
            _, command, _ = self._waiting.pop(0)
            self._apply(self.supervisor.filter(command, self.node.steady_s()))

    def _release(self) -> None:
        """Wall timer (sim time): commands that waited STATE_WAIT_S are judged on what there is."""
        now_s = time.monotonic()
        self._judge_waiting(lambda _: now_s - self._waiting[0][2] >= STATE_WAIT_S)

    def _on_estop(self, msg: m.Bool) -> None:
        if msg.data:
            self._estop("topic " + topics.ESTOP)

    def _estop(self, source: str) -> None:
        self.supervisor.estop(source, self.node.steady_s())
        self.node.get_logger().error(f"E-STOP latched ({source})")
        self._apply(self.supervisor.tick(self.node.steady_s()))

    def _on_reset(self, msg: m.Bool) -> None:
        if not msg.data:
            return
        if self.supervisor.reset(self.node.steady_s()):
            self.node.get_logger().info("e-stop reset")
        else:
            self.node.get_logger().warning("e-stop reset refused: no fresh valid state since "
                                           "the e-stop")
        self._diagnostics_due = True

    def _tick(self) -> None:
        if self._keys is not None and " " in self._keys.read():
            self._estop("keyboard")
        verdict = self.supervisor.tick(self.node.steady_s())
        if verdict is not None:
            self._apply(verdict)
        self._publish_diagnostics()

    def _apply(self, verdict: Verdict | None) -> None:
        if verdict is None:
            return
        if verdict.command_rad is not None:
            # C1: stamped with the measurement the verdict was based on (a command is only
            # ever sent with a valid state), which the driver compares with its own stamps
            self._command.publish(m.joint_state(self._names, verdict.command_rad,
                                                stamp_s=self.supervisor.state_stamp_s))
        kinds = reason_kinds(verdict)
        if kinds - self._last_kinds or verdict.status != self._last_status:
            self._diagnostics_due = True
        self._last_kinds = kinds
        if verdict.status != self._last_status:
            self._last_status = verdict.status
            self._status.publish(m.String(data=verdict.status))
            if verdict.status in ("hold", "estop"):
                self.node.get_logger().warning(f"{verdict.status}: {', '.join(verdict.reasons)}")
        self._publish_diagnostics()

    # ---- diagnostics ---------------------------------------------------------------------------
    def _publish_diagnostics(self) -> None:
        now_s = self.node.steady_s()
        since_s = now_s - self._last_diagnostics_s
        periodic = since_s >= self._diagnostics_period_s
        if not (periodic or self._diagnostics_due and since_s >= MIN_DIAGNOSTICS_GAP_S):
            return
        self._diagnostics_due, self._last_diagnostics_s = False, now_s
        statuses = [status_message(s) for s in self.supervisor.diagnostics(now_s)]
        statuses[0].values.extend(m.KeyValue(key=k, value=str(v))
                                  for k, v in sorted(self._node_counters.items()))
        self._diagnostics.publish(m.DiagnosticArray(header=m.header(self.node.now_s()),
                                                    status=statuses))
        if periodic and self._last_status:  # latched, but a late best-effort reader needs it
            self._status.publish(m.String(data=self._last_status))

    def close(self) -> None:
        if self._keys is not None:
            self._keys.close()


def main(argv: list[str] | None = None) -> int:
    return run(SafetyNode, sys.argv[1:] if argv is None else argv)
