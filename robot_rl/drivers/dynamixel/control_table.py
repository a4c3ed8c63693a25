"""Dynamixel X-series facts for Protocol 2.0: model numbers, the control table, unit conversions.

Addresses and units are those of the ROBOTIS e-manual for the X series (XM430, XH430, XL430,
XM540, XL330), which share one layout for every item used here. Addresses below 64 are EEPROM:
a servo refuses writes there while its torque is on.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

TICKS_PER_REV = 4096
CENTRE_TICK = 2048
RAD_PER_TICK = 2.0 * math.pi / TICKS_PER_REV
RPM_PER_VELOCITY_UNIT = 0.229
RAD_S_PER_VELOCITY_UNIT = RPM_PER_VELOCITY_UNIT * 2.0 * math.pi / 60.0
VOLT_PER_VOLTAGE_UNIT = 0.1
EEPROM_END = 64  # addresses [0, 64) are EEPROM


@dataclass(frozen=True)
class ModelSpec:
    """One servo model: its model number and the facts the driver and the emulator need."""

    name: str
    number: int
    current_unit_a: float  # Present/Goal Current unit; for XL430 the Present Load unit as a current
    has_current_limit: bool  # XL430 has no Current Limit item (address 38 is reserved there)
    stall_current_a: float  # at the nominal supply voltage
    default_current_limit: int  # factory Current Limit, in current units
    default_velocity_limit: int  # factory Velocity Limit, in 0.229 rpm units
    default_temperature_limit_c: int


# XL430-W250 reports Present Load (0.1 % of its 1.4 A stall current), not a current: its
# current_unit_a converts that load to an estimated current.
MODELS: dict[str, ModelSpec] = {
    m.name: m
    for m in (
        ModelSpec("XM430-W210", 1030, 2.69e-3, True, 2.3, 1193, 230, 80),
        ModelSpec("XM430-W350", 1020, 2.69e-3, True, 2.3, 1193, 128, 80),
        ModelSpec("XH430-W350", 1010, 2.69e-3, True, 1.3, 689, 128, 80),
        ModelSpec("XL430-W250", 1060, 1.4e-3, False, 1.4, 0, 265, 72),
        ModelSpec("XM540-W270", 1120, 2.69e-3, True, 4.4, 2047, 128, 80),
        ModelSpec("XL330-M288", 1200, 1.0e-3, True, 1.47, 1750, 445, 70),
    )
}
MODEL_BY_NUMBER: dict[int, ModelSpec] = {m.number: m for m in MODELS.values()}


def model_name(number: int) -> str:
    """'XM430-W210' for 1030; 'unknown model 1234' for a number outside the table."""
    spec = MODEL_BY_NUMBER.get(number)
    return spec.name if spec else f"unknown model {number}"


@dataclass(frozen=True)
class ControlItem:
    name: str
    address: int
    size: int  # bytes, little endian
    writable: bool
    lo: int | None = None  # valid range of a write (inclusive); None: not checked
    hi: int | None = None
    signed: bool = False

    @property
    def eeprom(self) -> bool:
        return self.address < EEPROM_END


_ITEMS = (
    ControlItem("Model Number", 0, 2, False),
    ControlItem("Model Information", 2, 4, False),
    ControlItem("Firmware Version", 6, 1, False),
    ControlItem("ID", 7, 1, True, 0, 252),
    ControlItem("Baud Rate", 8, 1, True, 0, 7),
    ControlItem("Return Delay Time", 9, 1, True, 0, 254),
    ControlItem("Drive Mode", 10, 1, True, 0, 13),
    ControlItem("Operating Mode", 11, 1, True, 0, 16),
    ControlItem("Secondary ID", 12, 1, True, 0, 255),
    ControlItem("Protocol Type", 13, 1, True, 1, 2),
    ControlItem("Homing Offset", 20, 4, True, -1_044_479, 1_044_479, signed=True),
    ControlItem("Moving Threshold", 24, 4, True, 0, 1023),
    ControlItem("Temperature Limit", 31, 1, True, 0, 100),
    ControlItem("Max Voltage Limit", 32, 2, True, 60, 140),
    ControlItem("Min Voltage Limit", 34, 2, True, 60, 140),
    ControlItem("PWM Limit", 36, 2, True, 0, 885),
    ControlItem("Current Limit", 38, 2, True, 0, 2047),
    ControlItem("Velocity Limit", 44, 4, True, 0, 1023),
    ControlItem("Max Position Limit", 48, 4, True, 0, 4095),
    ControlItem("Min Position Limit", 52, 4, True, 0, 4095),
    ControlItem("Shutdown", 63, 1, True, 0, 255),
    ControlItem("Torque Enable", 64, 1, True, 0, 1),
    ControlItem("LED", 65, 1, True, 0, 1),
    ControlItem("Status Return Level", 68, 1, True, 0, 2),
    ControlItem("Registered Instruction", 69, 1, False),
    ControlItem("Hardware Error Status", 70, 1, False),
    ControlItem("Velocity I Gain", 76, 2, True, 0, 16383),
    ControlItem("Velocity P Gain", 78, 2, True, 0, 16383),
    ControlItem("Position D Gain", 80, 2, True, 0, 16383),
    ControlItem("Position I Gain", 82, 2, True, 0, 16383),
    ControlItem("Position P Gain", 84, 2, True, 0, 16383),
    ControlItem("Goal PWM", 100, 2, True, -885, 885, signed=True),
    ControlItem("Goal Current", 102, 2, True, -2047, 2047, signed=True),
    ControlItem("Goal Velocity", 104, 4, True, -1023, 1023, signed=True),
    ControlItem("Profile Acceleration", 108, 4, True, 0, 32767),
    ControlItem("Profile Velocity", 112, 4, True, 0, 32767),
    ControlItem("Goal Position", 116, 4, True, -1_048_575, 1_048_575, signed=True),
    ControlItem("Realtime Tick", 120, 2, False),
    ControlItem("Moving", 122, 1, False),
    ControlItem("Moving Status", 123, 1, False),
    ControlItem("Present PWM", 124, 2, False, signed=True),
    ControlItem("Present Current", 126, 2, False, signed=True),
    ControlItem("Present Velocity", 128, 4, False, signed=True),
    ControlItem("Present Position", 132, 4, False, signed=True),
    ControlItem("Velocity Trajectory", 136, 4, False, signed=True),
    ControlItem("Position Trajectory", 140, 4, False, signed=True),
    ControlItem("Present Input Voltage", 144, 2, False),
    ControlItem("Present Temperature", 146, 1, False),
    ControlItem("Indirect Address 1", 168, 2, True, 64, 661),
    ControlItem("Indirect Data 1", 224, 1, True),
)
ITEMS: dict[str, ControlItem] = {item.name: item for item in _ITEMS}
TABLE_SIZE = 256  # bytes the emulator holds per servo; reads past it are a data range error

# The block read every cycle: Present Current, Velocity and Position are contiguous (126..135).
STATE_BLOCK_ADDRESS = ITEMS["Present Current"].address
STATE_BLOCK_SIZE = ITEMS["Present Position"].address + 4 - STATE_BLOCK_ADDRESS

# The power-loss check, every telemetry period: Torque Enable (64) .. Hardware Error Status (70),
# 7 bytes (LED, two reserved bytes, Status Return Level and Registered Instruction between them).
TORQUE_CHECK_ADDRESS = ITEMS["Torque Enable"].address
TORQUE_CHECK_SIZE = ITEMS["Hardware Error Status"].address + 1 - TORQUE_CHECK_ADDRESS

OPERATING_MODES = {"current": 0, "velocity": 1, "position": 3, "extended_position": 4,
                   "current_based_position": 5, "pwm": 16}
BAUD_CODES = {9_600: 0, 57_600: 1, 115_200: 2, 1_000_000: 3, 2_000_000: 4, 3_000_000: 5,
              4_000_000: 6, 4_500_000: 7}

# Hardware Error Status bits (address 70).
HARDWARE_ERROR_BITS = {0: "input_voltage", 2: "overheating", 3: "motor_encoder",
                       4: "electrical_shock", 5: "overload"}
OVERLOAD_BIT = 5

# Protocol 2.0 status packet error field: bit 7 is the alert (read Hardware Error Status),
# bits 0-6 a number.
ERROR_ALERT_BIT = 0x80
STATUS_ERRORS = {1: "result fail", 2: "instruction error", 3: "CRC error", 4: "data range error",
                 5: "data length error", 6: "data limit error", 7: "access error"}


def decode_hardware_error(status: int) -> tuple[str, ...]:
    """Names of the bits set in a Hardware Error Status byte."""
    return tuple(name for bit, name in HARDWARE_ERROR_BITS.items() if status & (1 << bit))


def describe_status_error(error: int) -> str:
    """'access error', 'data limit error (alert: hardware error)', ... for a status error byte."""
    number = error & ~ERROR_ALERT_BIT
    text = STATUS_ERRORS.get(number, f"error {number}") if number else "no error"
    return f"{text} (alert: hardware error)" if error & ERROR_ALERT_BIT else text


def ticks_to_rad(ticks: np.ndarray | int) -> np.ndarray:
    """Servo position ticks -> servo radians, 0 at the centre tick 2048."""
    return (np.asarray(ticks, dtype=np.float64) - CENTRE_TICK) * RAD_PER_TICK


def rad_to_ticks(rad: np.ndarray | float) -> np.ndarray:
    return np.rint(np.asarray(rad, dtype=np.float64) / RAD_PER_TICK + CENTRE_TICK).astype(np.int64)


def velocity_units_to_rad_s(units: np.ndarray | int) -> np.ndarray:
    return np.asarray(units, dtype=np.float64) * RAD_S_PER_VELOCITY_UNIT


def rad_s_to_velocity_units(rad_s: np.ndarray | float) -> np.ndarray:
    return np.rint(np.asarray(rad_s, dtype=np.float64) / RAD_S_PER_VELOCITY_UNIT).astype(np.int64)


def to_signed(value: int, size: int) -> int:
    """Interprets an unsigned little-endian register value of ``size`` bytes as two's complement."""
    bits = 8 * size
    return value - (1 << bits) if value & (1 << (bits - 1)) else value


def to_unsigned(value: int, size: int) -> int:
    return value & ((1 << (8 * size)) - 1)
