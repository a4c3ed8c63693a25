"""Key presses from the controlling terminal, without waiting for Enter.

cbreak mode, not full raw mode: Ctrl-C still sends SIGINT, so a node reading keys still stops the
way every node does. Non-blocking: ``read`` returns what was typed since the last call.
"""

from __future__ import annotations

import contextlib
import os
import select
import sys
import termios
import tty
from typing import TextIO

ESCAPES = {"\x1b[A": "up", "\x1b[B": "down", "\x1b[C": "right", "\x1b[D": "left",
           "\x1bOA": "up", "\x1bOB": "down", "\x1bOC": "right", "\x1bOD": "left"}


def parse_keys(text: str) -> list[str]:
    """Characters as keys; arrow escape sequences as 'up', 'down', 'left', 'right'."""
    keys: list[str] = []
    i = 0
    while i < len(text):
        sequence = text[i:i + 3]
        if sequence in ESCAPES:
            keys.append(ESCAPES[sequence])
            i += 3
        else:
            keys.append(text[i])
            i += 1
    return keys


class TerminalKeys:
    """Reads keys from a TTY in cbreak mode; ``close`` restores the terminal."""

    def __init__(self, stream: TextIO) -> None:
        self._fd = stream.fileno()
        self._saved = termios.tcgetattr(self._fd)
        tty.setcbreak(self._fd)

    @classmethod
    def open_if_tty(cls, stream: TextIO | None = None) -> TerminalKeys | None:
        stream = sys.stdin if stream is None else stream
        try:
            return cls(stream) if stream.isatty() else None
        except (OSError, ValueError, termios.error):
            return None

    def read(self) -> list[str]:
        chunks = []
        while select.select([self._fd], [], [], 0.0)[0]:
            data = os.read(self._fd, 64)
            if not data:
                break
            chunks.append(data.decode("utf-8", errors="replace"))
        return parse_keys("".join(chunks))

    def close(self) -> None:
        with contextlib.suppress(termios.error, OSError):
            termios.tcsetattr(self._fd, termios.TCSADRAIN, self._saved)
