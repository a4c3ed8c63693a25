"""The safety supervisor: the only path from a command to the motors (see docs/safety.md).

Pure logic: the node feeds it telemetry (``update_state``), every incoming command (``filter``) and
a fixed-rate watchdog ``tick``, and publishes each verdict's command.

Clocks: every ``now_s`` is the supervisor's own clock, one that never goes back (the node's
``steady_s()``: monotonic time, or the simulated time); ``update_state`` is given the time of
receipt on it. Every age (state, command, telemetry) counts on this clock from receipt, never
from a stamp: a publisher's clock that is wrong, or steps, can then neither make an old state
fresh nor a fresh one old. A state's ``stamp_s`` is the publisher's (ROS time) and serves three
things: a stamp more than ``stamp_tolerance_s`` ahead of the receiver's time on the stamps' clock
is invalid (a measurement cannot come from the future: a clock fault; hold until a sane one
comes); a stamp equal to the latest one's marks a repeat, which makes nothing fresh; and the
stamp of the state a verdict was based on is echoed with it (``state_stamp_s``), so a driver can
tell on its own clock which of its measurements a command answers. A stamp earlier than the
latest one's (the publisher's clock stepped back) is still a new measurement: states are taken in
the order they arrive, and the step is counted (``state_stamp_back``). If ``now_s`` itself goes
back, every verdict holds (``clock_back``) until it passes the latest time seen again.

Hold: on a fault the supervisor freezes a hold target, the measured position at that moment
(clipped into the position limits), and from then on sends only that target, approached at the
velocity limit from the last command sent (usually reached in one step, as targets never lead the
measured position by more than ``max_step_rad``). Never a stale target: commanding where the robot
is leaves the position controllers nothing to drive, so motion stops and current falls; a
blocked joint is not kept pushing. The hold ends when its causes are gone AND a new measurement
received after the hold began has arrived (and, for the e-stop, after an explicit ``reset``); the
next command then starts from the hold target under the usual rate limits.

Re-base: the rate limits count from the last command sent, except for joints that two
consecutive measurements put more than 2 * max_step_rad away from it (``limits.jumped``): there
the reference becomes the measured position (clipped into the position limits), at rest, and a
hold target is re-frozen there. Without it such a joint could never get a target again.

Telemetry: temperature and hardware error are kept with their own stamps until newer ones come;
once seen, a stream older than ``telemetry_timeout_s`` holds. Overtemperature has hysteresis: a
joint over ``temperature_limit_c`` holds until it is at or below ``temperature_resume_c``.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping
from types import MappingProxyType

import numpy as np

from robot_rl.config import ConfigError
from robot_rl.robot_config import RobotCalibration, WorkspaceBounds
from robot_rl.safety.kinematics import Kinematics, MjcfError
from robot_rl.safety.limits import (
    JointLimits,
    acceleration_window,
    clip,
    constrain,
    hard_box,
    jumped,
)
from robot_rl.safety.types import ERROR, OK, WARN, DiagnosticStatusData, RobotState, Verdict
from robot_rl.safety.workspace import WorkspaceGuard

# conditions that persist across decisions are counted when they start, not on every tick
_PER_COMMAND = ("nan_in_command", "inf_in_command", "command_shape")


class Supervisor:
    def __init__(self, calibration: RobotCalibration, kinematics: Kinematics | None = None) -> None:
        self.limits = JointLimits.from_calibration(calibration)
        self.robot = calibration.robot
        self.workspace: WorkspaceGuard | None = None
        bounds = calibration.safety.workspace
        if bounds is not None:
            self.workspace = self._workspace(calibration, bounds, kinematics)
        n = len(self.limits.joint_names)
        self._n = n
        self._counters: Counter[str] = Counter()
        self._state: RobotState | None = None  # the latest valid state
        self._previous_state: RobotState | None = None  # the latest valid one measured before it
        self._state_fault: str | None = None  # why the latest received state was rejected
        self._state_received_s = -math.inf  # when the latest new measurement was received
        self._stamp_lag_s: float | None = None  # receiver's stamp clock - stamp, latest received
        self._now_back = False  # the last now_s given was earlier than one before it
        # telemetry kind -> (values, stamp_s): the newest of each, kept until a newer one comes
        self._telemetry: dict[str, tuple[np.ndarray, float]] = {}
        self._hot = np.zeros(n, dtype=bool)  # overtemperature, with hysteresis
        self._last_rebase: tuple[float, tuple[str, ...]] | None = None
        self._last_command_rx_s: float | None = None  # None: watchdog not armed yet
        self._sent: np.ndarray | None = None  # the rate limits' reference: the last command sent
        self._sent_s = -math.inf
        self._sent_velocity = np.zeros(n)
        self._holding = False
        self._hold_since_s = -math.inf
        self._hold_target: np.ndarray | None = None
        self._active: frozenset[str] = frozenset()
        self._estop_reasons: tuple[str, ...] = ()
        self._estop_since_s = -math.inf
        self._latest_s = -math.inf
        self._last_verdict: Verdict | None = None

    @staticmethod
    def _workspace(calibration: RobotCalibration, bounds: WorkspaceBounds,
                   kinematics: Kinematics | None) -> WorkspaceGuard:
        """The workspace check; every error names the calibration file (or robot)."""
        where = calibration.where
        if kinematics is None:  # the limit is in the calibration, so it is enforced
            if not calibration.model_file.exists():
                raise ConfigError(f"{where}: safety.workspace needs the model "
                                  f"{calibration.model_mjcf} (model_mjcf), which does not exist")
            try:
                kinematics = Kinematics.from_mjcf(calibration.model_path(),
                                                  calibration.joint_names)
            except MjcfError as err:
                raise ConfigError(f"{where}: safety.workspace: {err}") from None
        if kinematics.joint_names != calibration.joint_names:
            raise ConfigError(f"{where}: kinematics joints {kinematics.joint_names} differ from "
                              f"the calibration's {calibration.joint_names}")
        try:
            return WorkspaceGuard(kinematics, bounds)
        except ConfigError as err:
            raise ConfigError(f"{where}: {err}") from None

    # ---- inputs -------------------------------------------------------------------------------

    def update_state(self, state: RobotState, now_s: float,
                     stamp_now_s: float | None = None) -> None:
        """Accepts a measurement received at ``now_s`` (the supervisor's clock); an invalid one is
        counted and makes the supervisor hold until a valid one comes.

        ``stamp_now_s`` is the time of receipt on the stamps' clock (the node's ROS time), which
        a stamp may not lead by more than ``stamp_tolerance_s``; None when the stamps are on the
        supervisor's clock (the in-process gate, tests). A state stamped like the latest one is
        a repeat (a driver re-sending a cached reading, the node re-sending the last state with
        new telemetry): its values replace the latest, but it refreshes nothing.
        """
        stamp_now_s = now_s if stamp_now_s is None else stamp_now_s
        for name, value in (("now_s", now_s), ("stamp_now_s", stamp_now_s)):
            if not math.isfinite(value):
                raise ValueError(f"safety supervisor {self.robot}: {name} must be finite, "
                                 f"got {value}")
        self._latest_s = max(self._latest_s, now_s)
        if math.isfinite(state.stamp_s):
            self._stamp_lag_s = stamp_now_s - state.stamp_s
        problem = self._state_problem(state, stamp_now_s, now_s)
        if problem is not None:
            self._counters["state_rejected"] += 1  # every one; the hold counts its onset
            if problem == "stamp_in_future":
                self._counters["stamp_in_future"] += 1  # every one, like state_rejected
            self._state_fault = f"state_invalid {problem}"
            return
        latest = self._state
        if latest is None or state.stamp_s != latest.stamp_s:  # a new measurement
            if latest is not None:
                self._previous_state = latest
                if state.stamp_s < latest.stamp_s:  # the publisher's clock stepped back
                    self._counters["state_stamp_back"] += 1
            self._state_received_s = now_s
        self._state, self._state_fault = state, None
        self._take_telemetry(state, now_s)

    def filter(self, command_rad: np.ndarray, now_s: float) -> Verdict:
        """Decides what to send for one incoming command."""
        self._clock(now_s)
        self._counters["commands"] += 1
        self._last_command_rx_s = now_s
        if self._estop_reasons:
            return self._hold(now_s, ())
        command = np.asarray(command_rad, dtype=float)
        causes = self._conditions(now_s)
        if command.shape != (self._n,):
            causes += (f"command_shape {command.shape} expected ({self._n},)",)
        else:
            causes += tuple(f"{'nan' if math.isnan(v) else 'inf'}_in_command {name}"
                            for name, v in zip(self.limits.joint_names, command)
                            if not math.isfinite(v))
        if causes:
            return self._hold(now_s, causes)
        if self._holding:
            if self._state_received_s <= self._hold_since_s:
                return self._hold(now_s, ("awaiting_fresh_state",))
            self._holding, self._hold_target = False, None
        return self._run(command, now_s)

    def tick(self, now_s: float) -> Verdict | None:
        """The watchdog, at a fixed rate: a hold (or e-stop) verdict to send, or None if all's well.

        It arms with the first command: before any command the supervisor has sent nothing and
        has nothing to hold.
        """
        self._clock(now_s)
        if self._estop_reasons:
            return self._hold(now_s, ())
        if self._last_command_rx_s is None and not self._holding:
            return None
        causes = self._conditions(now_s)
        if self._last_command_rx_s is not None:
            silent_s = now_s - self._last_command_rx_s
            if silent_s > self.limits.command_timeout_s:
                causes += ("stale_command",)
        if causes:
            return self._hold(now_s, causes)
        if self._holding:
            fresh = self._state is not None and self._state_received_s > self._hold_since_s
            return self._hold(now_s, ("awaiting_command" if fresh else "awaiting_fresh_state",))
        return None

    def estop(self, reason: str, now_s: float | None = None) -> None:
        """Latches an e-stop: every verdict holds until ``reset`` succeeds."""
        when = self._latest_s if now_s is None else now_s
        self._counters["estop"] += 1
        self._estop_reasons = (*self._estop_reasons, f"estop {reason}")
        self._estop_since_s = max(self._estop_since_s, when)
        self._enter_hold(when)

    def reset(self, now_s: float) -> bool:
        """Clears a latched e-stop if the latest state is valid, a new measurement received after
        the e-stop, and still fresh at ``now_s``."""
        self._clock(now_s)
        age_s = now_s - self._state_received_s
        fresh = (self._state is not None and self._state_fault is None and not self._now_back
                 and self._state_received_s > self._estop_since_s
                 and 0.0 <= age_s <= self.limits.state_timeout_s)
        if not fresh:
            self._counters["reset_refused"] += 1
            return False
        if self._estop_reasons:
            self._counters["reset"] += 1
        self._estop_reasons = ()
        return True

    # ---- outputs ------------------------------------------------------------------------------

    @property
    def counters(self) -> Mapping[str, int]:
        return MappingProxyType(self._counters)

    @property
    def estopped(self) -> bool:
        return bool(self._estop_reasons)

    @property
    def holding(self) -> bool:
        return self._holding

    @property
    def state_stamp_s(self) -> float | None:
        """The stamp of the latest valid state, on its publisher's clock: the measurement that
        the latest verdict was based on (None before any). The node stamps each COMMAND with it,
        so a driver can tell, on its own clock, whether a command was decided after the
        supervisor saw a given measurement of its own (contract C1)."""
        return None if self._state is None else self._state.stamp_s

    def diagnostics(self, now_s: float | None = None) -> list[DiagnosticStatusData]:
        now = self._latest_s if now_s is None else now_s
        verdict = self._last_verdict
        status = "none" if verdict is None else verdict.status
        if self._estop_reasons:
            level, message = ERROR, "E-STOP latched: " + "; ".join(self._estop_reasons)
        elif self._holding or status in ("hold", "estop"):
            # an infeasible command holds (sends nothing) without entering the hold state
            reasons = verdict.reasons if verdict else ()
            nothing = verdict is not None and verdict.command_rad is None
            prefix = "holding, sending nothing: " if nothing else "holding: "
            level, message = ERROR, prefix + ", ".join(reasons)
        elif status == "clipped":
            level, message = WARN, "clipping: " + ", ".join(verdict.reasons)
        else:
            level, message = OK, "passing commands" if verdict else "waiting for commands"
        ages = {"state_age_s": None if self._state is None else now - self._state_received_s,
                "command_age_s": None if self._last_command_rx_s is None
                else now - self._last_command_rx_s,
                # the receiver's time on the stamps' clock at receipt minus the latest stamp:
                # transport latency plus the clocks' offset (negative: stamped in the future)
                "state_stamp_lag_s": self._stamp_lag_s}
        values = [("status", status)]
        values += [(k, "none" if v is None else f"{v:.4f}") for k, v in ages.items()]
        if self._last_rebase is not None:
            when_s, joints = self._last_rebase
            values += [("last_rebase_s", f"{when_s:.4f}"), ("last_rebase_joints", " ".join(joints))]
        values += [(k, str(v)) for k, v in sorted(self._counters.items())]
        summary = DiagnosticStatusData(level, f"safety: {self.robot}", message, self.robot,
                                       tuple(values))
        return [summary, self._telemetry_status(now)]

    # ---- decisions ----------------------------------------------------------------------------

    def _conditions(self, now_s: float) -> tuple[str, ...]:
        """Faults that hold the robot regardless of the command: the clock, state freshness and
        telemetry."""
        causes = ["clock_back"] if self._now_back else []
        if self._state is None:
            return (*causes, "no_state")
        if self._state_fault is not None:
            causes.append(self._state_fault)
        if now_s - self._state_received_s > self.limits.state_timeout_s:
            causes.append("stale_state")
        return (*causes, *self._telemetry_conditions(now_s))

    def _telemetry_conditions(self, now_s: float) -> list[str]:
        names = self.limits.joint_names
        over = np.abs(self._state.effort_a) > self.limits.current_limit_a
        causes = [f"overcurrent {names[j]}" for j in over.nonzero()[0]]
        causes += [f"overtemperature {names[j]}" for j in self._hot.nonzero()[0]]
        if "hardware_error" in self._telemetry:
            errors = self._telemetry["hardware_error"][0]
            causes += [f"hardware_error {names[j]}" for j in errors.nonzero()[0]]
        # a stream never seen is not checked (not every driver reports temperature); one that
        # stopped is: a dead telemetry stream hides a servo heating up
        causes += [f"stale_telemetry {kind}" for kind, (_, stamp_s) in self._telemetry.items()
                   if now_s - stamp_s > self.limits.telemetry_timeout_s]
        return causes

    def _hold(self, now_s: float, causes: tuple[str, ...]) -> Verdict:
        self._enter_hold(now_s)
        persistent = frozenset(c for c in causes if c.split()[0] not in _PER_COMMAND)
        for cause in causes:
            if cause not in self._active or cause.split()[0] in _PER_COMMAND:
                self._counters[cause.split()[0]] += 1
        self._active = persistent
        status = "estop" if self._estop_reasons else "hold"
        command, extra = self._hold_command(now_s)
        return self._verdict(command, status, (*self._estop_reasons, *causes, *extra))

    def _enter_hold(self, now_s: float) -> None:
        if self._holding:
            return
        self._counters["hold_entered"] += 1
        self._holding, self._hold_since_s = True, now_s
        if self._state is not None:
            self._hold_target = np.clip(self._state.position_rad, self.limits.lower_rad,
                                        self.limits.upper_rad)

    def _hold_command(self, now_s: float) -> tuple[np.ndarray | None, tuple[str, ...]]:
        if self._state is None:
            return None, ()
        if self._hold_target is None:  # the hold began before any state: freeze the first one
            self._hold_target = np.clip(self._state.position_rad, self.limits.lower_rad,
                                        self.limits.upper_rad)
        rebased = self._rebase(now_s)
        # stopping is what a hold is for: no acceleration window, only the hard limits
        command, reasons = self._constrained(self._hold_target, now_s, soft=False)
        return command, (*rebased, *reasons)

    def _run(self, command: np.ndarray, now_s: float) -> Verdict:
        self._active = frozenset()
        rebased = self._rebase(now_s)
        safe, reasons = self._constrained(command, now_s, soft=True)
        for reason in reasons:
            self._counters[reason.split()[0]] += 1
        reasons = (*rebased, *reasons)
        if safe is None:
            return self._verdict(None, "hold", reasons)
        return self._verdict(safe, "clipped" if reasons else "pass", reasons)

    def _constrained(self, desired: np.ndarray, now_s: float, soft: bool
                     ) -> tuple[np.ndarray | None, tuple[str, ...]]:
        """The command nearest ``desired`` inside every limit, or None; emits it if not None."""
        measured = self._state.position_rad
        if self._sent is None:  # nothing sent yet: rate limits count from the measured state
            reference, dt_s = measured, max(0.0, now_s - self._state_received_s)
        else:
            reference, dt_s = self._sent, max(0.0, now_s - self._sent_s)
        box, rules = hard_box(self.limits, measured, reference, dt_s, self._sent is not None)
        window = None
        if soft and self._sent is not None:
            window = acceleration_window(self.limits, self._sent, self._sent_velocity, dt_s)
        command, reasons = constrain(desired, box, rules, self.limits.joint_names, window,
                                     self._sent)
        if command is not None and self.workspace is not None:
            bases = [clip(measured, box.lower, box.upper)]
            sent = self._sent
            if sent is not None and ((box.lower <= sent) & (sent <= box.upper)).all():
                bases.append(self._sent)
            command, outside = self.workspace.retreat(bases, command)
            if command is not None:
                command = clip(command, box.lower, box.upper)  # undo interpolation round-off
            reasons += outside if command is not None else (*outside, "infeasible workspace")
        if command is not None:
            self._emit(command, now_s)
        return command, reasons

    def _rebase(self, now_s: float) -> tuple[str, ...]:
        """Moves the reference of jumped joints to their measured position (clipped into the
        position limits, as every reference is: one outside could leave a joint that is back
        inside with no target), at rest; a hold target follows, so a hold still commands where
        the robot is. ``rebase <joint>`` for each joint moved."""
        previous = self._previous_state
        if self._sent is None or previous is None:
            return ()
        measured = self._state.position_rad
        moved = jumped(self.limits, self._sent, measured, previous.position_rad)
        if not moved.any():  # the usual case
            return ()
        target = clip(measured, self.limits.lower_rad, self.limits.upper_rad)
        moved &= target != self._sent
        if not moved.any():
            return ()
        self._sent[moved] = target[moved]
        self._sent_velocity[moved] = 0.0
        if self._hold_target is not None:
            self._hold_target[moved] = target[moved]
        joints = tuple(self.limits.joint_names[j] for j in moved.nonzero()[0])
        self._counters["rebase"] += len(joints)
        self._last_rebase = (now_s, joints)
        return tuple(f"rebase {joint}" for joint in joints)

    def _emit(self, command: np.ndarray, now_s: float) -> None:
        if self._sent is not None and now_s > self._sent_s:
            self._sent_velocity = (command - self._sent) / (now_s - self._sent_s)
        elif self._sent is None:
            self._sent_velocity = np.zeros(self._n)
        self._sent, self._sent_s = command.copy(), now_s

    def _verdict(self, command: np.ndarray | None, status: str, reasons: tuple[str, ...]
                 ) -> Verdict:
        self._counters[f"verdict_{status}"] += 1
        verdict = Verdict(None if command is None else command.copy(), status, reasons)
        self._last_verdict = verdict
        return verdict

    # ---- helpers ------------------------------------------------------------------------------

    def _clock(self, now_s: float) -> None:
        if not math.isfinite(now_s):
            raise ValueError(f"safety supervisor {self.robot}: now_s must be finite, got {now_s}")
        self._now_back = now_s < self._latest_s
        self._latest_s = max(self._latest_s, now_s)

    def _state_problem(self, state: RobotState, stamp_now_s: float, now_s: float) -> str | None:
        if not math.isfinite(state.stamp_s):
            return "stamp not finite"
        if state.stamp_s > stamp_now_s + self.limits.stamp_tolerance_s:
            return "stamp_in_future"
        arrays = {"position_rad": state.position_rad, "velocity_rad_s": state.velocity_rad_s,
                  "effort_a": state.effort_a, "temperature_c": state.temperature_c}
        for name, values in arrays.items():
            if values is None:
                continue
            values = np.asarray(values)
            if values.shape != (self._n,):
                return f"{name} shape {values.shape}"
            if not np.isfinite(values).all():
                return f"{name} not finite"
        if state.hardware_error is not None and np.shape(state.hardware_error) != (self._n,):
            return f"hardware_error shape {np.shape(state.hardware_error)}"
        for name in ("temperature_stamp_s", "hardware_error_stamp_s"):
            stamp = getattr(state, name)
            if stamp is not None and not math.isfinite(stamp):
                return f"{name} not finite"
            if stamp is not None and stamp > now_s + self.limits.stamp_tolerance_s:
                return f"{name} in the future"  # a sample that could never go stale
        return None

    def _take_telemetry(self, state: RobotState, now_s: float) -> None:
        """Keeps the newest temperature and hardware error, each with its own stamp (on the
        supervisor's clock: when it was received; None: with the state, at ``now_s``)."""
        samples = {"temperature": (state.temperature_c, state.temperature_stamp_s),
                   "hardware_error": (state.hardware_error, state.hardware_error_stamp_s)}
        for kind, (values, stamp_s) in samples.items():
            if values is None:
                continue
            stamp_s = now_s if stamp_s is None else stamp_s
            if kind in self._telemetry and stamp_s < self._telemetry[kind][1]:
                continue  # an older sample than the one kept
            kept = np.array(values, dtype=float if kind == "temperature" else bool)
            self._telemetry[kind] = (kept, stamp_s)
            if kind == "temperature":
                # hysteresis: hot above the limit, cool again only at or below the resume value
                self._hot = ((kept > self.limits.temperature_limit_c)
                             | (self._hot & (kept > self.limits.temperature_resume_c)))

    def _telemetry_status(self, now_s: float) -> DiagnosticStatusData:
        state = self._state
        name = f"safety: {self.robot} telemetry"
        if state is None:
            return DiagnosticStatusData(WARN, name, "no state yet", self.robot)
        causes = [c for c in self._conditions(now_s) if c.split()[0] in
                  ("overcurrent", "overtemperature", "hardware_error", "state_invalid",
                   "stale_telemetry")]
        values = [(f"current_a {j}", f"{abs(a):.3f}")
                  for j, a in zip(self.limits.joint_names, state.effort_a)]
        for kind in ("temperature", "hardware_error"):
            sample = self._telemetry.get(kind)
            age = "never received" if sample is None else f"{now_s - sample[1]:.4f}"
            values.append((f"{kind}_age_s", age))
        if "temperature" in self._telemetry:
            values += [(f"temperature_c {j}", f"{t:.1f}") for j, t in
                       zip(self.limits.joint_names, self._telemetry["temperature"][0])]
        level = ERROR if causes else OK
        return DiagnosticStatusData(level, name, ", ".join(causes) or "within limits", self.robot,
                                    tuple(values))
