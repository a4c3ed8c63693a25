"""The interface a robot's driver implements, and the rules every driver applies to a goal.

A robot is described by data (its calibration: joints in order, limits, model; see
robot_rl.robot_config) and driven by a driver: a ``Robot`` subclass for its hardware. The
interface is small on purpose, the size of LeRobot's ``Robot``: connect, read, write a goal,
disconnect. The generic driver node (robot_rl.nodes.robot_driver) puts any implementation on the
graph: it publishes what the robot reads and writes only the safety supervisor's COMMAND, after
the driver rules below.

Drivers are found by ``kind`` (the calibration's ``kind``, or the node's ``driver`` parameter)
through robot_rl.registry: the bundled ``dynamixel_hand`` / ``dynamixel_arm`` (drivers.dynamixel)
and ``twin`` (sim_twin: the MuJoCo twin as a robot), and any a package declares under the
``robot_rl.drivers`` entry points (``my_bus = my_pkg.driver:MyRobot``).
"""

from __future__ import annotations

import abc
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from robot_rl.robot_config import RobotCalibration
from robot_rl.safety.limits import JointLimits

_STEP_TOLERANCE_RAD = 1e-9  # float rounding of a goal computed exactly at the step limit


class GoalRefused(RuntimeError):
    """A goal a driver did not write; ``reason`` is one word (counted), the message says why."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class RobotReading:
    """One read of the robot, joints in calibration order. SI units.

    ``stamp_s``: when it was measured, on the driver's clock (wall time for hardware).
    ``sensors_rad``: the calibration's sensors (e.g. a valve's encoder), in their order.
    Telemetry is None when this read did not measure it (it often comes slower)."""

    stamp_s: float
    position_rad: np.ndarray
    velocity_rad_s: np.ndarray
    effort_a: np.ndarray
    sensors_rad: np.ndarray | None = None
    temperature_c: np.ndarray | None = None
    hardware_error: np.ndarray | None = None  # bool per joint


class Robot(abc.ABC):
    """A robot's driver: one per robot, used from one thread.

    ``connect`` leaves the robot holding where it is (torque on, goal = present position);
    ``write_goal`` takes joint position targets in calibration order and may refuse one
    (``GoalRefused``); ``disconnect`` releases the hardware (torque off where that is safe).
    """

    def __init__(self, calibration: RobotCalibration, **options: Any) -> None:
        """``options``: the driver's own settings (a port, an address), from the node's
        ``driver_options`` parameter."""
        self.calibration = calibration
        self.limits = JointLimits.from_calibration(calibration)

    @property
    def joint_names(self) -> tuple[str, ...]:
        return self.calibration.joint_names

    @property
    def sensor_names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.calibration.sensors)

    @property
    @abc.abstractmethod
    def is_connected(self) -> bool: ...

    @abc.abstractmethod
    def connect(self) -> None:
        """Opens the hardware, checks it is the calibrated robot, and holds the present pose."""

    @abc.abstractmethod
    def read(self) -> RobotReading: ...

    @abc.abstractmethod
    def write_goal(self, positions_rad: np.ndarray) -> None:
        """Joint position targets (rad, calibration order)."""

    @abc.abstractmethod
    def disconnect(self) -> None: ...

    def __enter__(self) -> Robot:
        self.connect()
        return self

    def __exit__(self, *exc: object) -> None:
        self.disconnect()


def check_goal(limits: JointLimits, goal_rad: np.ndarray, measured_rad: np.ndarray | None,
               measured_age_s: float) -> np.ndarray:
    """The rules a driver applies to every goal, whoever sent it (defense in depth behind the
    supervisor; docs/safety.md, "The drivers' own rules"): the goal clamped into the position
    limits shrunk by the margin; refused (``GoalRefused``) without a measurement, with one older
    than ``state_timeout_s``, or if a joint's goal is more than ``max_step_rad`` from it.
    Returns the goal to write."""
    goal = np.asarray(goal_rad, dtype=np.float64)
    names = limits.joint_names
    if goal.shape != (len(names),) or not np.all(np.isfinite(goal)):
        raise GoalRefused("malformed", f"expected {len(names)} finite targets (rad) for "
                                       f"{', '.join(names)}, got {goal_rad!r}")
    clamped = np.minimum(np.maximum(goal, limits.lower_rad), limits.upper_rad)
    if measured_rad is None:
        raise GoalRefused("unmeasured", "no measurement of the robot yet")
    if not math.isfinite(measured_age_s) or measured_age_s > limits.state_timeout_s:
        raise GoalRefused("stale", f"the last measurement is {measured_age_s:.3f} s old "
                                   f"(safety.state_timeout_s {limits.state_timeout_s} s)")
    step = np.abs(clamped - measured_rad)
    worst = int(np.argmax(step))
    if step[worst] > limits.max_step_rad + _STEP_TOLERANCE_RAD:
        raise GoalRefused("step", f"joint {names[worst]} goal {clamped[worst]:.4f} rad is "
                                  f"{step[worst]:.4f} rad from its measured "
                                  f"{measured_rad[worst]:.4f} rad (safety.max_step_rad "
                                  f"{limits.max_step_rad})")
    return clamped
