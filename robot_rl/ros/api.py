"""The small Node API that robot_rl's nodes are written against, and its backend-free parts.

Both backends (``dds_backend``, ``rclpy_backend``) subclass ``Node``. Semantics follow rclpy:
callbacks and timers run on the thread that spins the node (one at a time, so node code needs
no locks), names resolve the ROS 2 way, parameters are typed by their default.
"""

from __future__ import annotations

import heapq
import itertools
import re
import signal
import sys
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from robot_rl.ros.qos import QosProfile

ParameterValue = Any  # bool | int | float | str | list[float] | list[str]
LOG_LEVELS = {"debug": 10, "info": 20, "warn": 30, "warning": 30, "error": 40, "fatal": 50}


class ParameterError(ValueError):
    """A parameter is undeclared, or its value has the wrong type."""


class RosNameError(ValueError):
    """A topic name or namespace that ROS 2 would reject."""


class SimTimeRefused(ValueError):
    """A node that must run on wall time (hardware) was started with ``use_sim_time``."""


class Publisher(Protocol):
    topic: str

    def publish(self, msg: Any) -> None: ...


class Subscription(Protocol):
    topic: str


@dataclass(frozen=True)
class NodeOptions:
    """What the command line (``--ros-args``) gives a node; see ``runtime.parse_ros_args``."""

    remaps: tuple[tuple[str, str], ...] = ()
    parameter_overrides: dict[str, ParameterValue] = field(default_factory=dict)
    log_level: str = "info"


# --- names --------------------------------------------------------------------------------
_TOKEN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _check_tokens(name: str, what: str) -> None:
    for token in name.strip("/").split("/"):
        if token and not _TOKEN.match(token):
            raise RosNameError(f"{what} {name!r}: token {token!r} must match [A-Za-z_][A-Za-z0-9_]*")
    if "//" in name:
        raise RosNameError(f"{what} {name!r}: empty token ('//')")


def normalize_namespace(namespace: str | None) -> str:
    """'' or None -> '/'; 'ns' -> '/ns'; '/a/b/' -> '/a/b'."""
    if not namespace or namespace == "/":
        return "/"
    ns = "/" + namespace.strip("/")
    _check_tokens(ns, "namespace")
    return ns


def resolve_name(name: str, namespace: str, node_name: str) -> str:
    """ROS 2 name resolution: absolute stays, ``~`` is private, relative gets the namespace."""
    if not name:
        raise RosNameError("topic name must not be empty")
    ns = normalize_namespace(namespace)
    base = "" if ns == "/" else ns
    if name.startswith("/"):
        resolved = name
    elif name == "~" or name.startswith("~/"):
        resolved = f"{base}/{node_name}{name[1:]}"
    elif name.startswith("~"):
        raise RosNameError(f"topic name {name!r}: '~' must be followed by '/'")
    else:
        resolved = f"{base}/{name}"
    resolved = resolved.rstrip("/") or "/"
    _check_tokens(resolved, "topic name")
    return resolved


def apply_remaps(resolved: str, remaps: tuple[tuple[str, str], ...], namespace: str,
                 node_name: str) -> str:
    """The first rule whose resolved ``from`` equals ``resolved`` wins (ROS 2 semantics).

    Rules may be node-specific: ``talker:chatter:=chat`` applies only to the node ``talker``.
    """
    for source, target in remaps:
        if source.startswith("__"):
            continue  # __ns / __node are handled when the node is created
        prefix, sep, rest = source.partition(":")
        if sep and not prefix.startswith(("/", "~")):
            if prefix != node_name:
                continue
            source = rest
        if resolve_name(source, namespace, node_name) == resolved:
            return resolve_name(target, namespace, node_name)
    return resolved


# --- parameters ---------------------------------------------------------------------------
def _type_name(default: ParameterValue) -> str:
    if isinstance(default, bool):
        return "bool"
    if isinstance(default, int):
        return "int"
    if isinstance(default, float):
        return "float"
    if isinstance(default, str):
        return "str"
    if isinstance(default, (list, tuple)):
        if all(isinstance(v, str) for v in default) and default:
            return "list[str]"
        if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in default):
            return "list[float]"
    raise ParameterError(f"parameter default {default!r}: expected bool, int, float, str, "
                         "list of float or list of str")


def coerce_parameter(type_name: str, value: Any, where: str) -> ParameterValue:
    """``value`` as ``type_name``; ints widen to float, anything else is a ParameterError."""
    ok = {
        "bool": isinstance(value, bool),
        "int": isinstance(value, int) and not isinstance(value, bool),
        "float": isinstance(value, (int, float)) and not isinstance(value, bool),
        "str": isinstance(value, str),
        "list[float]": isinstance(value, (list, tuple)) and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in value),
        "list[str]": isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value),
    }[type_name]
    if not ok:
        raise ParameterError(f"{where}: expected {type_name}, got {value!r} "
                             f"({type(value).__name__})")
    if type_name == "float":
        return float(value)
    if type_name == "list[float]":
        return [float(v) for v in value]
    if type_name == "list[str]":
        return list(value)
    return value


# --- logging ------------------------------------------------------------------------------
class Logger:
    """rclcpp-style lines on stderr: ``[INFO] [1700000000.123456] [ns.node]: message``."""

    def __init__(self, name: str, level: str = "info") -> None:
        if level.lower() not in LOG_LEVELS:
            raise ValueError(f"log level {level!r}: expected one of {sorted(LOG_LEVELS)}")
        self.name = name
        self._threshold = LOG_LEVELS[level.lower()]
        self._lock = threading.Lock()

    def _log(self, level: str, msg: str) -> None:
        if LOG_LEVELS[level.lower()] < self._threshold:
            return
        line = f"[{level}] [{time.time():.6f}] [{self.name}]: {msg}\n"
        with self._lock:
            sys.stderr.write(line)
            sys.stderr.flush()

    def debug(self, msg: str) -> None:
        self._log("DEBUG", msg)

    def info(self, msg: str) -> None:
        self._log("INFO", msg)

    def warning(self, msg: str) -> None:
        self._log("WARN", msg)

    warn = warning

    def error(self, msg: str) -> None:
        self._log("ERROR", msg)

    def fatal(self, msg: str) -> None:
        self._log("FATAL", msg)


def logger_name(namespace: str, node_name: str) -> str:
    ns = normalize_namespace(namespace).strip("/").replace("/", ".")
    return f"{ns}.{node_name}" if ns else node_name


# --- clocks -------------------------------------------------------------------------------
USE_SIM_TIME = "use_sim_time"  # ROS 2's standard parameter: every node has it
CLOCK_TOPIC = "/clock"         # rosgraph_msgs/Clock, published by the simulator (here: the twin)
# rclpy's TimeSource and rclcpp's ClockQoS read /clock keep-last 1, best effort, which matches any
# writer; the twin writes it reliably, which best-effort and reliable readers alike accept.
QOS_CLOCK_READER = QosProfile(reliability="best_effort", depth=1)
QOS_CLOCK_WRITER = QosProfile(depth=1)


class SimClock:
    """A node's time under ``use_sim_time``: the newest ``/clock``, 0.0 until the first arrives.

    rclpy's rule for the start: time is 0 until a clock comes, and timers wait for it (the backend
    re-bases them on the first one). Sim time never goes back within a run (the twin's clock keeps
    counting across episode resets), so a ``/clock`` older than the time already taken is ignored
    and counted: ``now_s`` doubles as the node's steady clock, whose ages must not go negative.
    """

    def __init__(self) -> None:
        self.now_s = 0.0
        self.started = False
        self.ignored_backward = 0  # /clock messages older than the time already taken

    def update(self, stamp_s: float) -> str:
        """Take one ``/clock``: 'start' (the first), 'advance', 'same' or 'backward' (ignored)."""
        if not self.started:
            self.now_s, self.started = float(stamp_s), True
            return "start"
        if stamp_s < self.now_s:
            self.ignored_backward += 1
            return "backward"
        if stamp_s == self.now_s:
            return "same"
        self.now_s = float(stamp_s)
        return "advance"


# --- timers -------------------------------------------------------------------------------
class Timer:
    """A periodic callback run by the node's executor; missed periods are skipped, not queued.

    ``clock`` is the time the period counts on: the node's steady clock (simulated time under
    ``use_sim_time``, so a period is then sim seconds) or, for wall timers, ``time.monotonic``.
    """

    def __init__(self, period_s: float, callback: Callable[[], None],
                 clock: Callable[[], float] = time.monotonic) -> None:
        if not period_s > 0.0:
            raise ValueError(f"timer period_s must be > 0, got {period_s!r}")
        self.period_s = float(period_s)
        self.callback = callback
        self.clock = clock
        self.due_s = clock() + self.period_s
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True

    def reset(self) -> None:
        self.cancelled = False
        self.due_s = self.clock() + self.period_s


class TimerQueue:
    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Timer]] = []
        self._ids = itertools.count()

    def add(self, timer: Timer) -> None:
        heapq.heappush(self._heap, (timer.due_s, next(self._ids), timer))

    def seconds_to_next(self, now_s: float) -> float | None:
        while self._heap and self._heap[0][2].cancelled:
            heapq.heappop(self._heap)
        return max(0.0, self._heap[0][0] - now_s) if self._heap else None

    def pop_due(self, now_s: float) -> list[Timer]:
        due: list[Timer] = []
        while self._heap and self._heap[0][0] <= now_s:
            _, _, timer = heapq.heappop(self._heap)
            if timer.cancelled:
                continue
            due.append(timer)
            timer.due_s += timer.period_s
            if timer.due_s <= now_s:  # fell behind: next tick one period from now
                timer.due_s = now_s + timer.period_s
            self.add(timer)
        return due

    def rebase(self, now_s: float) -> None:
        """Every timer next due one period after ``now_s`` (sim time: the first ``/clock``)."""
        timers = [timer for _, _, timer in self._heap if not timer.cancelled]
        self._heap.clear()
        for timer in timers:
            timer.due_s = now_s + timer.period_s
            self.add(timer)


# --- the Node -----------------------------------------------------------------------------
class Node(ABC):
    """A ROS 2 node: publishers, subscriptions, timers, parameters, logger and clock."""

    def __init__(self, name: str, namespace: str | None = None,
                 options: NodeOptions | None = None) -> None:
        if not _TOKEN.match(name):
            raise RosNameError(f"node name {name!r}: must match [A-Za-z_][A-Za-z0-9_]*")
        self.name = name
        self.namespace = normalize_namespace(namespace)
        self.options = options or NodeOptions()
        self._parameters: dict[str, ParameterValue] = {}
        self._parameter_types: dict[str, str] = {}
        self._descriptions: dict[str, str] = {}
        self._logger = Logger(logger_name(self.namespace, name), self.options.log_level)
        self._shutdown = threading.Event()
        self.signalled = False  # spin ended by SIGINT/SIGTERM: the process is to end
        self._sim_clock: SimClock | None = None  # set by a backend that keeps sim time itself

    @property
    def fully_qualified_name(self) -> str:
        return f"{'' if self.namespace == '/' else self.namespace}/{self.name}"

    def resolve(self, topic: str) -> str:
        """The name ``topic`` has on the wire: resolved, then remapped."""
        resolved = resolve_name(topic, self.namespace, self.name)
        return apply_remaps(resolved, self.options.remaps, self.namespace, self.name)

    # parameters
    def declare_parameter(self, name: str, default: ParameterValue,
                          description: str = "") -> ParameterValue:
        """Declare ``name`` typed by ``default``; a command-line override must have that type."""
        if name in self._parameters:
            raise ParameterError(f"node {self.fully_qualified_name}: parameter {name!r} "
                                 "declared twice")
        type_name = _type_name(default)
        value = default
        if name in self.options.parameter_overrides:
            value = self.options.parameter_overrides[name]
        where = f"node {self.fully_qualified_name}: parameter {name!r}"
        if type_name == "list[float]" and not default and isinstance(value, (list, tuple)) \
                and value and all(isinstance(v, str) for v in value):
            type_name = "list[str]"  # an empty default cannot tell the element type
        self._parameters[name] = coerce_parameter(type_name, value, where)
        self._parameter_types[name] = type_name
        self._descriptions[name] = description
        return self._parameters[name]

    def get_parameter(self, name: str) -> ParameterValue:
        if name not in self._parameters:
            raise ParameterError(f"node {self.fully_qualified_name}: parameter {name!r} is not "
                                 f"declared (declared: {sorted(self._parameters)})")
        return self._parameters[name]

    def get_logger(self) -> Logger:
        return self._logger

    # clocks (C2): both are simulated time under use_sim_time, so stamps, ages, timeouts and
    # rate limits all count sim seconds there, and wall seconds otherwise
    def now_s(self) -> float:
        """ROS time in seconds, for stamps: system time since the epoch, or the simulated time
        (the newest ``/clock``) under ``use_sim_time``."""
        clock = self._sim_clock
        return time.time() if clock is None else clock.now_s

    def steady_s(self) -> float:
        """A clock that never goes back, in seconds, for ages, freshness and timeouts: an NTP
        step of the wall clock must neither make old data fresh nor fresh data old. Monotonic
        time (``time.monotonic()``, arbitrary origin: only differences mean anything) on wall
        time; the simulated time under ``use_sim_time`` (which never goes back within a run).
        Not for stamps: those are ``now_s()``."""
        clock = self._sim_clock
        return time.monotonic() if clock is None else clock.now_s

    @property
    def uses_sim_time(self) -> bool:
        """The node's ``use_sim_time`` parameter (every ROS 2 node has it)."""
        try:
            return bool(self.get_parameter(USE_SIM_TIME))
        except ParameterError:
            return False

    def require_wall_time(self, what: str) -> None:
        """Refuse ``use_sim_time`` in a node that drives hardware: real servos and cameras run on
        wall time whatever a simulator's clock says."""
        if self.uses_sim_time:
            raise SimTimeRefused(f"node {self.fully_qualified_name}: {what} runs on wall time; "
                                 f"use_sim_time must be false here (sim time is for the twin)")

    def create_wall_timer(self, period_s: float, callback: Callable[[], None]) -> Timer:
        """A timer on wall time (``time.monotonic``) even under ``use_sim_time``, as rclcpp's
        ``create_wall_timer``: for bookkeeping that a paused simulation must not stop (status
        files, a lockstep simulator's own timeouts)."""
        raise NotImplementedError(f"{type(self).__name__}.create_wall_timer")

    # lifecycle
    def ok(self) -> bool:
        return not self._shutdown.is_set()

    def request_shutdown(self) -> None:
        """Make ``spin`` return; safe from any thread and from signal handlers."""
        self._shutdown.set()
        self._wake()

    def spin(self) -> None:
        """Run callbacks and timers until shutdown; SIGINT/SIGTERM request a clean shutdown."""
        def on_signal() -> None:
            self.signalled = True
            self.request_shutdown()

        restore = install_signal_handlers(on_signal)
        try:
            while self.ok():
                self.spin_once(0.1)
        finally:
            restore()

    @abstractmethod
    def create_publisher(self, msg_type: type, topic: str,
                         qos: QosProfile | int | None = None) -> Publisher: ...

    @abstractmethod
    def create_subscription(self, msg_type: type, topic: str, callback: Callable[[Any], None],
                            qos: QosProfile | int | None = None) -> Subscription: ...

    @abstractmethod
    def create_timer(self, period_s: float, callback: Callable[[], None]) -> Timer:
        """A timer on the node's clock: ROS time, so sim seconds under ``use_sim_time``."""

    @abstractmethod
    def spin_once(self, timeout_s: float = 0.0) -> None:
        """Wait up to ``timeout_s`` for work, then run every ready callback and due timer."""

    @abstractmethod
    def destroy(self) -> None: ...

    def _wake(self) -> None:  # noqa: B027 - optional hook, not abstract
        """Interrupt a blocking ``spin_once`` (backends override)."""


def install_signal_handlers(on_signal: Callable[[], None]) -> Callable[[], None]:
    """SIGINT and SIGTERM call ``on_signal`` (main thread only); returns the undo."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    for sig in previous:
        signal.signal(sig, lambda _signum, _frame: on_signal())

    def restore() -> None:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return restore
