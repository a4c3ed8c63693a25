"""Writing Linux joystick events (js_event bytes) into a FIFO standing in for /dev/input/js0."""

from __future__ import annotations

import errno
import os
import time
from typing import Any

from robot_rl.teleop.joystick import JS_EVENT_AXIS, JS_EVENT_BUTTON, pack_event

A, Y, RB = 0, 3, 5           # buttons: start, end_failure, select_next
LX, LY, RY = 0, 1, 4         # axes: turn, grasp, selected joint


def axis(raw: int, number: int, **kw: Any) -> bytes:
    return pack_event(raw, JS_EVENT_AXIS, number, **kw)


def button(pressed: int, number: int, **kw: Any) -> bytes:
    return pack_event(pressed, JS_EVENT_BUTTON, number, **kw)


class Fifo:
    """The writer's end of a FIFO standing in for /dev/input/js0 (reopened if the reader left)."""

    def __init__(self, path: str) -> None:
        self.path, self.fd = path, None

    def write(self, data: bytes, timeout_s: float = 10.0) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                if self.fd is None:
                    self.fd = os.open(self.path, os.O_WRONLY | os.O_NONBLOCK)
                os.write(self.fd, data)
                return
            except OSError as err:          # ENXIO: no reader yet; EPIPE: the reader left
                if err.errno not in (errno.ENXIO, errno.EPIPE) or time.monotonic() > deadline:
                    raise
                self.close()
                time.sleep(0.02)

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
