"""Thin layers over dynamixel_sdk: a port with its own latency timer, a sync read that keeps errors.

The SDK's packet timeout uses a module-wide ``LATENCY_TIMER`` of 16 ms (34 ms per missing servo);
``LatencyPortHandler`` applies each bus's own latency timer with the SDK's formula instead. The
SDK's GroupSyncRead drops each servo's status error byte; ``AlertingSyncRead`` keeps it, because
its alert bit is how a hardware error shows without polling Hardware Error Status every cycle.
"""

from __future__ import annotations

import logging
import select
import termios
from pathlib import Path

import serial
from dynamixel_sdk import GroupSyncRead, PortHandler
from dynamixel_sdk.robotis_def import (
    BROADCAST_ID,
    COMM_NOT_AVAILABLE,
    COMM_RX_CORRUPT,
    COMM_SUCCESS,
)

log = logging.getLogger(__name__)

# What a vanished USB adapter raises from inside the SDK (pyserial, the OS, tcflush).
PORT_ERRORS: tuple[type[BaseException], ...] = (serial.SerialException, OSError, termios.error)


class LatencyPortHandler(PortHandler):
    def __init__(self, port_name: str, latency_timer_ms: float) -> None:
        super().__init__(port_name)
        self.latency_timer_ms = latency_timer_ms

    def setPacketTimeout(self, packet_length: int) -> None:
        self.packet_start_time = self.getCurrentTime()
        self.packet_timeout = (self.tx_time_per_byte * packet_length
                               + 2.0 * self.latency_timer_ms + 2.0)

    def readPort(self, length: int) -> bytes:
        """Sleeps in select() until bytes arrive (at most 1 ms at a time) instead of the SDK's
        busy poll, which holds a core the servo side (or the rest of the robot) may need."""
        if not self.ser.in_waiting:
            remaining_ms = self.packet_timeout - self.getTimeSinceStart()
            if remaining_ms > 0:
                select.select([self.ser.fileno()], [], [], min(remaining_ms, 1.0) / 1000.0)
        return self.ser.read(length)


def set_low_latency(port: PortHandler, latency_timer_ms: int) -> str:
    """Best effort: the serial driver's low-latency flag and an FTDI adapter's latency timer.

    Neither exists on a pty (the ioctl raises) or on every adapter; returns what was done."""
    done = []
    try:
        port.ser.set_low_latency_mode(True)
        done.append("low-latency mode")
    except (AttributeError, ValueError, NotImplementedError, *PORT_ERRORS) as err:
        log.debug("%s: no low-latency mode: %s", port.port_name, err)
    device = Path(port.port_name).resolve().name
    sysfs = Path("/sys/bus/usb-serial/devices") / device / "latency_timer"
    try:
        if sysfs.exists() and int(sysfs.read_text()) != latency_timer_ms:
            sysfs.write_text(f"{latency_timer_ms}\n")
        if sysfs.exists():
            done.append(f"latency timer {sysfs.read_text().strip()} ms")
    except OSError as err:
        log.warning("%s: cannot set the latency timer to %d ms: %s", sysfs, latency_timer_ms, err)
    return ", ".join(done) or "none"


class AlertingSyncRead(GroupSyncRead):
    """GroupSyncRead that records each servo's status error byte and the id that failed."""

    def __init__(self, port: PortHandler, ph: object, start_address: int, data_length: int) -> None:
        super().__init__(port, ph, start_address, data_length)
        self.errors: dict[int, int] = {}
        self.failed_id: int | None = None

    def rxPacket(self) -> int:
        self.last_result, self.failed_id = False, None
        if not self.data_dict:
            return COMM_NOT_AVAILABLE
        for dxl_id in self.data_dict:
            data, result, error = self.ph.readRx(self.port, dxl_id, self.data_length)
            if result != COMM_SUCCESS:
                self.failed_id = dxl_id
                return result
            self.data_dict[dxl_id], self.errors[dxl_id] = data, error
        self.last_result = True
        return COMM_SUCCESS

    def fastSyncReadRxPacket(self) -> int:
        """One packet: per servo ERR ID DATA CRC(2), in the order asked."""
        self.last_result, self.failed_id = False, None
        if not self.data_dict:
            return COMM_NOT_AVAILABLE
        block = self.data_length + 4
        expected = block * len(self.data_dict)
        raw, result, _ = self.ph.fastSyncReadRx(self.port, BROADCAST_ID, expected)
        if result != COMM_SUCCESS:
            return result
        raw = bytes(raw)
        for index, dxl_id in enumerate(self.param):
            start = index * block
            if len(raw) < start + block or raw[start + 1] != dxl_id:
                self.failed_id = dxl_id
                return COMM_RX_CORRUPT
            self.errors[dxl_id] = raw[start]
            self.data_dict[dxl_id] = raw[start + 2:start + 2 + self.data_length]
        self.last_result = True
        return COMM_SUCCESS
