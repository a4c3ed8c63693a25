"""One emulated X-series servo: its control table and the rules a real one applies to accesses.

Pure: no I/O, no clock. The bus emulator feeds it instructions and physics values; it answers with
a status error byte and data. Rules emulated: read-only items refuse writes (access error), EEPROM
is locked while torque is on (access error), values outside an item's range are a data range
error, a Goal Position outside the Min/Max Position Limits a data limit error, and a servo with a
hardware error refuses to enable torque. Overload: the present current above ``overload_current_a``
for ``overload_time_s`` sets the overload bit and turns the torque off, as the firmware's shutdown
does (the real threshold and delay are not published; these are settings). Power: a servo whose
supply is off neither answers nor drives; when the supply comes back it boots as a real X-series
does (``power``).
"""

from __future__ import annotations

import struct

from robot_rl.drivers.dynamixel.control_table import (
    CENTRE_TICK,
    ERROR_ALERT_BIT,
    ITEMS,
    MODELS,
    OVERLOAD_BIT,
    TABLE_SIZE,
    ControlItem,
    ModelSpec,
    to_signed,
)

RESULT_FAIL, INSTRUCTION_ERROR, CRC_ERROR, DATA_RANGE, DATA_LENGTH, DATA_LIMIT, ACCESS_ERROR = (
    1, 2, 3, 4, 5, 6, 7)

# Factory values of the RAM and EEPROM items that matter (model-specific ones come from ModelSpec).
_COMMON_DEFAULTS = {
    "Baud Rate": 1, "Return Delay Time": 250, "Operating Mode": 3, "Protocol Type": 2,
    "Secondary ID": 255, "Moving Threshold": 10, "Max Voltage Limit": 140, "Min Voltage Limit": 60,
    "PWM Limit": 885, "Max Position Limit": 4095, "Min Position Limit": 0, "Shutdown": 52,
    "Status Return Level": 2, "Velocity I Gain": 1920, "Velocity P Gain": 100,
    "Position P Gain": 800, "Present Input Voltage": 120, "Present Temperature": 30,
}

_BY_ADDRESS: dict[int, ControlItem] = {item.address: item for item in ITEMS.values()}
_PRESENT = struct.Struct("<hii")  # Present Current, Velocity, Position: one contiguous block
_PRESENT_ADDRESS = ITEMS["Present Current"].address
_GOAL = struct.Struct("<i")
_GOAL_ADDRESS = ITEMS["Goal Position"].address
_MOVING_ADDRESS = ITEMS["Moving"].address
_TORQUE_ADDRESS = ITEMS["Torque Enable"].address
_LAYOUT = {item.name: (item.address, item.size, item.signed, (1 << (8 * item.size)) - 1)
           for item in ITEMS.values()}


class EmulatedServo:
    def __init__(self, servo_id: int, model: str, *, firmware_version: int = 52,
                 overload_current_a: float | None = None, overload_time_s: float = 1.0) -> None:
        self.spec: ModelSpec = MODELS[model]
        self.table = bytearray(TABLE_SIZE)
        self._set("ID", servo_id)
        self._set("Firmware Version", firmware_version)
        self.reset_ram(eeprom=True)
        self.overload_current_a = (overload_current_a if overload_current_a is not None
                                   else 0.8 * self.spec.stall_current_a)
        self.overload_time_s = overload_time_s
        self._overloaded_for_s = 0.0
        self.registered: tuple[int, bytes] | None = None
        self.powered = True

    # --- registers -------------------------------------------------------------------------
    @property
    def id(self) -> int:
        return self.table[ITEMS["ID"].address]

    def get(self, name: str) -> int:
        address, size, signed, _ = _LAYOUT[name]
        return int.from_bytes(self.table[address:address + size], "little", signed=signed)

    def _set(self, name: str, value: int) -> None:
        address, size, _, mask = _LAYOUT[name]
        self.table[address:address + size] = (int(value) & mask).to_bytes(size, "little")

    def reset_ram(self, *, eeprom: bool = False) -> None:
        """Power-on state: RAM to factory values (and EEPROM too when ``eeprom``)."""
        firmware, servo_id = self.get("Firmware Version"), self.get("ID")
        if eeprom:
            self.table[:] = bytes(TABLE_SIZE)
            self._set("Model Number", self.spec.number)
            self._set("Current Limit", self.spec.default_current_limit)
            self._set("Velocity Limit", self.spec.default_velocity_limit)
            self._set("Temperature Limit", self.spec.default_temperature_limit_c)
            for name, value in _COMMON_DEFAULTS.items():
                self._set(name, value)
        else:
            self.table[64:] = bytes(TABLE_SIZE - 64)
            for name, value in _COMMON_DEFAULTS.items():
                if ITEMS[name].address >= 64:
                    self._set(name, value)
        self._set("Firmware Version", firmware)
        self._set("ID", servo_id)
        position = self.get("Present Position")
        self._set("Goal Position", position if position else CENTRE_TICK)
        self.registered = None

    @property
    def torque_on(self) -> bool:
        return bool(self.get("Torque Enable"))

    @property
    def hardware_error(self) -> int:
        return self.get("Hardware Error Status")

    def status_error(self, number: int = 0) -> int:
        """Status error byte: ``number``, plus the alert bit while a hardware error holds."""
        return number | (ERROR_ALERT_BIT if self.hardware_error else 0)

    def read(self, address: int, length: int) -> tuple[int, bytes]:
        if length < 1 or address + length > TABLE_SIZE:
            return self.status_error(DATA_RANGE), b""
        return self.status_error(), bytes(self.table[address:address + length])

    def write(self, address: int, data: bytes) -> int:
        """Applies a write; returns the status error byte (the write is all or nothing)."""
        error = self._check_write(address, data)
        if error:
            return self.status_error(error)
        staged = bytearray(self.table)
        staged[address:address + len(data)] = data
        goal = ITEMS["Goal Position"].address
        if address <= goal < address + len(data) and not self._goal_within_limits(staged):
            return self.status_error(DATA_LIMIT)
        turning_on = staged[ITEMS["Torque Enable"].address] and not self.torque_on
        if turning_on and self.hardware_error:
            return self.status_error(RESULT_FAIL)
        if turning_on:  # the firmware holds where the servo is when torque comes on
            position = self.get("Present Position").to_bytes(4, "little", signed=True)
            if not address <= goal < address + len(data):
                staged[goal:goal + 4] = position
        self.table[:] = staged
        return self.status_error()

    def _check_write(self, address: int, data: bytes) -> int:
        end = address + len(data)
        if not data or end > TABLE_SIZE:
            return DATA_RANGE
        if address < 64 and self.torque_on:
            return ACCESS_ERROR
        covered = 0
        for item_address in range(address, end):
            item = _BY_ADDRESS.get(item_address)
            if item is None:
                continue
            absent = item.name == "Current Limit" and not self.spec.has_current_limit
            if not item.writable or absent:
                return ACCESS_ERROR
            if item_address + item.size > end:
                return DATA_LENGTH  # a write must cover whole items
            raw = int.from_bytes(data[item_address - address:item_address - address + item.size],
                                 "little")
            value = to_signed(raw, item.size) if item.signed else raw
            if item.lo is not None and item.hi is not None and not item.lo <= value <= item.hi:
                return DATA_RANGE
            covered += item.size
        if covered != len(data):
            return ACCESS_ERROR  # touches reserved bytes
        return 0

    def _goal_within_limits(self, table: bytearray) -> bool:
        if table[ITEMS["Operating Mode"].address] not in (3,):
            return True  # extended and current-based modes ignore the position limits
        goal = int.from_bytes(table[116:120], "little", signed=True)
        lo = int.from_bytes(table[52:56], "little", signed=True)
        hi = int.from_bytes(table[48:52], "little", signed=True)
        return lo <= goal <= hi

    # --- physics coupling ---------------------------------------------------------------------
    def update_present(self, position_ticks: int, velocity_units: int, current_a: float,
                       dt_s: float) -> None:
        """Stores what the physics says and runs the overload protection (called at up to 1 kHz
        for every servo, hence the packed writes)."""
        current_units = max(-32768, min(32767, int(round(current_a / self.spec.current_unit_a))))
        _PRESENT.pack_into(self.table, _PRESENT_ADDRESS, current_units, velocity_units,
                           position_ticks)
        self.table[_MOVING_ADDRESS] = abs(velocity_units) > self.get("Moving Threshold")
        if self.table[_TORQUE_ADDRESS] and abs(current_a) > self.overload_current_a:
            self._overloaded_for_s += dt_s
            if self._overloaded_for_s >= self.overload_time_s:
                self._set("Hardware Error Status", self.hardware_error | (1 << OVERLOAD_BIT))
                self._set("Torque Enable", 0)
        else:
            self._overloaded_for_s = 0.0

    def motion_settings(self) -> tuple[int, bool, int]:
        """Goal Position, Torque Enable, speed cap (Profile Velocity, else Velocity Limit)."""
        goal = _GOAL.unpack_from(self.table, _GOAL_ADDRESS)[0]
        profile = self.get("Profile Velocity")
        return goal, bool(self.table[_TORQUE_ADDRESS]), profile or self.get("Velocity Limit")

    def power(self, on: bool) -> None:
        """Switches the servo's supply. Off: it stops answering and driving (torque off). Back on:
        it boots as after a REBOOT: RAM at power-on values (Torque Enable 0, Profile Velocity 0,
        Goal Position where the servo is), hardware errors cleared, EEPROM kept."""
        if on and not self.powered:
            self.reboot()
        if not on:
            self._set("Torque Enable", 0)
        self.powered = on

    def reboot(self) -> None:
        """REBOOT: RAM back to power-on values, hardware errors cleared, EEPROM kept."""
        present = self.get("Present Position")
        self.reset_ram()
        self._set("Present Position", present)
        self._set("Goal Position", present)
        self._overloaded_for_s = 0.0
