"""Helpers for the node-graph tests: start node processes, and a probe node that records topics."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Callable
from typing import IO, Any

from robot_rl.ros.api import Node
from robot_rl.ros.runtime import make_node


def node_cmd(module: str, *ros_args: str) -> list[str]:
    """Runs ``module.main()`` (the console script's target) with ``--ros-args``."""
    code = f"import sys, {module} as _m; sys.exit(_m.main())"
    return [sys.executable, "-c", code, *(("--ros-args", *ros_args) if ros_args else ())]


def params(**values: Any) -> list[str]:
    out: list[str] = []
    for name, value in values.items():
        text = str(value).lower() if isinstance(value, bool) else str(value)
        out += ["-p", f"{name}:={text}"]
    return out


class Probe:
    """A node in the test process: subscriptions append into ``got[key]``."""

    def __init__(self, namespace: str = "/hand", backend: str | None = None) -> None:
        self.node: Node = make_node("probe", namespace, argv=[], backend=backend)
        self.got: dict[str, list[Any]] = {}

    def listen(self, key: str, msg_type: type, topic: str, qos: Any) -> list[Any]:
        store: list[Any] = self.got.setdefault(key, [])
        self.node.create_subscription(msg_type, topic, store.append, qos)
        return store

    def spin_for(self, seconds: float, every: Callable[[], None] | None = None,
                 period_s: float = 0.02) -> None:
        self.wait_until(lambda: False, seconds, every, period_s, fail=False)

    def wait_until(self, condition: Callable[[], bool], timeout_s: float,
                   every: Callable[[], None] | None = None, period_s: float = 0.02,
                   fail: bool = True, what: str = "condition") -> float:
        """Spins until ``condition()``; calls ``every`` each ``period_s``; the time it took."""
        start = time.monotonic()
        next_call = start
        while not condition():
            now = time.monotonic()
            if now - start > timeout_s:
                if fail:
                    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
                return now - start
            if every is not None and now >= next_call:
                every()
                next_call = max(next_call + period_s, now)
            self.node.spin_once(min(0.01, period_s))
        return time.monotonic() - start

    def destroy(self) -> None:
        self.node.destroy()


def read_line_containing(stream: IO[str], text: str, max_lines: int = 20) -> str:
    """The first of the next ``max_lines`` lines of ``stream`` that contains ``text`` (a node's
    first lines say which backend it runs on, so the line a test waits for is not the first)."""
    seen = []
    for _ in range(max_lines):
        line = stream.readline()
        if text in line:
            return line
        if not line:
            break
        seen.append(line)
    raise AssertionError(f"no line containing {text!r} in:\n{''.join(seen)}")


def stop(proc: subprocess.Popen, timeout_s: float = 10.0) -> int:
    """SIGINT, then the exit code (the process must stop by itself)."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
    return proc.wait(timeout=timeout_s)
