"""Making nodes and running them as console-script mains, with ROS 2's command-line arguments.

``ros2 run`` and ``ros2 launch`` start a node as ``exe [args] --ros-args -r __ns:=/ns
-r __node:=name -r from:=to -p name:=value --params-file file.yaml``; ``parse_ros_args`` reads
exactly that, so the same mains run under ROS 2 and under ``robot-rl launch``.
"""

from __future__ import annotations

import atexit
import contextlib
import faulthandler
import gc
import os
import re
import sys
import threading
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import yaml

from robot_rl.ros.api import (
    LOG_LEVELS,
    Logger,
    Node,
    NodeOptions,
    ParameterValue,
    logger_name,
    normalize_namespace,
)

BACKENDS = ("rclpy", "dds")
_IGNORED_FLAGS = ("--disable-rosout-logs", "--enable-rosout-logs", "--disable-stdout-logs",
                  "--enable-stdout-logs", "--disable-external-lib-logs",
                  "--enable-external-lib-logs")


class RosArgsError(ValueError):
    """Malformed ``--ros-args``."""


@dataclass(frozen=True)
class RosArgs:
    remaps: tuple[tuple[str, str], ...] = ()
    params: tuple[tuple[str, ParameterValue], ...] = ()
    params_files: tuple[str, ...] = ()
    log_level: str = "info"
    user_args: tuple[str, ...] = field(default=())  # everything outside --ros-args


def _split_assignment(text: str, flag: str) -> tuple[str, str]:
    name, sep, value = text.partition(":=")
    if not sep or not name:
        raise RosArgsError(f"--ros-args {flag} {text!r}: expected 'name:=value'")
    return name, value


def parse_param_value(text: str) -> ParameterValue:
    """A ``-p`` value is YAML, as in rcl: ``1`` int, ``1.0`` float, ``true`` bool, ``[a, b]``."""
    try:
        value = yaml.safe_load(text) if text.strip() else ""
    except yaml.YAMLError:
        return text
    return text if value is None or isinstance(value, dict) else value


def parse_ros_args(argv: list[str] | tuple[str, ...]) -> RosArgs:
    remaps: list[tuple[str, str]] = []
    params: list[tuple[str, ParameterValue]] = []
    files: list[str] = []
    user: list[str] = []
    log_level = "info"
    in_ros, i = False, 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--ros-args":
            in_ros, i = True, i + 1
            continue
        if not in_ros:
            user.append(arg)
            i += 1
            continue
        if arg == "--":
            in_ros, i = False, i + 1
            continue
        if arg in _IGNORED_FLAGS:
            i += 1
            continue
        if arg not in ("-r", "--remap", "-p", "--param", "--params-file", "--log-level"):
            raise RosArgsError(f"--ros-args: unknown argument {arg!r} (supported: -r, -p, "
                               "--params-file, --log-level)")
        if i + 1 >= len(argv):
            raise RosArgsError(f"--ros-args {arg}: missing value")
        value = argv[i + 1]
        if arg in ("-r", "--remap"):
            remaps.append(_split_assignment(value, arg))
        elif arg in ("-p", "--param"):
            name, text = _split_assignment(value, arg)
            params.append((name, parse_param_value(text)))
        elif arg == "--params-file":
            files.append(value)
        else:
            log_level = value.rpartition(":=")[2].lower()
            if log_level not in LOG_LEVELS:
                raise RosArgsError(f"--ros-args --log-level {value!r}: expected one of "
                                   f"{sorted(LOG_LEVELS)}")
        i += 2
    return RosArgs(tuple(remaps), tuple(params), tuple(files), log_level, tuple(user))


# --- parameter files ----------------------------------------------------------------------
def _flatten(params: dict[str, Any], prefix: str = "") -> dict[str, ParameterValue]:
    out: dict[str, ParameterValue] = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(_flatten(value, name + "."))
        else:
            out[name] = value
    return out


def _pattern_matches(pattern: str, fq_name: str, node_name: str) -> bool:
    if not pattern.startswith("/"):
        if "/" not in pattern:
            return pattern == node_name or re.fullmatch(
                pattern.replace("*", "[^/]*"), node_name) is not None
        pattern = "/" + pattern
    regex = re.escape(pattern).replace(r"/\*\*", "(/[^/]+)*").replace(r"\*", "[^/]*")
    return re.fullmatch(regex, fq_name) is not None


def _parameter_sections(tree: Any, path: str, where: str) -> list[tuple[str, dict[str, Any]]]:
    if not isinstance(tree, dict):
        raise RosArgsError(f"{where}: expected a mapping under {path or 'the top level'!r}")
    sections: list[tuple[str, dict[str, Any]]] = []
    for key, value in tree.items():
        if key == "ros__parameters":
            if not isinstance(value, dict):
                raise RosArgsError(f"{where}: {path}/ros__parameters must be a mapping")
            sections.append((path, value))
        else:
            key = str(key)
            child = key if key.startswith("/") or not path else f"{path}/{key}"
            sections.extend(_parameter_sections(value, child, where))
    return sections


def load_params_file(path: str, node_name: str, namespace: str) -> dict[str, ParameterValue]:
    """Parameters for this node from a ROS 2 params file (``/**:`` or ``<node>:`` sections)."""
    try:
        with open(path, encoding="utf-8") as stream:
            tree = yaml.safe_load(stream) or {}
    except OSError as exc:
        raise RosArgsError(f"--params-file {path}: cannot read ({exc.strerror})") from exc
    except yaml.YAMLError as exc:
        raise RosArgsError(f"--params-file {path}: invalid YAML ({exc})") from exc
    fq_name = f"{'' if namespace == '/' else namespace}/{node_name}"
    out: dict[str, ParameterValue] = {}
    for pattern, params in _parameter_sections(tree, "", f"--params-file {path}"):
        if _pattern_matches(pattern, fq_name, node_name):
            out.update(_flatten(params))
    return out


# --- nodes --------------------------------------------------------------------------------
def _special_remap(remaps: tuple[tuple[str, str], ...], key: str, node_name: str) -> str | None:
    found = None
    for source, target in remaps:
        prefix, sep, rest = source.partition(":")
        if source == key or sep and rest == key and prefix == node_name:
            found = target
    return found


def node_identity(name: str, namespace: str | None, ros_args: RosArgs) -> tuple[str, str]:
    """Name and namespace after ``__node``/``__ns`` remaps."""
    new_name = _special_remap(ros_args.remaps, "__node", name) or name
    new_ns = _special_remap(ros_args.remaps, "__ns", name)
    return new_name, normalize_namespace(new_ns if new_ns is not None else namespace)


def node_options(node_name: str, namespace: str, ros_args: RosArgs) -> NodeOptions:
    overrides: dict[str, ParameterValue] = {}
    for path in ros_args.params_files:
        overrides.update(load_params_file(path, node_name, namespace))
    overrides.update(dict(ros_args.params))
    return NodeOptions(ros_args.remaps, overrides, ros_args.log_level)


_EXIT_HOOKS: list[Callable[[], None]] = []  # registered with atexit by run(), once each
BACKEND_ENV = "ROBOT_RL_BACKEND"
DEFAULT_BACKEND = "dds"


def backend_name() -> str:
    """The backend every node of this process is made on: ``$ROBOT_RL_BACKEND``, else ``dds``.

    Explicit on purpose: installing or sourcing rclpy changes nothing until it is asked for
    (``ROBOT_RL_BACKEND=rclpy``, or ``backend:=rclpy`` on a launch file, which sets it for its
    nodes), so the same command runs the same graph on every machine.
    """
    choice = os.environ.get(BACKEND_ENV, "").strip().lower() or DEFAULT_BACKEND
    if choice not in BACKENDS:
        raise ValueError(f"{BACKEND_ENV}={choice!r}: expected one of {', '.join(BACKENDS)}")
    return choice


def rclpy_available() -> bool:
    """Whether ``import rclpy`` would work here (ROS 2 sourced, or robot_rl[ros] installed)."""
    try:
        import rclpy  # noqa: F401
    except ImportError:
        return False
    return True


def make_node(name: str, namespace: str | None = None, argv: list[str] | None = None,
              backend: str | None = None) -> Node:
    """A node on ``backend`` (default: ``backend_name()``), configured by ``argv``'s
    ``--ros-args`` (default sys.argv). The node's first log line names its backend."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if _help_nodes is not None:  # ``--help``: the node's parameters, no backend (see node_help)
        return _declaration_node(name, namespace, argv)
    backend = backend_name() if backend is None else backend
    if backend not in BACKENDS:
        raise ValueError(f"backend {backend!r}: expected one of {', '.join(BACKENDS)}")
    node: Node
    if backend == "rclpy":
        if not rclpy_available():
            raise RuntimeError(f"{BACKEND_ENV}=rclpy, but rclpy cannot be imported: install "
                               "robot_rl[ros] (ROS 2 Jazzy wheels) or source a ROS 2 installation")
        from robot_rl.ros.rclpy_backend import RclpyNode
        node = RclpyNode(name, namespace, argv)
    else:
        from robot_rl.ros.dds_backend import DdsNode
        ros_args = parse_ros_args(argv)
        node_name, node_ns = node_identity(name, namespace, ros_args)
        node = DdsNode(node_name, node_ns, node_options(node_name, node_ns, ros_args),
                       rosout="--disable-rosout-logs" not in argv)
    node.get_logger().info(f"backend: {node.backend_description()}")  # type: ignore[attr-defined]
    return node


def _node_of(made: Any) -> Node:
    node = made if isinstance(made, Node) else getattr(made, "node", None)
    if not isinstance(node, Node):
        raise TypeError(f"node factory returned {type(made).__name__}: expected a Node or an "
                        "object with a .node attribute")
    return node


def run(node_factory: Callable[[list[str]], Any], argv: list[str] | None = None) -> int:
    """Build a node with ``node_factory(argv)``, spin it until SIGINT/SIGTERM; the exit code.

    ``node_factory`` returns a Node or an object with a ``.node`` (and optionally ``.close()``).
    An exception is logged with the node's name and gives exit code 1; ``SystemExit`` raised by
    a callback ends the node with its code.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    if wants_help(argv):
        print(node_help(node_factory, argv))
        return 0
    if _freeze_gc_at_exit not in _EXIT_HOOKS:
        _EXIT_HOOKS.append(_freeze_gc_at_exit)
        atexit.register(_freeze_gc_at_exit)
    made: Any = None
    node: Node | None = None
    code = 0
    try:
        made = node_factory(argv)
        node = _node_of(made)
        node.spin()
    except KeyboardInterrupt:
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except Exception as exc:
        logger = node.get_logger() if node is not None else _fallback_logger(node_factory, argv)
        logger.error(f"{type(exc).__name__}: {exc}")
        traceback.print_exc(file=sys.stderr)
        code = 1
    finally:
        _close(made, node, code)
        faulthandler.cancel_dump_traceback_later()  # a caller carrying on (a test) is not ending
    return code


# ``ros2 launch`` sends SIGTERM to a node still running 5 s after Ctrl-C and reports it as died
SLOW_EXIT_REPORT_S = 3.0


def _report_a_slow_exit() -> None:
    """Once the node's owner has closed (the node's teardown, then the interpreter's exit): if
    the process still runs SLOW_EXIT_REPORT_S later, every thread's stack goes to stderr, so a
    node that hangs at shutdown says where before launch kills it."""
    # no usable stderr (a daemon's): nothing to report to
    with contextlib.suppress(RuntimeError, ValueError, OSError):
        faulthandler.dump_traceback_later(SLOW_EXIT_REPORT_S, exit=False)


def _freeze_gc_at_exit() -> None:
    """At interpreter exit, before its own collections: move every object still alive out of
    the cycle collector's reach (``gc.freeze``), so exit does not walk them.

    A node that imported torch and MuJoCo (the actor) spent 2-3 s of its exit in the garbage
    collector on a loaded 2-core machine (0.5 s with this), and ``ros2 launch`` sends SIGTERM
    to a node still running 5 s after Ctrl-C and reports it as died. By then ``run`` has
    closed the node and its owner (stores committed, files closed): nothing relies on the
    cycle collector any more. Registered with atexit, so a process that calls ``run`` and
    carries on (a test) keeps its collector until it exits too. The exit is watched as the
    teardown was (``_report_a_slow_exit``)."""
    gc.freeze()
    _report_a_slow_exit()


# --- --help -------------------------------------------------------------------------------------
HELP_FLAGS = ("-h", "--help")
# While node_help builds a node, make_node returns DeclarationNodes and records them here.
_help_nodes: list[DeclarationNode] | None = None


class _DeclarationsDone(Exception):
    """Raised by a DeclarationNode when the node it stands for starts to communicate."""


class DeclarationNode(Node):
    """A node that only declares parameters: what ``--help`` lists, with no DDS participant, no
    rclpy context, no publisher, subscription or timer. The first attempt to create one of those
    (or to spin) ends the node's construction: node constructors declare their parameters first,
    as every robot_rl node does, and what comes after them is the node starting."""

    def create_publisher(self, msg_type: type, topic: str, qos: Any = None) -> Any:
        raise _DeclarationsDone

    def create_subscription(self, msg_type: type, topic: str, callback: Any,
                            qos: Any = None) -> Any:
        raise _DeclarationsDone

    def create_timer(self, period_s: float, callback: Any) -> Any:
        raise _DeclarationsDone

    def spin_once(self, timeout_s: float = 0.0) -> None:
        raise _DeclarationsDone

    def destroy(self) -> None:
        pass

    def parameters(self) -> list[tuple[str, str, ParameterValue, str]]:
        """(name, type, value, description) in declaration order."""
        return [(name, self._parameter_types[name], value, self._descriptions[name])
                for name, value in self._parameters.items()]


def _declaration_node(name: str, namespace: str | None, argv: list[str]) -> Node:
    assert _help_nodes is not None
    ros_args = parse_ros_args(argv)
    node_name, node_ns = node_identity(name, namespace, ros_args)
    node = DeclarationNode(node_name, node_ns, node_options(node_name, node_ns, ros_args))
    _help_nodes.append(node)
    return node


def wants_help(argv: list[str]) -> bool:
    """``-h``/``--help`` among the node's own arguments (not inside ``--ros-args``)."""
    user: list[str] = []
    in_ros = False
    for arg in argv:
        if arg == "--ros-args":
            in_ros = True
        elif arg == "--" and in_ros:
            in_ros = False
        elif not in_ros:
            user.append(arg)
    return any(arg in HELP_FLAGS for arg in user)


def node_help(node_factory: Callable[[list[str]], Any], argv: list[str],
              prog: str | None = None) -> str:
    """The help of a node executable: usage, what the node is, and every parameter it declares
    (type, default, description), found by building the node on :class:`DeclarationNode` (no
    transport starts). ``--ros-args -p name:=value`` shown in the defaults' place, as the node
    would take them."""
    global _help_nodes
    _help_nodes = []
    stopped = ""
    try:
        node_factory([a for a in argv if a not in HELP_FLAGS])
    except _DeclarationsDone:
        pass
    except Exception as err:  # a node that cannot be built here still lists what it declared
        stopped = f"\n(the node stopped before declaring everything: {type(err).__name__}: " \
                  f"{str(err).splitlines()[0] if str(err) else ''})"
    finally:
        nodes, _help_nodes = _help_nodes, None
    prog = prog or os.path.basename(sys.argv[0]) or "node"
    doc = (getattr(node_factory, "__doc__", None) or "").strip()
    if doc.startswith(f"{getattr(node_factory, '__name__', '')}("):  # a dataclass's signature
        doc = ""
    lines = [f"usage: {prog} [-h] [--ros-args [-r FROM:=TO] [-p NAME:=VALUE] "
             f"[--params-file FILE] [--log-level LEVEL]]", ""]
    if doc:
        lines += [" ".join(doc.split("\n\n")[0].split()), ""]
    for node in nodes:
        params = node.parameters() if isinstance(node, DeclarationNode) else []
        lines.append(f"node {node.fully_qualified_name}: {len(params)} parameters "
                     f"(set with --ros-args -p NAME:=VALUE)")
        shown = [yaml.safe_dump(p[2], default_flow_style=True, width=1 << 30)
                 .removesuffix("\n...\n").strip() for p in params]
        width = max((len(p[0]) for p in params), default=0)
        value_width = min(24, max((len(v) for v in shown), default=0))
        for (name, type_name, _, description), value in zip(params, shown):
            lines.append(f"  {name:<{width}}  {type_name:<9} {value:<{value_width}}  "
                         f"{description}".rstrip())
    return "\n".join(lines) + stopped


def _fallback_logger(node_factory: Callable[..., Any], argv: list[str]) -> Logger:
    try:
        ros_args = parse_ros_args(argv)
        name, ns = node_identity(getattr(node_factory, "__name__", "node"), None, ros_args)
    except ValueError:
        name, ns = getattr(node_factory, "__name__", "node"), "/"
    return Logger(logger_name(ns, name))


def _close(made: Any, node: Node | None, code: int) -> None:
    close = getattr(made, "close", None) if made is not None and made is not node else None
    try:
        if callable(close):  # the owner's own work (a final checkpoint, a commit): not timed
            close()
    finally:
        _report_a_slow_exit()
        if node is not None and node.signalled:
            _destroy_within(node, TRANSPORT_TEARDOWN_LIMIT_S, code)
        elif node is not None:  # a caller that carries on (a test) waits for it
            node.destroy()


# What the node's transport (rclpy and its DDS) may take to tear down once the node's owner has
# closed: launch's 5 s after Ctrl-C, less a margin for the close itself
TRANSPORT_TEARDOWN_LIMIT_S = 3.5


def _destroy_within(node: Node, limit_s: float, code: int) -> None:
    """``node.destroy()`` of a node a signal ended (Ctrl-C, launch's shutdown), and if it has
    not returned after ``limit_s`` the process ends with ``code`` without it. By then the node's
    owner has closed (files committed, torque off): what is left is the middleware's teardown,
    where rare hangs are known upstream (Fast DDS and rclpy shutdown issues), and a node that
    ignores Ctrl-C is worse than one that skips a teardown its process exit does anyway. The
    stacks of the hang are on stderr already (``_report_a_slow_exit``)."""
    name = logger_name(node.namespace, node.name)
    timer = threading.Timer(limit_s, _end_without_teardown, (name, limit_s, code))
    timer.daemon = True
    timer.start()
    try:
        node.destroy()
    finally:
        timer.cancel()


def _end_without_teardown(logger: str, limit_s: float, code: int) -> None:
    # plain stderr: the node's logger belongs to the transport that is hanging
    sys.stderr.write(f"[ERROR] [{logger}]: the transport's teardown did not end within "
                     f"{limit_s:g} s of closing; the process ends without it\n")
    sys.stderr.flush()
    sys.stdout.flush()
    os._exit(code)
