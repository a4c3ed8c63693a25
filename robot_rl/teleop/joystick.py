"""A gamepad read directly from the Linux joystick API (``/dev/input/js*``), without ROS 2's joy node.

The device delivers 8-byte events, ``struct js_event {u32 time_ms; s16 value; u8 type; u8
number}`` in the machine's byte order; ``type`` is 0x01 (button), 0x02 (axis), or'd with 0x80 for
the synthetic events that report the state when the device is opened. Values are scaled the way
the joy node scales them, so a ``JoyMapping`` (``GAMEPAD``) means the same here and on /joy:
axis = -value / 32767 clipped to [-1, 1] (stick up/left is +1), button = 0 or 1.

Safety choices: the state the device reports when it is opened is ignored, as the joy node does
for axes (some drivers report a wrong value there): an axis reads 0 and a button reads released
until it really changes, so a stick or button held while the pad is plugged in moves nothing.
The device only sends changes, so while it is open a held stick stays current; once it is gone
(unplugged: ENODEV; a FIFO with no writer: end of file) the axes stop being refreshed and
``JoyTeleop``'s timeout zeroes the velocities. A failed device is reopened every
``reopen_period_s``; a FIFO stays open, and a new writer brings it back.
"""

from __future__ import annotations

import errno
import os
import struct
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from robot_rl.teleop.core import TeleopInput
from robot_rl.teleop.joy import JoyMapping, JoyTeleop

JS_EVENT = struct.Struct("=IhBB")  # native byte order, standard sizes: 8 bytes
JS_EVENT_BUTTON = 0x01
JS_EVENT_AXIS = 0x02
JS_EVENT_INIT = 0x80
AXIS_FULL_SCALE = 32767
READ_CHUNK_EVENTS = 64


@dataclass(frozen=True)
class JsEvent:
    time_ms: int
    value: int
    type: int
    number: int

    @property
    def is_init(self) -> bool:
        return bool(self.type & JS_EVENT_INIT)

    @property
    def kind(self) -> int:
        """JS_EVENT_BUTTON, JS_EVENT_AXIS, or something else (ignored)."""
        return self.type & ~JS_EVENT_INIT


def pack_event(value: int, kind: int, number: int, time_ms: int = 0, init: bool = False) -> bytes:
    """The bytes the kernel sends for one event (emulators and tests write these)."""
    return JS_EVENT.pack(time_ms & 0xFFFFFFFF, value, kind | (JS_EVENT_INIT if init else 0),
                         number)


def decode_events(buffer: bytes) -> tuple[list[JsEvent], bytes]:
    """The whole events in ``buffer`` and the bytes left over (a partial event)."""
    whole = len(buffer) - len(buffer) % JS_EVENT.size
    events = [JsEvent(*fields) for fields in JS_EVENT.iter_unpack(buffer[:whole])]
    return events, buffer[whole:]


def axis_value(raw: int) -> float:
    """An axis in the joy node's convention: -raw / 32767, in [-1, 1]."""
    return float(np.clip(-raw / AXIS_FULL_SCALE, -1.0, 1.0))


class JoystickState:
    """Axes and buttons as the events so far describe them; lists grow with the numbers seen."""

    def __init__(self) -> None:
        self.axes: list[float] = []
        self.buttons: list[int] = []

    def apply(self, event: JsEvent) -> bool:
        """Applies one event; True if it changed a button (so edges can be seen one by one).
        The state reported at open only sizes the lists (see the module notes)."""
        if event.kind == JS_EVENT_AXIS:
            _grow(self.axes, event.number, 0.0)
            if not event.is_init:
                self.axes[event.number] = axis_value(event.value)
        elif event.kind == JS_EVENT_BUTTON:
            _grow(self.buttons, event.number, 0)
            if event.is_init:
                return False
            pressed = 1 if event.value else 0
            changed = self.buttons[event.number] != pressed
            self.buttons[event.number] = pressed
            return changed
        return False

    def clear(self) -> None:
        self.axes = [0.0] * len(self.axes)
        self.buttons = [0] * len(self.buttons)


def _grow(values: list, index: int, fill: float | int) -> None:
    if len(values) <= index:
        values.extend([fill] * (index + 1 - len(values)))


class JoystickDevice:
    """Non-blocking reads of a joystick device file (or a FIFO fed with the same events)."""

    def __init__(self, path: str | os.PathLike[str], reopen_period_s: float = 1.0) -> None:
        if reopen_period_s < 0:
            raise ValueError(f"JoystickDevice: reopen_period_s must be >= 0, got "
                             f"{reopen_period_s}")
        self.path = os.fspath(path)
        self.reopen_period_s = float(reopen_period_s)
        self.problem = "not opened yet"
        self._fd: int | None = None
        self._eof = False
        self._partial = b""
        self._next_open_s = -float("inf")

    @property
    def connected(self) -> bool:
        """Open, and (for a FIFO) something is writing."""
        return self._fd is not None and not self._eof

    def read(self, now_s: float) -> list[JsEvent]:
        """The events that arrived since the last call (opening the device when it is due)."""
        if self._fd is None and now_s >= self._next_open_s:
            self._open(now_s)
        if self._fd is None:
            return []
        chunks = []
        while True:
            try:
                data = os.read(self._fd, JS_EVENT.size * READ_CHUNK_EVENTS)
            except BlockingIOError:
                break
            except OSError as err:  # ENODEV: unplugged
                self._lose(now_s, f"{self.path}: {os.strerror(err.errno or errno.EIO)}")
                break
            if not data:  # a FIFO without a writer; the fd stays good for the next one
                self._eof, self.problem = True, f"{self.path}: end of file (nothing writes)"
                break
            self._eof, self.problem = False, ""
            chunks.append(data)
        events, self._partial = decode_events(self._partial + b"".join(chunks))
        return events

    def _open(self, now_s: float) -> None:
        try:
            self._fd = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK)
        except PermissionError as err:
            self._lose(now_s, f"cannot open {self.path}: {err.strerror} (is the user in the "
                              "'input' group?)")
        except OSError as err:
            self._lose(now_s, f"cannot open {self.path}: {err.strerror}")
        else:
            self.problem, self._partial, self._eof = "", b"", False

    def _lose(self, now_s: float, problem: str) -> None:
        self.close()
        self.problem = problem
        self._next_open_s = now_s + self.reopen_period_s

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        self.problem = "closed"


class JoystickTeleop:
    """Joystick events into the ``TeleopInput``s the Joy path (``JoyTeleop``) produces."""

    def __init__(self, joint_names: Sequence[str], mapping: JoyMapping, speed_rad_s: float,
                 timeout_s: float = 0.5, device: JoystickDevice | str | None = None,
                 synergies: Mapping[str, np.ndarray] | None = None) -> None:
        self.joy = JoyTeleop(joint_names, mapping, speed_rad_s, timeout_s, synergies)
        self.state = JoystickState()
        self.device = (JoystickDevice(device) if isinstance(device, str) else device)

    def poll(self, now_s: float) -> TeleopInput | None:
        """Reads the device; the actions of the buttons pressed since the last poll."""
        if self.device is None:
            raise ValueError("JoystickTeleop.poll: no device (use feed)")
        was_connected = self.device.connected
        events = self.device.read(now_s)
        if was_connected and not self.device.connected:
            self.state.clear()  # the reopened device reports its state again
        return self.feed(events, now_s, alive=self.device.connected)

    def feed(self, events: Iterable[JsEvent], now_s: float, alive: bool = True
             ) -> TeleopInput | None:
        """Applies events in order: a press and release between two polls still counts."""
        actions: list[str] = []
        for event in events:
            if self.state.apply(event):
                item = self.joy.handle(self.state.axes, self.state.buttons, now_s)
                if item is not None:
                    actions.extend(item.actions)
        if alive:  # the state is current while the device is there, events or not
            self.joy.handle(self.state.axes, self.state.buttons, now_s)
        return TeleopInput(actions=tuple(actions)) if actions else None

    def velocity_rad_s(self, now_s: float) -> np.ndarray:
        return self.joy.velocity_rad_s(now_s)

    def takeover_level(self, now_s: float) -> bool | None:
        return self.joy.takeover_level(now_s)

    def close(self) -> None:
        if self.device is not None:
            self.device.close()
