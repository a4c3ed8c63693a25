"""Joint-space limits as pure functions of (command, measured state, last sent command, time step).

Hard limits (position with margin, step from the measured position, step and velocity from the
rate-limit reference, normally the last sent command) form a box per joint; the acceleration
limit is soft: it shapes the command inside that box but never pushes it out. When the box is
empty there is no safe new target: the caller sends nothing and the motors keep the last one.
An empty box that could never fill again (the measured position more than 2 * max_step_rad from
the reference) means the robot is no longer where the reference says: ``jumped`` finds those
joints so the caller can re-base the reference on the measured position.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from robot_rl.config import ConfigError
from robot_rl.robot_config import RobotCalibration

_RULES = ("position_limit", "step_from_measured", "step_from_command", "velocity_limit")
# A limit met to within this is not reported as a clip (the command is still clipped exactly):
# limits computed from float time stamps (v * dt) round either way, and a policy that asks for
# exactly the velocity limit would otherwise count as clipped by 1e-17 rad on some steps.
REPORT_TOLERANCE_RAD = 1e-9
_RULES_FROM_MEASURED = ("position_limit", "step_from_measured", "velocity_limit")


@dataclass(frozen=True)
class JointLimits:
    """The supervisor's limits as arrays in the calibration's joint order (validated)."""

    joint_names: tuple[str, ...]
    lower_rad: np.ndarray  # position limits with the margin already applied
    upper_rad: np.ndarray
    max_step_rad: float
    velocity_limit_rad_s: np.ndarray
    acceleration_limit_rad_s2: float
    current_limit_a: np.ndarray
    temperature_limit_c: float
    temperature_resume_c: float  # an overtemperature hold ends at or below this
    state_timeout_s: float
    command_timeout_s: float
    telemetry_timeout_s: float
    stamp_tolerance_s: float  # a state stamped further ahead of the receiver's clock is invalid

    @classmethod
    def from_calibration(cls, calibration: RobotCalibration) -> JointLimits:
        where = calibration.where
        safety = calibration.safety
        if safety is None:
            raise ConfigError(f"{where}: safety: required section is missing")
        if calibration.n_joints == 0:
            raise ConfigError(f"{where}: joints: at least one joint is needed")
        scalars = {
            "position_margin_rad": (safety.position_margin_rad, 0.0),
            "max_step_rad": (safety.max_step_rad, None),
            "acceleration_limit_rad_s2": (safety.acceleration_limit_rad_s2, None),
            "temperature_limit_c": (safety.temperature_limit_c, None),
            "state_timeout_s": (safety.state_timeout_s, None),
            "command_timeout_s": (safety.command_timeout_s, None),
            "telemetry_timeout_s": (safety.telemetry_timeout_s, None),
            "stamp_tolerance_s": (safety.stamp_tolerance_s, 0.0),
        }
        for key, (value, allowed_zero) in scalars.items():
            ok = isinstance(value, (int, float)) and math.isfinite(value)
            if not ok or value < 0 or (value == 0 and allowed_zero is None):
                raise ConfigError(f"{where}: safety.{key}: {value!r} must be a finite number > 0"
                                  + (" (>= 0 allowed)" if allowed_zero is not None else ""))
        resume_c = safety.temperature_resume_c
        if resume_c is None:
            resume_c = safety.temperature_limit_c - 5.0
        if not (math.isfinite(resume_c) and resume_c < safety.temperature_limit_c):
            raise ConfigError(f"{where}: safety.temperature_resume_c: {resume_c!r} must be below "
                              f"safety.temperature_limit_c {safety.temperature_limit_c}")
        margin = safety.position_margin_rad
        for joint in calibration.joints:
            lo, hi = joint.position_limits_rad
            if not (math.isfinite(lo) and math.isfinite(hi) and lo + margin < hi - margin):
                raise ConfigError(
                    f"{where}: joints.{joint.name}.position_limits_rad [{lo}, {hi}] leaves no "
                    f"range inside safety.position_margin_rad {margin}")
            for key in ("velocity_limit_rad_s", "current_limit_a"):
                value = getattr(joint, key)
                if not (math.isfinite(value) and value > 0):
                    raise ConfigError(f"{where}: joints.{joint.name}.{key}: {value!r} must be > 0")
        return cls(
            joint_names=calibration.joint_names,
            lower_rad=calibration.lower_rad + margin,
            upper_rad=calibration.upper_rad - margin,
            max_step_rad=float(safety.max_step_rad),
            velocity_limit_rad_s=calibration.velocity_limit_rad_s,
            acceleration_limit_rad_s2=float(safety.acceleration_limit_rad_s2),
            current_limit_a=calibration.current_limit_a,
            temperature_limit_c=float(safety.temperature_limit_c),
            temperature_resume_c=float(resume_c),
            state_timeout_s=float(safety.state_timeout_s),
            command_timeout_s=float(safety.command_timeout_s),
            telemetry_timeout_s=float(safety.telemetry_timeout_s),
            stamp_tolerance_s=float(safety.stamp_tolerance_s),
        )


ROUND_OFF_RAD = 1e-12  # far below any joint's resolution (a 4096-count encoder: 1.5e-3 rad)


@dataclass(frozen=True)
class Box:
    """Per-joint feasible interval and, for each side, which rule set it (for reasons)."""

    lower: np.ndarray
    upper: np.ndarray
    lower_rule: np.ndarray  # index into the rule names of ``hard_box``
    upper_rule: np.ndarray

    @property
    def empty(self) -> np.ndarray:
        # Sides that meet up to round-off are not empty: a reference on a limit, reached by
        # another sum, can sit a few ulps past it, and an "empty" box sends nothing, so the
        # reference never moves and the hold never ends. clip() then returns the upper side.
        return self.lower > self.upper + ROUND_OFF_RAD


def clip(values: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> np.ndarray:
    """np.clip's definition (NaN stays NaN) without its Python layers, which cost several times
    the clipping of nine joints; public ufuncs only."""
    return np.minimum(np.maximum(values, lower), upper)


def hard_box(limits: JointLimits, measured_rad: np.ndarray, reference_rad: np.ndarray,
             dt_s: float, from_command: bool) -> tuple[Box, tuple[str, ...]]:
    """The intersection of the hard limits. ``reference_rad`` is the last sent command, or the
    measured position when nothing was sent yet (``from_command`` False)."""
    velocity_step = limits.velocity_limit_rad_s * dt_s
    step = limits.max_step_rad
    lowers = [limits.lower_rad, measured_rad - step]
    uppers = [limits.upper_rad, measured_rad + step]
    if from_command:
        lowers.append(reference_rad - step)
        uppers.append(reference_rad + step)
    lowers.append(reference_rad - velocity_step)
    uppers.append(reference_rad + velocity_step)
    low, high = np.array(lowers), np.array(uppers)  # (rule, joint)
    # the first binding rule names the side (argmax/argmin), its value bounds it
    box = Box(low.max(axis=0), high.min(axis=0), low.argmax(axis=0), high.argmin(axis=0))
    return box, _RULES if from_command else _RULES_FROM_MEASURED


def acceleration_window(limits: JointLimits, last_rad: np.ndarray, last_velocity_rad_s: np.ndarray,
                        dt_s: float) -> tuple[np.ndarray, np.ndarray]:
    """Targets whose implied velocity differs from the last one by at most a * dt."""
    centre = last_rad + last_velocity_rad_s * dt_s
    reach = limits.acceleration_limit_rad_s2 * dt_s * dt_s
    return centre - reach, centre + reach


def constrain(desired_rad: np.ndarray, box: Box, rule_names: tuple[str, ...],
              joint_names: tuple[str, ...],
              soft: tuple[np.ndarray, np.ndarray] | None = None,
              origin_rad: np.ndarray | None = None
              ) -> tuple[np.ndarray | None, tuple[str, ...]]:
    """The point of the box nearest to ``desired_rad`` (after the soft window); a reason per
    changed joint names the binding rule (``acceleration_limit`` when the window moved it further).
    None and ``infeasible <joint>`` if the box is empty.

    The soft window may slow a joint on its way from ``origin_rad`` (the last command sent) but
    never carries it past the target: a joint that cannot decelerate within the acceleration limit
    stops at the target instead of overshooting it (stopping is always allowed)."""
    empty = box.empty
    if empty.any():
        return None, tuple(f"infeasible {joint_names[j]}" for j in empty.nonzero()[0])
    hard_only = clip(desired_rad, box.lower, box.upper)
    command = hard_only
    if soft is not None:
        # clipping into the soft window first, then into the box, keeps the result in the box and,
        # where the two overlap, in the window too
        command = clip(clip(desired_rad, soft[0], soft[1]), box.lower, box.upper)
        if origin_rad is not None:
            between = (np.minimum(origin_rad, hard_only), np.maximum(origin_rad, hard_only))
            command = clip(clip(command, *between), box.lower, box.upper)
    reasons: list[str] = []
    for j in (desired_rad > box.upper + REPORT_TOLERANCE_RAD).nonzero()[0]:
        reasons.append(f"{rule_names[box.upper_rule[j]]} {joint_names[j]}")
    for j in (desired_rad < box.lower - REPORT_TOLERANCE_RAD).nonzero()[0]:
        reasons.append(f"{rule_names[box.lower_rule[j]]} {joint_names[j]}")
    moved = (np.abs(command - hard_only) > REPORT_TOLERANCE_RAD).nonzero()[0]
    reasons += [f"acceleration_limit {joint_names[j]}" for j in moved]
    return command, tuple(reasons)


def jumped(limits: JointLimits, reference_rad: np.ndarray, latest_rad: np.ndarray,
           previous_rad: np.ndarray) -> np.ndarray:
    """Joints (bool mask) that two consecutive measurements both place more than
    2 * max_step_rad from the reference, agreeing with each other within max_step_rad.

    Every target is sent within max_step_rad of a measurement and a tracking joint closes on its
    target, so a gap over twice that is a jump (teleport, push, driver restart), never tracking;
    it is also exactly when the step limits leave no target, now or later. Two readings, not one,
    so that a single glitched reading cannot drag the targets after it.
    """
    limit = 2.0 * limits.max_step_rad
    far = np.abs(latest_rad - reference_rad) > limit
    if not far.any():  # the usual case: tracking
        return far
    return (far & (np.abs(previous_rad - reference_rad) > limit)
            & (np.abs(latest_rad - previous_rad) <= limits.max_step_rad))
