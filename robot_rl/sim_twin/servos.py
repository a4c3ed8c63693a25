"""Published servo figures the twin needs to report effort as current (A).

Dynamixel e-manual figures at 12 V (XL330 at 5 V). The torque constant is stall torque / stall
current: a linear model, good enough to tell a pressing finger from a free one. The MJCF's
actuator forcerange uses the same stall torque (tests check that they agree).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ServoSpec:
    stall_torque_nm: float
    stall_current_a: float
    no_load_speed_rad_s: float

    @property
    def torque_constant_nm_a(self) -> float:
        return self.stall_torque_nm / self.stall_current_a


RPM = 2.0 * 3.141592653589793 / 60.0

SERVO_SPECS: dict[str, ServoSpec] = {
    "XM430-W210": ServoSpec(3.0, 2.3, 77 * RPM),
    "XM430-W350": ServoSpec(4.1, 2.3, 46 * RPM),
    "XH430-W350": ServoSpec(3.4, 1.3, 30 * RPM),
    "XL430-W250": ServoSpec(1.4, 1.3, 57 * RPM),
    "XM540-W270": ServoSpec(10.6, 4.4, 30 * RPM),
    "XL330-M288": ServoSpec(0.52, 1.47, 104 * RPM),
}


def torque_constant_nm_a(model: str | None) -> float:
    """N m per A for a servo model; 1.0 for joints without one (effort is then reported in N m)."""
    if model is None:
        return 1.0
    if model not in SERVO_SPECS:
        raise KeyError(f"servo model {model!r} has no spec in robot_rl/sim_twin/servos.py; "
                       f"known: {sorted(SERVO_SPECS)}")
    return SERVO_SPECS[model].torque_constant_nm_a
