"""The Dynamixel driver node: one chain (hand, arm, valve encoder) on the graph.

Publishes, every control period: JOINT_STATES (rad, rad/s, effort = current A, calibration
order), OBJECT_STATE (the chain's sensors, e.g. the valve encoder, when the calibration has any),
and at the telemetry rate TEMPERATURE and HARDWARE_ERROR (per joint). Obeys only COMMAND, the
safety supervisor's gated output, never COMMAND_RAW. DIAGNOSTICS: bus cycle p50/p99, retries,
reconnects, arms, power losses, hardware errors, joints kept off, command and refusal counters.

Torque policy (parameter ``torque_on_start``, default true): torque comes on at start, holding
the present position (the chain first writes each goal to where the servo is, so nothing moves).
A hand or arm with torque off sags under gravity and is back-driven by the object, so "off until
the first command" would let the robot move where the supervisor did not ask, and the first
command would then be judged against a state that keeps changing. With ``torque_on_start: false``
torque comes on (again holding the present position) when the first COMMAND arrives.
A lost command stream needs nothing here: the supervisor publishes hold commands, and without
any the servos keep their last goal. Torque goes off on shutdown (SIGINT/SIGTERM): a broadcast
write, then every joint, the ones that failed named in the log.

After every arm (torque on at start or at the first command, a reconnect, a power loss the
chain detected, a re-arm request) the servos hold where they are and the node writes nothing
until a COMMAND arrives that the supervisor produced after it saw a state measured after the
arm: COMMAND's header stamp is the stamp of the state the supervisor based it on (contract C1),
and the node obeys a command only if that stamp is at or after the stamp of its own first state
published after the arm. Refused commands are counted (``commands_before_arm``) and logged,
throttled. The chain adds its own rules (robot_rl/drivers/dynamixel/chain.py): no goal more than
``safety.max_step_rad`` from the last reading, none outside the limits shrunk by the margin.

A joint whose firmware cut torque for a hardware error, or that was rebooted, stays off: the
node re-arms only on an explicit request. ``~/reboot`` (std_msgs/String, a joint or sensor name)
reboots that servo, clearing its hardware error; ``~/rearm`` (std_msgs/String, a note for the
log) turns torque on for every joint, holding, and the rule above applies.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Sequence

import numpy as np

from robot_rl.drivers.dynamixel import control_table as ct
from robot_rl.drivers.dynamixel.chain import (
    ChainState,
    DynamixelChain,
    DynamixelChainConfig,
    DynamixelCommError,
    DynamixelConnectError,
    DynamixelError,
    DynamixelGoalRefused,
    DynamixelPortError,
    DynamixelTorqueError,
)
from robot_rl.nodes import topics
from robot_rl.nodes.robot_state import RobotStatePublishers
from robot_rl.robot_config import load_robot
from robot_rl.ros import messages as m
from robot_rl.ros.api import Node, install_signal_handlers
from robot_rl.ros.qos import QOS_DEFAULT, QOS_SENSOR_DATA
from robot_rl.ros.runtime import make_node, run

_BIT_BY_NAME = {name: bit for bit, name in ct.HARDWARE_ERROR_BITS.items()}
_LOG_GAP_S = 2.0  # repeated warnings of one kind are logged at most this often
# A stamp that went through a float on the supervisor's side (stamp_to_s, then s_to_stamp) may
# come back a few hundred ns off; states are milliseconds apart, so 1 us tells them apart.
_STAMP_TOLERANCE_NS = 1_000


def stamp_ns(stamp: m.Time) -> int:
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


def error_byte(names: Sequence[str]) -> int:
    """Hardware Error Status bits from the chain's decoded names ('status 0x24' kept as is)."""
    value = 0
    for name in names:
        if name in _BIT_BY_NAME:
            value |= 1 << _BIT_BY_NAME[name]
        elif name.startswith("status 0x"):
            value |= int(name[len("status 0x"):], 16)
    return value & 0xFF


def targets_from(msg: m.JointState, order: Sequence[str]) -> np.ndarray | None:
    """Positions of ``msg`` in ``order``; None unless the names are exactly ``order``'s and every
    position is finite."""
    names = list(msg.name)
    if len(names) != len(msg.position) or sorted(names) != sorted(order):
        return None
    by_name = dict(zip(names, msg.position))
    targets = np.array([by_name[n] for n in order], dtype=np.float64)
    return targets if np.all(np.isfinite(targets)) else None


class DynamixelNode:
    def __init__(self, argv: list[str]) -> None:
        self.node: Node = make_node("dynamixel", argv=argv)
        p = self.node.declare_parameter
        robot = p("robot", "dclaw", "calibration name or YAML path")
        port = p("port", "", "serial port; empty: the calibration's bus.port")
        rate_hz = p("control_rate_hz", 100.0, "read/publish rate (Hz)")
        self._torque_on_start = p("torque_on_start", True,
                                  "torque on at start holding the present position; false: "
                                  "on at the first COMMAND")
        mode = p("operating_mode", "position", "position | current_based_position")
        retries = p("retries", 2, "re-sends of a failed packet")
        diagnostics_rate_hz = p("diagnostics_rate_hz", 1.0, "periodic diagnostics (Hz)")
        telemetry_period_s = p("telemetry_period_s", 0.5, "temperature and power-loss check "
                                                          "period (s)")
        reconnect_timeout_s = p("reconnect_timeout_s", 5.0,
                                "a lost port is reopened for at most this long, then the node "
                                "stops (s)")
        self._connect_timeout_s = p("connect_timeout_s", 30.0,
                                    "keep trying to open the port and find every servo this "
                                    "long at start (s)")
        if not (rate_hz > 0 and diagnostics_rate_hz > 0):
            raise ValueError(f"node {self.node.fully_qualified_name}: control_rate_hz and "
                             f"diagnostics_rate_hz must be > 0, got {rate_hz}, "
                             f"{diagnostics_rate_hz}")
        self.calibration = load_robot(robot)
        state_timeout_s = self.calibration.safety.state_timeout_s
        if 2.0 / rate_hz > state_timeout_s:
            raise ValueError(
                f"node {self.node.fully_qualified_name}: control_rate_hz {rate_hz} reads the "
                f"chain less than twice per safety.state_timeout_s ({state_timeout_s} s, "
                f"calibration {self.calibration.robot}); the chain refuses goals against an "
                "older reading: raise control_rate_hz")
        config = DynamixelChainConfig(retries=retries, operating_mode=mode,
                                      telemetry_period_s=telemetry_period_s,
                                      reconnect_timeout_s=reconnect_timeout_s)
        self.chain = DynamixelChain(self.calibration, config, port=port or None,
                                    keep_trying=self.node.ok)
        self._names = list(self.calibration.joint_names)
        self._sensor_names = [s.name for s in self.calibration.sensors]
        self._counters = {"reads": 0, "comm_errors": 0, "commands": 0, "commands_rejected": 0,
                          "commands_before_arm": 0, "write_errors": 0}
        self._last_comm_error = ""
        self._last_log_s: dict[str, float] = {}
        self._diagnostics_period_s = 1.0 / diagnostics_rate_hz
        self._last_diagnostics_s = -math.inf
        self._last_telemetry_s = -math.inf
        self._telemetry_period_s = telemetry_period_s
        self._state: ChainState | None = None
        # C1: commands are obeyed from the stamp of the first state published in this arm epoch
        self._obeyed_epoch = -1
        self._obey_from_ns = 0
        self._connected = False
        self._make_endpoints()
        self._start_chain()
        self.node.create_timer(1.0 / rate_hz, self._tick)

    def _make_endpoints(self) -> None:
        node = self.node
        state = RobotStatePublishers.create(node)
        self._joints, self._temperature = state.joints, state.temperature
        self._errors = state.hardware_error
        self._object = (node.create_publisher(m.JointState, topics.OBJECT_STATE, QOS_SENSOR_DATA)
                        if self._sensor_names else None)
        self._diagnostics = node.create_publisher(m.DiagnosticArray, topics.DIAGNOSTICS,
                                                  QOS_DEFAULT)
        sub = node.create_subscription(m.JointState, topics.COMMAND, self._on_command,
                                       QOS_DEFAULT)
        self._command_topic = sub.topic
        self._rearm_topic = node.create_subscription(m.String, "~/rearm", self._on_rearm,
                                                     QOS_DEFAULT).topic
        self._reboot_topic = node.create_subscription(m.String, "~/reboot", self._on_reboot,
                                                      QOS_DEFAULT).topic

    def _start_chain(self) -> None:
        chain = self.chain
        deadline = time.monotonic() + self._connect_timeout_s
        # Ctrl-C while waiting for the port sets a flag that the loop reads, rather than raising
        # KeyboardInterrupt wherever the signal lands: one that landed in a finaliser (the failed
        # serial port's) was swallowed, and the node went on retrying past ros2 launch's 5 s.
        restore = install_signal_handlers(self.node.request_shutdown)
        try:
            while True:  # the adapter (or the hil bus node's pty) may appear a moment after us
                if not self.node.ok():
                    raise KeyboardInterrupt  # run() ends the node cleanly, exit code 0
                try:
                    chain.connect()
                    break
                except (DynamixelCommError, DynamixelConnectError) as err:
                    if time.monotonic() >= deadline:
                        raise
                    self._log_throttled("connect", f"{err}; retrying")
                    time.sleep(0.2)
        finally:
            restore()
        self._connected = True
        chain.configure()
        if self._torque_on_start:
            chain.torque(True, cause="torque_on_start")
        self._log_events()
        self.node.get_logger().info(
            f"{self.calibration.robot} on {chain.port_name}: {len(chain.members)} servos, torque "
            f"{'on (holding)' if chain.torque_on else 'off until the first command'}; publishing "
            f"{self._joints.topic}, obeying {self._command_topic} (commands based on a state "
            f"after the latest arm); re-arm on {self._rearm_topic}, reboot on "
            f"{self._reboot_topic}")

    # ---- the cycle -----------------------------------------------------------------------------
    def _tick(self) -> None:
        try:
            state = self.chain.read()
        except DynamixelCommError as err:  # one bad cycle; DynamixelPortError ends the node
            self._comm_error(str(err))
            self._log_events()
            self._publish_diagnostics()
            return
        except DynamixelPortError:
            if self.node.ok():
                raise
            return  # shutting down while the bus is gone: nothing left to read
        self._state = state
        self._counters["reads"] += 1
        self._publish_state(state)
        self._log_events()
        if state.arm_epoch == self.chain.arm_epoch != self._obeyed_epoch:
            self._obey_from(state)
        self._publish_diagnostics()

    def _obey_from(self, state: ChainState) -> None:
        """The first state published in a new arm epoch: from its stamp on, commands are based
        on a state measured after the arm (C1)."""
        self._obeyed_epoch = state.arm_epoch
        self._obey_from_ns = stamp_ns(m.s_to_stamp(state.stamp_s))  # as published
        if self.chain.torque_on:
            self.node.get_logger().info(
                f"armed ({self.chain.last_arm_cause}): holding the measured position; obeying "
                f"commands based on a state stamped {state.stamp_s:.6f} or later")

    def _publish_state(self, state: ChainState) -> None:
        j, s = state.joints, state.sensors
        self._joints.publish(m.joint_state(self._names, state.position_rad[j],
                                           state.velocity_rad_s[j], state.current_a[j],
                                           stamp_s=state.stamp_s))
        if self._object is not None:
            self._object.publish(m.joint_state(self._sensor_names, state.position_rad[s],
                                               state.velocity_rad_s[s], stamp_s=state.stamp_s))
        now = time.monotonic()
        if now - self._last_telemetry_s >= min(self._telemetry_period_s, 0.1) \
                and np.all(np.isfinite(state.temperature_c[j])):
            self._last_telemetry_s = now
            self._temperature.publish(m.Float32MultiArray(
                data=[float(t) for t in state.temperature_c[j]]))
            errors = bytes(error_byte(e) for e in state.hardware_error[j])
            self._errors.publish(m.UInt8MultiArray(data=errors))

    def _on_command(self, msg: m.JointState) -> None:
        targets = targets_from(msg, self._names)
        if targets is None:
            self._counters["commands_rejected"] += 1
            self._log_throttled("rejected", f"{self._command_topic}: ignored a command with names "
                                f"{list(msg.name)} and {len(msg.position)} positions; expected "
                                f"finite positions for {self._names}")
            return
        chain = self.chain
        try:
            if not chain.torque_on:
                chain.torque(True, cause="first command")  # holds; this command came before
                self._counters["commands_before_arm"] += 1
                self.node.get_logger().info(
                    "first command: torque on, holding the measured position; obeying commands "
                    "based on a state published after this")
                return
            if not self._based_after_arm(msg):
                return
            chain.write_positions(targets)
        except DynamixelGoalRefused as err:  # counted by the chain, by reason
            self._log_throttled(f"refused {err.reason}", f"{self._command_topic}: {err}")
            return
        except DynamixelPortError:
            if self.node.ok():
                raise  # the port did not come back: the node stops (an essential node)
            return
        except (DynamixelCommError, DynamixelTorqueError) as err:
            self._counters["write_errors"] += 1
            self._comm_error(str(err))
            return
        self._counters["commands"] += 1

    def _based_after_arm(self, msg: m.JointState) -> bool:
        """C1: the command's stamp (the supervisor's basis state) is at or after the first state
        this node published after the latest arm."""
        if self._obeyed_epoch == self.chain.arm_epoch \
                and stamp_ns(msg.header.stamp) >= self._obey_from_ns - _STAMP_TOLERANCE_NS:
            return True
        self._counters["commands_before_arm"] += 1
        basis = m.stamp_to_s(msg.header.stamp)
        after = ("no state published since" if self._obeyed_epoch != self.chain.arm_epoch
                 else f"first state after it stamped {self._obey_from_ns * 1e-9:.6f}")
        self._log_throttled("before arm", (
            f"{self._command_topic}: ignored a command based on a state stamped {basis:.6f}: "
            f"the chain was armed ({self.chain.last_arm_cause}; {after}); holding until a "
            "command based on a later state arrives"))
        return False

    def _on_rearm(self, msg: m.String) -> None:
        note = f": {msg.data}" if msg.data else ""
        try:
            self.chain.torque(True, cause=f"re-arm requested on {self._rearm_topic}{note}")
        except DynamixelTorqueError as err:
            self.node.get_logger().error(f"re-arm: {err}")
        except DynamixelError as err:
            self.node.get_logger().error(f"re-arm failed: {err}")
        self._log_events()

    def _on_reboot(self, msg: m.String) -> None:
        try:
            member = self.chain.member_named(msg.data.strip())
            self.chain.reboot(member.id)
        except DynamixelError as err:
            self.node.get_logger().error(f"{self._reboot_topic}: {err}")
            return
        finally:
            self._log_events()
        if not member.sensor:
            self.node.get_logger().warning(
                f"{member.label} rebooted: its hardware error is cleared and its torque is OFF; "
                f"it stays off until a re-arm request on {self._rearm_topic} (every joint then "
                "holds where it is, and moves again on a command based on a state after that)")

    # ---- reporting -----------------------------------------------------------------------------
    def _comm_error(self, text: str) -> None:
        self._counters["comm_errors"] += 1
        self._last_comm_error = text
        self._log_throttled("comm", text)

    def _log_throttled(self, key: str, text: str) -> None:
        """At most one warning of each kind per _LOG_GAP_S: one kind does not hide another."""
        now = time.monotonic()
        if now - self._last_log_s.get(key, -math.inf) >= _LOG_GAP_S:
            self._last_log_s[key] = now
            self.node.get_logger().warning(text)

    def _log_events(self) -> None:
        events = self.chain.drain_events()
        for event in events:
            self.node.get_logger().info(event)
        if events:
            self._last_diagnostics_s = -math.inf  # news goes out now

    def _publish_diagnostics(self) -> None:
        now_s = self.node.now_s()
        if now_s - self._last_diagnostics_s < self._diagnostics_period_s:
            return
        self._last_diagnostics_s = now_s
        values = dict(self.chain.diagnostics())
        values.update({k: str(v) for k, v in self._counters.items()})
        values["last_comm_error"] = self._last_comm_error
        waiting = self.chain.torque_on and self._obeyed_epoch != self.chain.arm_epoch
        values["obeying_commands_based_after"] = (
            "the next state" if waiting else f"{self._obey_from_ns * 1e-9:.6f}")
        hardware, kept_off = values.get("hardware_errors", ""), self.chain.kept_off()
        level, message = m.DiagnosticStatus.OK, "ok"
        if hardware:
            level, message = m.DiagnosticStatus.ERROR, f"hardware error: {hardware}"
        elif kept_off and self.chain.torque_on:
            level, message = (m.DiagnosticStatus.WARN, f"torque off on {', '.join(kept_off)} "
                              f"until a re-arm request on {self._rearm_topic}")
        elif self._state is None or now_s - self._state.stamp_s > 1.0:
            level, message = m.DiagnosticStatus.WARN, "no fresh read of the chain"
        status = m.DiagnosticStatus(
            level=level, name=f"{self.node.fully_qualified_name}: dynamixel {self.calibration.robot}",
            message=message, hardware_id=self.chain.port_name,
            values=[m.KeyValue(key=k, value=v) for k, v in sorted(values.items())])
        self._diagnostics.publish(m.DiagnosticArray(header=m.header(now_s), status=[status]))

    def close(self) -> None:
        """Torque off on every joint, then close the port (runs on SIGINT/SIGTERM through
        runtime.run). Whatever the node believes about torque: a joint may be on that it thinks
        off (an arm interrupted half-way)."""
        if not self._connected:
            return
        logger = self.node.get_logger()
        try:
            self.chain.torque_off_once()
            logger.info("torque off on every joint")
        except DynamixelTorqueError as err:
            logger.error(str(err))
        except Exception as err:  # the port may be gone: nothing more can be done from here
            logger.error(f"torque off failed: {err}")
        finally:
            self.chain.close()


def main(argv: list[str] | None = None) -> int:
    return run(DynamixelNode, sys.argv[1:] if argv is None else argv)


if __name__ == "__main__":
    sys.exit(main())
