"""A chain of Dynamixel X-series servos on one Protocol 2.0 bus, driven through dynamixel_sdk.

Built from a RobotCalibration: the joints (in calibration order) and the sensors (e.g. the valve
encoder) come from there, with their ids, models, directions, offsets and limits. Joint space:
``joint_rad = direction * servo_rad + offset_rad``; servo_rad is 0 at tick 2048.

    chain = DynamixelChain(load_robot("dclaw"))
    chain.connect(); chain.configure(); chain.torque(True)
    state = chain.read()                  # ChainState: joints first, then sensors
    chain.write_positions(targets_rad)    # joints only, checked against the last read

A ROS node only needs these calls plus ``diagnostics()`` and ``drain_events()``. Failed packets
are retried ``retries`` times. The chain's own safety rules (docs/safety.md, "The Dynamixel
driver's own rules"), each because the supervisor is not the only thing that can go wrong:

- **Arming.** Torque comes on only through ``_arm``: RAM settings first (Profile Velocity: a servo
  that lost power has it reset to 0, unlimited speed), each goal set to where the servo is, then
  Torque Enable. Every arm starts a new ``arm_epoch``; until ``read()`` has measured the chain in
  that epoch, ``write_positions`` writes nothing. The node adds the supervisor's part (COMMAND
  stamps, contract C1).
- **Reconnect.** A port error closes the port and reopens it with backoff for at most
  ``reconnect_timeout_s``. Torque wanted on: the reconnect re-arms (the servos may have lost power
  with the adapter and sagged). An interrupted read is read again; an interrupted goal write is
  never sent again (``DynamixelGoalRefused``, reason ``reconnected``): it was computed from a
  position that is no longer where the robot is.
- **Power loss.** Every ``telemetry_period_s`` the chain reads Torque Enable and Hardware Error
  Status of every joint. A joint found torque-off with no hardware error, while torque is wanted
  on, lost power and came back: the chain re-arms. A joint whose firmware cut torque for a
  hardware error, or that was rebooted, stays off until torque is asked for again
  (``torque(True)``): its fault may still be there.
- **Goals.** ``write_positions`` clamps to the position limits shrunk by the calibration's
  ``safety.position_margin_rad`` and refuses (writes nothing, raises ``DynamixelGoalRefused``) a
  goal more than ``safety.max_step_rad`` from the last measured position of any joint, or when
  that measurement is older than ``safety.state_timeout_s``.
- **Torque off** is a broadcast write, then one write per joint; every joint is tried and the
  failures are raised together, by name (``DynamixelTorqueError``).
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from dynamixel_sdk import GroupSyncWrite, PacketHandler
from dynamixel_sdk.robotis_def import BROADCAST_ID, COMM_SUCCESS

from robot_rl.drivers.dynamixel import control_table as ct
from robot_rl.drivers.dynamixel.bus_io import (
    PORT_ERRORS,
    AlertingSyncRead,
    LatencyPortHandler,
    set_low_latency,
)
from robot_rl.robot_config import JointCalibration, RobotCalibration

log = logging.getLogger(__name__)


class DynamixelError(RuntimeError):
    """Base of the chain's errors; messages name the servo id, joint, item and address."""


class DynamixelConnectError(DynamixelError):
    """A servo is missing or is not the model the calibration names."""


class DynamixelCommError(DynamixelError):
    """A transaction failed every retry (timeout or corrupt status packets)."""


class DynamixelStatusError(DynamixelError):
    """A servo answered but refused the instruction (its status error byte)."""


class DynamixelPortError(DynamixelError):
    """The port went away and did not come back within ``reconnect_timeout_s``."""


class DynamixelGoalRefused(DynamixelError):
    """``write_positions`` wrote nothing; ``reason`` names the rule (see REFUSAL_REASONS)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class DynamixelTorqueError(DynamixelError):
    """Torque could not be switched on some joints; ``failures`` maps each one's label to why.
    Every other joint was switched."""

    def __init__(self, message: str, failures: dict[str, str]) -> None:
        super().__init__(message)
        self.failures = failures


# Why a goal is refused: more than max_step_rad from the measured position; no read since the
# last arm (torque on, reconnect, power loss); the last read older than safety.state_timeout_s;
# the bus reconnected while the goal was being written.
REFUSAL_REASONS = ("step", "unmeasured", "stale", "reconnected")
# Hardware errors that make the firmware cut torque (the factory Shutdown value, 52).
_SHUTDOWN_ERRORS = frozenset({"overheating", "electrical_shock", "overload"})
_STEP_TOLERANCE_RAD = 1e-9  # float rounding of a goal computed exactly at the step limit


@dataclass(frozen=True)
class DynamixelChainConfig:
    retries: int = field(default=2, metadata={"range": (0, 10),
                                              "help": "re-sends of a failed packet"})
    reconnect_timeout_s: float = field(default=5.0, metadata={"range": (0.0, 600.0)})
    backoff_initial_s: float = field(default=0.05, metadata={"range": (0.001, 10.0)})
    backoff_max_s: float = field(default=0.5, metadata={"range": (0.001, 60.0)})
    fast_sync_read: bool = field(default=True, metadata={
        "help": "use FAST_SYNC_READ when every servo answers it (firmware 45+), else SYNC_READ"})
    operating_mode: str = field(default="position", metadata={
        "choices": ("position", "current_based_position")})
    telemetry_period_s: float = field(default=0.5, metadata={
        "range": (0.0, 60.0), "help": "how often temperature, voltage, and Torque Enable and "
                                     "Hardware Error Status (power-loss check) are read"})
    timing_window: int = field(default=1000, metadata={"range": (10, 1_000_000)})


@dataclass(frozen=True)
class ChainState:
    """One read of the whole chain: joints in calibration order, then the sensors. SI units."""

    stamp_s: float  # wall clock (time.time()) at the middle of the bus transaction
    names: tuple[str, ...]
    position_rad: np.ndarray
    velocity_rad_s: np.ndarray
    current_a: np.ndarray
    temperature_c: np.ndarray  # NaN until the first telemetry read
    hardware_error: tuple[tuple[str, ...], ...]  # decoded Hardware Error Status, () when fine
    n_joints: int
    arm_epoch: int = 0  # the chain's arm_epoch when this was measured

    @property
    def joints(self) -> slice:
        return slice(0, self.n_joints)

    @property
    def sensors(self) -> slice:
        return slice(self.n_joints, len(self.names))


@dataclass(frozen=True)
class BusTiming:
    p50_s: float
    p99_s: float
    n: int


@dataclass(frozen=True)
class _Member:
    name: str
    id: int
    spec: ct.ModelSpec
    direction: int
    offset_rad: float
    limits_rad: tuple[float, float]
    velocity_limit_rad_s: float
    current_limit_a: float
    sensor: bool

    @property
    def label(self) -> str:
        return f"servo id {self.id} ({'sensor' if self.sensor else 'joint'} {self.name})"


def _member(joint: JointCalibration, sensor: bool, robot: str) -> _Member:
    if joint.id is None or joint.model is None:
        raise DynamixelError(f"calibration {robot}: {joint.name} needs an id and a model")
    return _Member(joint.name, joint.id, ct.MODELS[joint.model], joint.direction, joint.offset_rad,
                   joint.position_limits_rad, joint.velocity_limit_rad_s, joint.current_limit_a,
                   sensor)


class DynamixelChain:
    def __init__(self, calibration: RobotCalibration, config: DynamixelChainConfig | None = None,
                 *, port: str | None = None,
                 keep_trying: Callable[[], bool] = lambda: True) -> None:
        if calibration.bus is None:
            raise DynamixelError(f"calibration {calibration.robot}: no 'bus' section")
        self.calibration = calibration
        self.config = config or DynamixelChainConfig()
        self._keep_trying = keep_trying  # False: a reconnect gives up at once (shutting down)
        self.port_name = port or calibration.bus.port
        self.members = tuple([_member(j, False, calibration.robot) for j in calibration.joints]
                             + [_member(s, True, calibration.robot) for s in calibration.sensors])
        self.joints = self.members[:calibration.n_joints]
        self._ph = PacketHandler(2.0)
        self._port: LatencyPortHandler | None = None
        self._reader: AlertingSyncRead | None = None
        self._telemetry: AlertingSyncRead | None = None
        self._torque_check: AlertingSyncRead | None = None
        self.fast_sync_read_in_use = False
        self.torque_on = False  # wanted: what a reconnect or a power loss restores
        self.arm_epoch = 0  # +1 at every arm (torque on, re-arm after a reconnect or power loss)
        self.last_arm_cause = ""
        self._last_arm_failures: dict[str, str] = {}
        self.reconnect_count = 0
        self.power_loss_count = 0
        self.retry_count = 0
        self.refused = dict.fromkeys(REFUSAL_REASONS, 0)
        self.last_error = ""
        self.low_latency = "none"
        self._hardware_error: dict[int, tuple[str, ...]] = {}
        self._kept_off: set[int] = set()  # joints left torque-off until torque(True) is asked
        self._temperature_c = np.full(len(self.members), np.nan)
        self._last_telemetry_s = -np.inf
        self._measured_rad: np.ndarray | None = None  # joints, from the last read
        self._measured_at_s = -np.inf  # time.monotonic() at the middle of that read
        self._measured_epoch = -1  # arm_epoch during that read
        self._events: deque[str] = deque(maxlen=100)
        window = self.config.timing_window
        self._read_s: deque[float] = deque(maxlen=window)
        self._write_s: deque[float] = deque(maxlen=window)
        self._cycle_s: deque[float] = deque(maxlen=window)
        self._pending_read_s: float | None = None
        n = calibration.n_joints
        self._dir = np.array([m.direction for m in self.members], dtype=np.float64)
        self._off = np.array([m.offset_rad for m in self.members], dtype=np.float64)
        safety = calibration.safety
        # the supervisor's limits, kept here too: a goal that reaches this chain without the
        # supervisor (a foreign publisher, a replay) is held to them all the same
        self._lower = calibration.lower_rad + safety.position_margin_rad
        self._upper = calibration.upper_rad - safety.position_margin_rad
        self._max_step_rad = safety.max_step_rad
        self._max_measurement_age_s = safety.state_timeout_s
        self._n_joints = n

    # --- connection ------------------------------------------------------------------------------
    def connect(self) -> None:
        """Opens the port and checks every calibrated servo answers with the calibrated model."""
        self._open()
        try:
            self._check_servos()
        except Exception:
            self.close()
            raise
        self._choose_sync_read()
        self._event(f"connected on {self.port_name} ({len(self.members)} servos, "
                    f"{'fast ' if self.fast_sync_read_in_use else ''}sync read, "
                    f"low latency: {self.low_latency})")

    def close(self) -> None:
        if self._port is not None:
            try:
                if self._port.is_open:
                    self._port.closePort()
            except PORT_ERRORS:
                pass
        self._port = self._reader = self._telemetry = self._torque_check = None

    def __enter__(self) -> DynamixelChain:
        self.connect()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _open(self) -> None:
        bus = self.calibration.bus
        assert bus is not None
        port = LatencyPortHandler(self.port_name, bus.latency_timer_ms)
        try:
            opened = port.openPort() and port.setBaudRate(bus.baudrate)
        except PORT_ERRORS as err:
            raise DynamixelCommError(
                f"cannot open {self.port_name} at {bus.baudrate} baud: {err}") from err
        if not opened:
            raise DynamixelCommError(f"cannot open {self.port_name} at {bus.baudrate} baud")
        self._port = port
        self.low_latency = set_low_latency(port, bus.latency_timer_ms)
        self._reader = AlertingSyncRead(port, self._ph, ct.STATE_BLOCK_ADDRESS, ct.STATE_BLOCK_SIZE)
        voltage = ct.ITEMS["Present Input Voltage"].address
        self._telemetry = AlertingSyncRead(port, self._ph, voltage,
                                           ct.ITEMS["Present Temperature"].address + 1 - voltage)
        for m in self.members:
            self._reader.addParam(m.id)
            self._telemetry.addParam(m.id)
        self._torque_check = AlertingSyncRead(port, self._ph, ct.TORQUE_CHECK_ADDRESS,
                                              ct.TORQUE_CHECK_SIZE)
        for m in self.joints:
            self._torque_check.addParam(m.id)

    def _check_servos(self) -> None:
        problems = []
        for m in self.members:
            try:
                number, _, _ = self._txrx(m, "PING", self._ph.ping, m.id)
            except DynamixelCommError:
                problems.append(f"{m.label}: no answer to PING on {self.port_name} after "
                                f"{self.config.retries + 1} tries; expected a {m.spec.name}")
                continue
            if number != m.spec.number:
                problems.append(f"{m.label}: Model Number (address 0) is {number} "
                                f"({ct.model_name(number)}), calibration expects {m.spec.number} "
                                f"({m.spec.name})")
        if problems:
            raise DynamixelConnectError(
                f"calibration {self.calibration.robot}, bus {self.port_name}:\n  "
                + "\n  ".join(problems))

    def _choose_sync_read(self) -> None:
        assert self._reader is not None
        self.fast_sync_read_in_use = False
        if self.config.fast_sync_read:
            for _ in range(2):
                if self._reader.fastSyncRead() == COMM_SUCCESS:
                    self.fast_sync_read_in_use = True
                    return
                self._drain()

    # --- configuration ---------------------------------------------------------------------------
    def configure(self) -> None:
        """Torque off, then EEPROM (only what differs: EEPROM wears), then RAM settings."""
        self.torque(False)
        mode = ct.OPERATING_MODES[self.config.operating_mode]
        for m in self.members:
            self._ensure(m, "Return Delay Time", 0)
            if m.sensor:
                continue
            lo, hi = self._limit_ticks(m)
            self._ensure(m, "Operating Mode", mode)
            self._ensure(m, "Homing Offset", 0)  # offsets live in the calibration, not the servo
            self._ensure(m, "Min Position Limit", lo)
            self._ensure(m, "Max Position Limit", hi)
            self._ensure(m, "Velocity Limit", self._velocity_units(m))
            if m.spec.has_current_limit:
                self._ensure(m, "Current Limit", self._current_units(m))
        self._write_ram_settings()

    def _write_ram_settings(self) -> None:
        """The RAM items this chain relies on; a servo that lost power has them at factory
        values (Profile Velocity 0: no speed cap at all)."""
        for m in self.joints:
            self.write_item(m.id, "Profile Velocity", self._velocity_units(m))

    def _limit_ticks(self, m: _Member) -> tuple[int, int]:
        servo = sorted(m.direction * (np.asarray(m.limits_rad) - m.offset_rad))
        lo, hi = (int(t) for t in ct.rad_to_ticks(servo))
        if lo < 0 or hi > ct.TICKS_PER_REV - 1:
            raise DynamixelError(
                f"{m.label}: position_limits_rad {m.limits_rad} with offset {m.offset_rad} and "
                f"direction {m.direction} need ticks [{lo}, {hi}], outside the servo's [0, 4095]")
        return lo, hi

    @staticmethod
    def _velocity_units(m: _Member) -> int:
        return int(min(ct.ITEMS["Velocity Limit"].hi or 1023,
                       max(1, ct.rad_s_to_velocity_units(m.velocity_limit_rad_s))))

    @staticmethod
    def _current_units(m: _Member) -> int:
        units = int(round(m.current_limit_a / m.spec.current_unit_a))
        return min(units, m.spec.default_current_limit)

    def _ensure(self, m: _Member, item: str, value: int) -> None:
        if self.read_item(m.id, item) != value:
            self.write_item(m.id, item, value)

    # --- registers -------------------------------------------------------------------------------
    def member(self, servo_id: int) -> _Member:
        for m in self.members:
            if m.id == servo_id:
                return m
        known = [m.id for m in self.members]
        raise DynamixelError(f"servo id {servo_id} is not in calibration "
                             f"{self.calibration.robot} (ids {known})")

    def member_named(self, name: str) -> _Member:
        for m in self.members:
            if m.name == name:
                return m
        raise DynamixelError(f"no joint or sensor {name!r} in calibration "
                             f"{self.calibration.robot} ({[m.name for m in self.members]})")

    def read_item(self, servo_id: int, item: str) -> int:
        """One control table item of one servo, signed where the item is."""
        m, spec = self.member(servo_id), ct.ITEMS[item]
        data, _, _ = self._txrx(m, f"reading {item} (address {spec.address})",
                                self._ph.readTxRx, m.id, spec.address, spec.size,
                                address=spec.address)
        raw = int.from_bytes(bytes(data[:spec.size]), "little")
        return ct.to_signed(raw, spec.size) if spec.signed else raw

    def write_item(self, servo_id: int, item: str, value: int) -> None:
        m, spec = self.member(servo_id), ct.ITEMS[item]
        data = list(ct.to_unsigned(int(value), spec.size).to_bytes(spec.size, "little"))
        self._txrx(m, f"writing {item} (address {spec.address}) = {value}",
                   self._ph.writeTxRx, m.id, spec.address, spec.size, data, address=spec.address)

    def _txrx(self, m: _Member, what: str, call: Callable[..., Any], *args: Any,
              address: int | None = None) -> Any:
        """Runs one SDK transaction with retries; raises with the servo, item and SDK result."""
        assert self._port is not None, "connect() first"
        result = COMM_SUCCESS
        for _attempt in range(self.config.retries + 1):
            out = call(self._port, *args)
            result, error = (out, 0) if isinstance(out, int) else out[-2:]
            if result == COMM_SUCCESS:
                if error & 0x7F:
                    eeprom = address is not None and address < ct.EEPROM_END
                    hint = (" (EEPROM items are locked while torque is on)"
                            if eeprom and error & 0x7F == 7 else "")
                    raise DynamixelStatusError(f"{m.label}: {what} was refused: "
                                               f"{ct.describe_status_error(error)}{hint}")
                if error & ct.ERROR_ALERT_BIT:
                    self._note_alert(m)
                return out
            self.retry_count += 1
            self._drain()
        raise DynamixelCommError(f"{m.label}: {what} failed after {self.config.retries + 1} tries "
                                 f"on {self.port_name}: {self._ph.getTxRxResult(result)}")

    def _drain(self) -> None:
        """Discards a late or partial answer so a retry starts on a quiet bus."""
        assert self._port is not None
        quiet_s = 0.001 * self._port.latency_timer_ms
        quiet_until = time.monotonic() + quiet_s
        while time.monotonic() < quiet_until:
            if self._port.getBytesAvailable():
                self._port.clearPort()
                quiet_until = time.monotonic() + quiet_s

    # --- torque and reboot -----------------------------------------------------------------------
    def torque(self, on: bool, cause: str = "requested") -> None:
        """Joints only. On: arms every joint, also those kept off after a hardware error or a
        reboot (asking for torque is the explicit request they wait for), holding where each
        servo is. Off: broadcast, then every joint. A port error reconnects; the intent is set
        first, so the reconnect re-arms only when torque is wanted on. Raises
        ``DynamixelTorqueError`` naming every joint that failed, after trying them all."""
        self.torque_on = on
        if on:
            self._kept_off.clear()
            try:
                failures = self._arm(f"torque on ({cause})")
            except PORT_ERRORS as err:
                self._reconnect(err)  # re-arms: torque is wanted on
                failures = self._last_arm_failures
            what = "torque on"
        else:
            failures, port_error = self._torque_off_everywhere()
            if port_error is not None:
                self._reconnect(port_error)  # no re-arm: torque is wanted off
                failures, _ = self._torque_off_everywhere()
            what = "torque off"
        if failures:
            raise DynamixelTorqueError(
                f"calibration {self.calibration.robot}, bus {self.port_name}: {what} failed on "
                f"{len(failures)} of {len(self.joints)} joints (the others were switched):\n  "
                + "\n  ".join(f"{k}: {v}" for k, v in failures.items()), failures)

    def torque_off_once(self) -> None:
        """Torque off without reconnecting, for shutdown: the adapter may already be gone, and
        stopping must not wait out a reconnect. A broadcast write first (one packet reaches every
        servo that still listens, even one whose answers no longer arrive), then each joint with
        its own retries, every one tried; ``DynamixelTorqueError`` names each that failed."""
        self.torque_on = False
        if self._port is None:  # a reconnect gave up and closed it: one more try to open it
            try:
                self._open()
            except (DynamixelError, *PORT_ERRORS) as err:
                failures = {m.label: f"port {self.port_name} cannot be opened: {err}"
                            for m in self.joints}
                raise DynamixelTorqueError(
                    f"torque off: {self.port_name} cannot be opened ({err}); the joints keep "
                    "their torque until they lose power", failures) from err
        failures, _ = self._torque_off_everywhere()
        if failures:
            raise DynamixelTorqueError(
                f"calibration {self.calibration.robot}, bus {self.port_name}: torque off failed "
                f"on {len(failures)} of {len(self.joints)} joints (the others are off):\n  "
                + "\n  ".join(f"{k}: {v}" for k, v in failures.items()), failures)

    def _torque_off_everywhere(self) -> tuple[dict[str, str], BaseException | None]:
        """Broadcast Torque Enable 0, then each joint: every one is tried, whatever the one
        before did. Returns the joints that failed (label: why) and the first port error."""
        assert self._port is not None, "connect() first"
        port, address = self._port, ct.ITEMS["Torque Enable"].address
        failures: dict[str, str] = {}
        port_error: BaseException | None = None
        try:
            port.is_using = False  # an earlier transaction that raised left the SDK's flag set
            result = self._ph.write1ByteTxOnly(port, BROADCAST_ID, address, 0)
            if result != COMM_SUCCESS:
                self._event(f"torque off: broadcast write failed: {self._ph.getTxRxResult(result)}")
        except PORT_ERRORS as err:
            port_error = err
            self._event(f"torque off: broadcast write failed: port error: {err}")
        for m in self.joints:
            try:
                port.is_using = False
                self.write_item(m.id, "Torque Enable", 0)
            except DynamixelError as err:
                failures[m.label] = str(err)
            except PORT_ERRORS as err:
                failures[m.label] = f"port error on {self.port_name}: {err}"
                port_error = port_error or err
        return failures, port_error

    def _arm(self, cause: str) -> dict[str, str]:
        """Torque on, holding the measured position; the only way torque comes on.

        Starts a new ``arm_epoch`` first, so no position measured before this call can justify a
        goal. Then: RAM settings (Profile Velocity), goal = present position for every joint
        (a joint kept off too: it will hold when it is re-armed), and Torque Enable on each joint
        not kept off. A joint that refuses is reported (returned and as an event), not retried
        here; the power-loss check finds it off and arms again."""
        self.arm_epoch += 1
        self.last_arm_cause = cause
        self._last_arm_failures = {}
        self._write_ram_settings()
        present = self._sync_read()[2][: self._n_joints]
        self._sync_write_ticks(present)
        for m in self.joints:
            if m.id in self._kept_off:
                continue
            try:
                self.write_item(m.id, "Torque Enable", 1)
            except (DynamixelCommError, DynamixelStatusError) as err:
                self._last_arm_failures[m.label] = str(err)
        kept = sorted(m.label for m in self.joints if m.id in self._kept_off)
        self._event(f"armed ({cause}): holding the measured position; writes wait for a read "
                    f"after this (arm {self.arm_epoch})"
                    + (f"; kept off: {', '.join(kept)}" if kept else "")
                    + "".join(f"; {k} refused: {v}" for k, v in self._last_arm_failures.items()))
        return self._last_arm_failures

    def reboot(self, servo_id: int) -> None:
        """Reboots one servo (clears its hardware error). It comes back with torque off, and a
        joint stays off until torque is asked for again (``torque(True)``): the chain does not
        re-arm it by itself, whatever the power-loss check sees."""
        m = self.member(servo_id)
        if not m.sensor:
            self._kept_off.add(m.id)
        self._txrx(m, "REBOOT", self._ph.reboot, m.id)
        deadline = time.monotonic() + 2.0
        while True:
            try:
                self._txrx(m, "PING after REBOOT", self._ph.ping, m.id)
                break
            except DynamixelCommError:
                if time.monotonic() > deadline:
                    raise
        if not m.sensor:
            self.write_item(m.id, "Profile Velocity", self._velocity_units(m))
        self._hardware_error.pop(m.id, None)
        self._event(f"{m.label}: rebooted, torque off"
                    + ("; it stays off until torque is turned on again (re-arm)"
                       if not m.sensor else ""))

    # --- the cycle -------------------------------------------------------------------------------
    def read(self) -> ChainState:
        return self._with_reconnect(self._read)

    def _read(self) -> ChainState:
        epoch = self.arm_epoch
        start_wall, start = time.time(), time.perf_counter()
        start_monotonic = time.monotonic()
        current, velocity, position = self._sync_read()
        duration = time.perf_counter() - start
        self._read_s.append(duration)
        self._pending_read_s = duration
        self._refresh_alerts()
        if time.monotonic() - self._last_telemetry_s >= self.config.telemetry_period_s:
            self._read_telemetry()
            self._check_torque()
        units = np.array([m.spec.current_unit_a for m in self.members])
        position_rad = self._dir * ct.ticks_to_rad(position) + self._off
        if self.arm_epoch == epoch:  # an arm during this read makes the positions old news
            self._measured_rad = position_rad[: self._n_joints]
            self._measured_at_s = start_monotonic + duration / 2
            self._measured_epoch = epoch
        return ChainState(
            stamp_s=start_wall + duration / 2,
            names=tuple(m.name for m in self.members),
            position_rad=position_rad,
            velocity_rad_s=self._dir * ct.velocity_units_to_rad_s(velocity),
            current_a=self._dir * current * units,
            temperature_c=self._temperature_c.copy(),
            hardware_error=tuple(self._hardware_error.get(m.id, ()) for m in self.members),
            n_joints=self._n_joints,
            arm_epoch=epoch)

    def _sync_read(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Raw present current, velocity and position of every member (signed units, ticks)."""
        reader = self._reader
        assert reader is not None, "connect() first"
        call = reader.fastSyncRead if self.fast_sync_read_in_use else reader.txRxPacket
        self._sync_transaction(reader, call, "sync read of the state block (address 126, 10 bytes)")
        get = reader.getData
        cur_a, vel_a, pos_a = (ct.ITEMS[n].address for n in
                               ("Present Current", "Present Velocity", "Present Position"))
        return tuple(np.array([ct.to_signed(get(m.id, a, s), s) for m in self.members], dtype=float)
                     for a, s in ((cur_a, 2), (vel_a, 4), (pos_a, 4)))  # type: ignore[return-value]

    def _sync_transaction(self, reader: AlertingSyncRead, call: Callable[[], int],
                          what: str) -> None:
        result = COMM_SUCCESS
        for _ in range(self.config.retries + 1):
            result = call()
            if result == COMM_SUCCESS:
                return
            self.retry_count += 1
            self._drain()
        who = (self.member(reader.failed_id).label if reader.failed_id is not None
               else f"servos {[m.id for m in self.members]}")
        raise DynamixelCommError(f"{who}: {what} failed after {self.config.retries + 1} tries on "
                                 f"{self.port_name}: {self._ph.getTxRxResult(result)}")

    def _refresh_alerts(self) -> None:
        assert self._reader is not None
        for m in self.members:
            alert = self._reader.errors.get(m.id, 0) & ct.ERROR_ALERT_BIT
            if alert and m.id not in self._hardware_error:
                self._note_alert(m)
            elif not alert and m.id in self._hardware_error:
                self._hardware_error.pop(m.id)
                self._event(f"{m.label}: hardware error cleared")

    def _note_alert(self, m: _Member) -> None:
        if m.id in self._hardware_error:
            return
        self._hardware_error[m.id] = ()  # set first: the read below must not recurse
        status = self.read_item(m.id, "Hardware Error Status")
        names = ct.decode_hardware_error(status) or (f"status 0x{status:02x}",)
        self._hardware_error[m.id] = names
        if not m.sensor and _SHUTDOWN_ERRORS.intersection(names):
            # the firmware cut its torque; it stays off even if the error clears by a power
            # cycle, until torque is asked for again: the cause may still be there
            self._kept_off.add(m.id)
            self._event(f"{m.label}: hardware error {', '.join(names)}; the servo turned its "
                        "torque off; it stays off until it is rebooted and torque is turned on "
                        "again (re-arm)")
        else:
            self._event(f"{m.label}: hardware error {', '.join(names)}")

    def _read_telemetry(self) -> None:
        reader = self._telemetry
        assert reader is not None
        self._sync_transaction(reader, reader.txRxPacket,
                               "sync read of voltage and temperature (address 144, 3 bytes)")
        temp = ct.ITEMS["Present Temperature"].address
        self._temperature_c = np.array([float(reader.getData(m.id, temp, 1)) for m in self.members])
        self._last_telemetry_s = time.monotonic()

    def _check_torque(self) -> None:
        """The power-loss check: Torque Enable and Hardware Error Status of every joint.

        A servo whose supply dropped and came back (a loose connector, a brown-out) boots with
        torque off, Profile Velocity 0 and no hardware error, and nothing on the bus says so: its
        status packets look as usual. A joint found so while torque is wanted on is re-armed
        (the same path as after a reconnect). A joint whose firmware cut torque for a hardware
        error is kept off instead."""
        reader = self._torque_check
        assert reader is not None
        self._sync_transaction(reader, reader.txRxPacket,
                               f"sync read of Torque Enable .. Hardware Error Status (address "
                               f"{ct.TORQUE_CHECK_ADDRESS}, {ct.TORQUE_CHECK_SIZE} bytes)")
        if not self.torque_on:
            return
        torque_address = ct.ITEMS["Torque Enable"].address
        error_address = ct.ITEMS["Hardware Error Status"].address
        lost = []
        for m in self.joints:
            if reader.getData(m.id, torque_address, 1) or m.id in self._kept_off:
                continue
            status = reader.getData(m.id, error_address, 1)
            if status:
                self._kept_off.add(m.id)
                names = ct.decode_hardware_error(status) or (f"status 0x{status:02x}",)
                self._event(f"{m.label}: torque found off with hardware error {', '.join(names)}; "
                            "it stays off until torque is turned on again (re-arm)")
            else:
                lost.append(m)
        if lost:
            self.power_loss_count += 1
            self._event(f"{', '.join(m.label for m in lost)}: torque found off with no hardware "
                        "error: the servo lost power and came back (its RAM settings are reset "
                        "too); re-arming")
            self._arm(f"power loss of id {', '.join(str(m.id) for m in lost)}")

    def write_positions(self, targets_rad: np.ndarray) -> np.ndarray:
        """Sends joint targets (calibration order); returns them as sent, after the clamp.

        Clamped to the position limits shrunk by ``safety.position_margin_rad``; refused
        (``DynamixelGoalRefused``, nothing written) unless the chain was read since the last arm,
        less than ``safety.state_timeout_s`` ago, and every joint's goal is within
        ``safety.max_step_rad`` of that reading. If the port fails during the write, the chain
        reconnects (re-arming: the servos hold where they are) and the goal is refused, never
        sent again."""
        targets = np.asarray(targets_rad, dtype=np.float64)
        if targets.shape != (self._n_joints,) or not np.all(np.isfinite(targets)):
            raise ValueError(f"write_positions: expected {self._n_joints} finite targets (rad) for "
                             f"{self.calibration.joint_names}, got {targets_rad!r}")
        clamped = np.clip(targets, self._lower, self._upper)
        self._check_goal(clamped)
        n = self._n_joints
        ticks = ct.rad_to_ticks(self._dir[:n] * (clamped - self._off[:n]))
        try:
            self._timed_write(ticks)
        except PORT_ERRORS as err:
            self._reconnect(err)
            now = "holding the measured position" if self.torque_on else "torque off"
            self._refuse("reconnected", "the port failed during the write and the chain "
                         "reconnected; the goal is not sent again (it was computed before the "
                         f"reconnect); {now}")
        return clamped

    def _check_goal(self, goal: np.ndarray) -> None:
        if self._measured_rad is None or self._measured_epoch != self.arm_epoch:
            self._refuse("unmeasured", f"no read of the chain since it was armed "
                         f"({self.last_arm_cause or 'never read'}); read() first")
        age_s = time.monotonic() - self._measured_at_s
        if age_s > self._max_measurement_age_s:
            self._refuse("stale", f"the last read is {age_s:.3f} s old (safety.state_timeout_s "
                         f"{self._max_measurement_age_s} s)")
        assert self._measured_rad is not None
        step = np.abs(goal - self._measured_rad)
        worst = int(np.argmax(step))
        if step[worst] > self._max_step_rad + _STEP_TOLERANCE_RAD:
            self._refuse("step", f"joint {self.joints[worst].name} goal {goal[worst]:.4f} rad is "
                         f"{step[worst]:.4f} rad from its measured {self._measured_rad[worst]:.4f} "
                         f"rad (safety.max_step_rad {self._max_step_rad})")

    def _refuse(self, reason: str, why: str) -> None:
        self.refused[reason] += 1
        raise DynamixelGoalRefused(reason, f"calibration {self.calibration.robot}, bus "
                                   f"{self.port_name}: goal not written: {why}")

    def _timed_write(self, ticks: np.ndarray) -> None:
        start = time.perf_counter()
        self._sync_write_ticks(ticks)
        duration = time.perf_counter() - start
        self._write_s.append(duration)
        if self._pending_read_s is not None:
            self._cycle_s.append(self._pending_read_s + duration)
            self._pending_read_s = None

    def _sync_write_ticks(self, ticks: np.ndarray) -> None:
        assert self._port is not None, "connect() first"
        goal = ct.ITEMS["Goal Position"]
        writer = GroupSyncWrite(self._port, self._ph, goal.address, goal.size)
        for m, tick in zip(self.joints, ticks):
            writer.addParam(m.id, list(int(tick).to_bytes(4, "little", signed=True)))
        result = COMM_SUCCESS
        for _ in range(self.config.retries + 1):
            result = writer.txPacket()
            if result == COMM_SUCCESS:
                return
            self.retry_count += 1
        raise DynamixelCommError(f"sync write of Goal Position (address {goal.address}) to ids "
                                 f"{[m.id for m in self.joints]} failed on {self.port_name}: "
                                 f"{self._ph.getTxRxResult(result)}")

    # --- reconnect -------------------------------------------------------------------------------
    def _with_reconnect(self, operation: Callable[..., Any], *args: Any) -> Any:
        """For operations that may run again after a reconnect (reads): a goal write may not."""
        try:
            return operation(*args)
        except PORT_ERRORS as err:
            self._reconnect(err)
            return operation(*args)

    def _wait_unless_stopped(self, delay_s: float, cause: BaseException, started_s: float) -> None:
        """Sleeps between reconnect attempts, in slices, so a shutdown never waits them out."""
        until = time.monotonic() + delay_s
        while time.monotonic() < until:
            if not self._keep_trying():
                raise DynamixelPortError(
                    f"{self.port_name}: reconnect abandoned after "
                    f"{time.monotonic() - started_s:.2f} s (shutting down)") from cause
            time.sleep(min(0.05, max(0.0, until - time.monotonic())))

    def _reconnect(self, cause: BaseException) -> None:
        """Reopens the port, with backoff, until every servo answers or ``reconnect_timeout_s``
        has passed (then one last attempt at the deadline, and ``DynamixelPortError`` with the
        time actually spent). Then the RAM settings again and, if torque is wanted on, a re-arm:
        the servos may have lost power with the adapter, and they hold where they now are."""
        self.last_error = f"port {self.port_name} lost: {cause}"
        self._event(self.last_error + "; reconnecting")
        self.close()
        timeout_s = self.config.reconnect_timeout_s
        started_s = time.monotonic()
        delay, last, attempts = self.config.backoff_initial_s, cause, 0
        while True:
            attempts += 1
            try:
                self._open()
                self._check_servos()
                break
            except (DynamixelError, *PORT_ERRORS) as err:
                last = err
                self.close()
            elapsed_s = time.monotonic() - started_s
            if elapsed_s >= timeout_s:
                raise DynamixelPortError(
                    f"{self.port_name}: gave up reconnecting after {elapsed_s:.2f} s and "
                    f"{attempts} attempts (reconnect_timeout_s {timeout_s} s); last error: "
                    f"{last}") from cause
            self._wait_unless_stopped(min(delay, timeout_s - elapsed_s), cause, started_s)
            delay = min(2 * delay, self.config.backoff_max_s)
        self._choose_sync_read()
        self._hardware_error.clear()
        self.reconnect_count += 1
        if self.torque_on:
            self._arm(f"reconnect {self.reconnect_count}")
        else:
            self._write_ram_settings()
        self._event(f"reconnected to {self.port_name} after {time.monotonic() - started_s:.2f} s "
                    f"(reconnect {self.reconnect_count}, torque "
                    f"{'back on, holding' if self.torque_on else 'off'})")

    # --- reporting -------------------------------------------------------------------------------
    def _event(self, message: str) -> None:
        log.info("%s", message)
        self._events.append(message)

    def drain_events(self) -> list[str]:
        """Connects, reconnects, arms, hardware errors since the last call (logs, diagnostics)."""
        events = list(self._events)
        self._events.clear()
        return events

    def kept_off(self) -> list[str]:
        """Labels of the joints left torque-off until torque is asked for again."""
        return [m.label for m in self.joints if m.id in self._kept_off]

    def timing(self) -> dict[str, BusTiming]:
        """p50/p99 over the last ``timing_window`` reads, writes and read+write cycles."""
        return {name: _stats(samples) for name, samples in
                (("read", self._read_s), ("write", self._write_s), ("cycle", self._cycle_s))}

    def diagnostics(self) -> dict[str, str]:
        cycle = self.timing()["cycle"]
        errors = {m.label: ", ".join(self._hardware_error[m.id])
                  for m in self.members if self._hardware_error.get(m.id)}
        kept_off = self.kept_off()
        return {
            "port": self.port_name,
            "sync_read": "fast" if self.fast_sync_read_in_use else "plain",
            "torque": ("on" if self.torque_on else "off")
                      + (f", kept off: {', '.join(kept_off)}" if self.torque_on and kept_off
                         else ""),
            "arms": str(self.arm_epoch),
            "last_arm": self.last_arm_cause,
            "power_losses": str(self.power_loss_count),
            "cycle_p50_ms": f"{cycle.p50_s * 1e3:.3f}",
            "cycle_p99_ms": f"{cycle.p99_s * 1e3:.3f}",
            "retries": str(self.retry_count),
            "reconnects": str(self.reconnect_count),
            "last_error": self.last_error,
            "hardware_errors": "; ".join(f"{k}: {v}" for k, v in errors.items()),
            **{f"goals_refused_{reason}": str(n) for reason, n in self.refused.items()},
        }


def _stats(samples: deque[float]) -> BusTiming:
    if not samples:
        return BusTiming(float("nan"), float("nan"), 0)
    p50, p99 = np.percentile(np.fromiter(samples, dtype=np.float64), [50, 99])
    return BusTiming(float(p50), float(p99), len(samples))
