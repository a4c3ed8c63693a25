"""Plain data exchanged with the safety supervisor: robot state in, verdicts and diagnostics out."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

Status = Literal["pass", "clipped", "hold", "estop"]

# diagnostic_msgs/DiagnosticStatus levels, so the node can copy them into the message unchanged
OK, WARN, ERROR, STALE = 0, 1, 2, 3


@dataclass(frozen=True)
class RobotState:
    """One measurement from the driver telemetry or the twin, in the calibration's joint order.

    ``stamp_s`` is when position, velocity and effort were measured, on the publisher's clock
    (the header stamp, ROS time); the supervisor judges its age from when it was received, not
    from the stamp (see ``Supervisor.update_state``). Temperature and hardware error often come
    on their own topics at their own rate: their stamps say when they were received, on the
    supervisor's clock (None: with the joint state). None for a value means "nothing new": the
    supervisor keeps the last one it got, which goes stale after ``telemetry_timeout_s``.
    """

    stamp_s: float
    position_rad: np.ndarray
    velocity_rad_s: np.ndarray
    effort_a: np.ndarray
    temperature_c: np.ndarray | None = None
    hardware_error: np.ndarray | None = None  # bool per joint
    temperature_stamp_s: float | None = None
    hardware_error_stamp_s: float | None = None


@dataclass(frozen=True)
class Verdict:
    """The supervisor's decision about what reaches the motors now.

    ``command_rad`` None means: send nothing (the motors keep the last target they were sent).
    Every verdict whose ``command_rad`` is not None must be published; the supervisor's rate limits
    assume it was.
    """

    command_rad: np.ndarray | None
    status: Status
    reasons: tuple[str, ...] = ()


@dataclass(frozen=True)
class DiagnosticStatusData:
    """The fields of diagnostic_msgs/DiagnosticStatus as plain data (the node converts it)."""

    level: int
    name: str
    message: str
    hardware_id: str = ""
    values: tuple[tuple[str, str], ...] = ()
