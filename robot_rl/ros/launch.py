"""A runner for ROS 2 YAML launch files, so one file serves ``ros2 launch`` and ``robot-rl launch``.

Supported: ``arg``, ``let``, ``node`` (pkg, exec, name, namespace, param, remap, args, ros_args,
env, respawn, respawn_delay, output, on_exit: shutdown), ``include`` (file, arg), ``group``
(``push_ros_namespace``/``push-ros-namespace``), ``if``/``unless`` on every entity, and the
substitutions ``$(var)``, ``$(env)``, ``$(optenv)``, ``$(find-pkg-share robot_rl)``,
``$(dirname)``. Each node runs as its own process in its own process group; its output lines
are prefixed with ``[name]``. Like ros2 launch, a node that dies is reported and the launch
goes on, unless it has ``respawn: true`` (restarted) or ``on_exit: shutdown`` (all stop).
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import os
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TextIO

import yaml

from robot_rl.ros.api import install_signal_handlers, normalize_namespace

PACKAGE = "robot_rl"
STARTED_PID = re.compile(r"started with pid \[(\d+)\]")  # the runner's log line per process
DIED = re.compile(r"process \[([^\]]+)\] died \[pid")  # ... and per process that failed
# exec name -> "module:function"; other modules may add theirs. Installed console_scripts win.
EXECUTABLES: dict[str, str] = {
    "demo_talker": "robot_rl.ros.examples:talker_main",
    "demo_listener": "robot_rl.ros.examples:listener_main",
}
_TRUE, _FALSE = ("true", "1"), ("false", "0")


class LaunchError(ValueError):
    """A launch file that cannot be run; the message names the file and the entity."""


# --- description --------------------------------------------------------------------------
@dataclass(frozen=True)
class ProcessSpec:
    label: str
    cmd: tuple[str, ...]
    env: dict[str, str] = field(default_factory=dict)
    respawn: bool = False
    respawn_delay_s: float = 0.0
    shutdown_on_exit: bool = False


@dataclass(frozen=True)
class DeclaredArg:
    name: str
    default: str | None
    description: str


@dataclass
class _Scope:
    vars: dict[str, str]
    namespace: str
    file: Path


@dataclass
class LaunchDescription:
    path: Path
    processes: list[ProcessSpec]
    declared_args: list[DeclaredArg]

    @classmethod
    def load(cls, path: str | Path, args: dict[str, str] | None = None) -> LaunchDescription:
        """Evaluate ``path`` with launch arguments ``args`` into the processes to start."""
        loader = _Loader()
        scope = _Scope(vars={k: str(v) for k, v in (args or {}).items()}, namespace="/",
                       file=Path(path).resolve())
        loader.load_file(scope, top_level=True)
        labels: dict[str, int] = {}
        processes = []
        for spec in loader.processes:  # unique labels for the prefixes, as ros2 launch does
            n = labels[spec.label] = labels.get(spec.label, 0) + 1
            processes.append(spec if n == 1 else replace(spec, label=f"{spec.label}-{n}"))
        return cls(Path(path), processes, loader.declared_args)


def share_directory(package: str = PACKAGE) -> Path:
    """The directory holding ``launch/``: ament's share dir, the repository, or the install."""
    if package != PACKAGE:
        raise LaunchError(f"$(find-pkg-share {package}): only {PACKAGE!r} is known here")
    try:
        from ament_index_python.packages import get_package_share_directory
        return Path(get_package_share_directory(package))
    except Exception:
        pass
    repo_root = Path(__file__).resolve().parents[2]
    for candidate in (repo_root, Path(sys.prefix) / "share" / package):
        if (candidate / "launch").is_dir():
            return candidate
    raise LaunchError(f"$(find-pkg-share {package}): no 'launch' directory in {repo_root} or "
                      f"{Path(sys.prefix) / 'share' / package}")


def _find_close(text: str, start: int) -> int:
    depth = 0
    for i in range(start, len(text)):
        if text.startswith("$(", i):
            depth += 1
        elif text[i] == ")":
            depth -= 1
            if depth == 0:
                return i
    raise LaunchError(f"unbalanced '$(' in {text!r}")


def substitute(text: str, scope: _Scope) -> str:
    out, i = [], 0
    while (start := text.find("$(", i)) >= 0:
        out.append(text[i:start])
        end = _find_close(text, start)
        out.append(_evaluate(substitute(text[start + 2:end], scope).split(), scope))
        i = end + 1
    out.append(text[i:])
    return "".join(out)


def _evaluate(words: list[str], scope: _Scope) -> str:
    kind, rest = (words[0], words[1:]) if words else ("", [])
    where = f"{scope.file}: $({' '.join(words)})"
    if kind == "var" and len(rest) == 1:
        if rest[0] not in scope.vars:
            raise LaunchError(f"{where}: launch argument {rest[0]!r} is not set (known: "
                              f"{sorted(scope.vars)})")
        return scope.vars[rest[0]]
    if kind in ("env", "optenv") and rest:
        default = " ".join(rest[1:]) if len(rest) > 1 else None
        if rest[0] in os.environ:
            return os.environ[rest[0]]
        if default is None and kind == "env":
            raise LaunchError(f"{where}: environment variable {rest[0]!r} is not set")
        return default or ""
    if kind == "find-pkg-share" and len(rest) == 1:
        return str(share_directory(rest[0]))
    if kind == "dirname" and not rest:
        return str(scope.file.parent)
    raise LaunchError(f"{where}: unsupported substitution (supported: var, env, optenv, "
                      "find-pkg-share, dirname)")


def _as_bool(value: Any, where: str) -> bool:
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise LaunchError(f"{where}: expected true/false/1/0, got {value!r}")


def _yaml_scalar(value: Any) -> Any:
    """A string parameter value is typed the way launch_ros types it: as YAML."""
    if not isinstance(value, str):
        return value
    try:
        parsed = yaml.safe_load(value)
    except yaml.YAMLError:
        return value
    return value if parsed is None or isinstance(parsed, dict) else parsed


def _deep_substitute(value: Any, scope: _Scope) -> Any:
    if isinstance(value, str):
        return substitute(value, scope)
    if isinstance(value, list):
        return [_deep_substitute(v, scope) for v in value]
    return value


def resolve_executable(pkg: str, executable: str) -> tuple[str, ...]:
    """The command that runs a robot_rl executable without relying on PATH."""
    if pkg != PACKAGE:
        raise LaunchError(f"node pkg {pkg!r}: only {PACKAGE!r} nodes can run without ROS 2")
    target = None
    for entry in importlib.metadata.entry_points(group="console_scripts"):
        dist = getattr(entry, "dist", None)
        if entry.name == executable and (dist is None or dist.name.replace("-", "_") == PACKAGE):
            target = entry.value
            break
    target = target or EXECUTABLES.get(executable)
    if target is None:
        raise LaunchError(f"node exec {executable!r}: not a console script of {PACKAGE} nor in "
                          f"robot_rl.ros.launch.EXECUTABLES (known: {sorted(EXECUTABLES)})")
    module, _, func = target.partition(":")
    code = f"import sys, {module} as _m; sys.exit(_m.{func or 'main'}())"
    return (sys.executable, "-c", code)


class _Loader:
    def __init__(self) -> None:
        self.processes: list[ProcessSpec] = []
        self.declared_args: list[DeclaredArg] = []

    def load_file(self, scope: _Scope, top_level: bool = False) -> None:
        try:
            tree = yaml.safe_load(scope.file.read_text(encoding="utf-8"))
        except OSError as exc:
            raise LaunchError(f"launch file {scope.file}: cannot read ({exc.strerror})") from exc
        except yaml.YAMLError as exc:
            raise LaunchError(f"launch file {scope.file}: invalid YAML ({exc})") from exc
        if not isinstance(tree, dict) or not isinstance(tree.get("launch"), list):
            raise LaunchError(f"launch file {scope.file}: expected a top-level 'launch:' list")
        self._entities(tree["launch"], scope, top_level)

    def _entities(self, entities: list[Any], scope: _Scope, top_level: bool = False) -> None:
        for index, entity in enumerate(entities):
            if not isinstance(entity, dict) or len(entity) != 1:
                raise LaunchError(f"{scope.file}: launch entry {index} must be a mapping with one "
                                  f"key (arg, let, node, include, group), got {entity!r}")
            (kind, body), = entity.items()
            where = f"{scope.file}: {kind} (entry {index})"
            handler: Callable[..., None] | None = {
                "arg": self._arg, "let": self._let, "node": self._node, "include": self._include,
                "group": self._group, "push_ros_namespace": self._push,
                "push-ros-namespace": self._push,
            }.get(kind)
            if handler is None:
                raise LaunchError(f"{where}: unsupported entity {kind!r}")
            attrs = body if isinstance(body, dict) else {}
            if not self._condition(attrs, scope, where):
                continue
            try:
                if kind == "arg":
                    self._arg(attrs, scope, where, top_level)
                else:
                    handler(body, scope, where)
            except LaunchError as exc:
                if str(scope.file) in str(exc):
                    raise
                raise LaunchError(f"{where}: {exc}") from None

    def _condition(self, attrs: dict[str, Any], scope: _Scope, where: str) -> bool:
        if "if" in attrs and not _as_bool(substitute(str(attrs["if"]), scope), f"{where} if"):
            return False
        if "unless" in attrs:
            return not _as_bool(substitute(str(attrs["unless"]), scope), f"{where} unless")
        return True

    def _required(self, attrs: dict[str, Any], key: str, where: str) -> Any:
        if key not in attrs:
            raise LaunchError(f"{where}: missing required key {key!r}")
        return attrs[key]

    def _arg(self, attrs: dict[str, Any], scope: _Scope, where: str, top_level: bool) -> None:
        name = str(self._required(attrs, "name", where))
        default = attrs.get("default")
        default = None if default is None else substitute(str(default), scope)
        if top_level:
            self.declared_args.append(DeclaredArg(name, default, str(attrs.get("description",
                                                                                 ""))))
        if name not in scope.vars:
            if default is None:
                raise LaunchError(f"{where}: launch argument {name!r} is required (no default); "
                                  f"pass {name}:=<value>")
            scope.vars[name] = default

    def _let(self, attrs: dict[str, Any], scope: _Scope, where: str) -> None:
        name = str(self._required(attrs, "name", where))
        scope.vars[name] = substitute(str(self._required(attrs, "value", where)), scope)

    def _push(self, attrs: dict[str, Any], scope: _Scope, where: str) -> None:
        ns = substitute(str(self._required(attrs, "namespace", where)), scope)
        scope.namespace = _join_namespace(scope.namespace, ns)

    def _group(self, body: Any, scope: _Scope, where: str) -> None:
        children = body.get("children", []) if isinstance(body, dict) else body
        if not isinstance(children, list):
            raise LaunchError(f"{where}: expected a list of entities")
        scoped = not isinstance(body, dict) or _as_bool(body.get("scoped", "true"), where)
        inner = _Scope(dict(scope.vars), scope.namespace, scope.file) if scoped else scope
        self._entities(children, inner)

    def _include(self, attrs: dict[str, Any], scope: _Scope, where: str) -> None:
        path = Path(substitute(str(self._required(attrs, "file", where)), scope))
        if not path.is_absolute():
            path = scope.file.parent / path
        child_vars = dict(scope.vars)
        for item in attrs.get("arg", []) or []:
            if not isinstance(item, dict) or "name" not in item or "value" not in item:
                raise LaunchError(f"{where}: each arg needs 'name' and 'value', got {item!r}")
            child_vars[str(item["name"])] = substitute(str(item["value"]), scope)
        self.load_file(_Scope(child_vars, scope.namespace, path.resolve()))

    def _node(self, attrs: dict[str, Any], scope: _Scope, where: str) -> None:
        if not isinstance(attrs, dict):
            raise LaunchError(f"{where}: expected a mapping")
        sub = lambda key, default="": substitute(str(attrs.get(key, default)), scope)  # noqa: E731
        pkg = substitute(str(self._required(attrs, "pkg", where)), scope)
        executable = substitute(str(self._required(attrs, "exec", where)), scope)
        name = sub("name") or None
        cmd = list(resolve_executable(pkg, executable)) + shlex.split(sub("args"))
        ros_args: list[str] = []
        if name:
            ros_args += ["-r", f"__node:={name}"]
        namespace = _join_namespace(scope.namespace, sub("namespace"))
        if namespace != "/":
            ros_args += ["-r", f"__ns:={namespace}"]
        for item in attrs.get("param", []) or []:
            ros_args += self._param(item, scope, where)
        for item in attrs.get("remap", []) or []:
            if not isinstance(item, dict) or "from" not in item or "to" not in item:
                raise LaunchError(f"{where}: each remap needs 'from' and 'to', got {item!r}")
            ros_args += ["-r", f"{substitute(str(item['from']), scope)}:="
                               f"{substitute(str(item['to']), scope)}"]
        ros_args += shlex.split(sub("ros_args"))
        env = {str(e["name"]): substitute(str(e["value"]), scope) for e in attrs.get("env", [])}
        on_exit = sub("on_exit")
        if on_exit not in ("", "shutdown"):
            raise LaunchError(f"{where}: on_exit {on_exit!r}: only 'shutdown' is supported")
        self.processes.append(ProcessSpec(
            label=name or executable,
            cmd=tuple(cmd + (["--ros-args", *ros_args] if ros_args else [])),
            env=env,
            respawn=_as_bool(sub("respawn", "false"), f"{where} respawn"),
            respawn_delay_s=_float(sub("respawn_delay", "0"), f"{where} respawn_delay"),
            shutdown_on_exit=on_exit == "shutdown",
        ))

    def _param(self, item: Any, scope: _Scope, where: str) -> list[str]:
        if isinstance(item, dict) and "from" in item:
            path = Path(substitute(str(item["from"]), scope))
            return ["--params-file", str(path if path.is_absolute() else scope.file.parent / path)]
        if not isinstance(item, dict) or "name" not in item or "value" not in item:
            raise LaunchError(f"{where}: each param needs 'name' and 'value' or 'from', "
                              f"got {item!r}")
        value = _deep_substitute(item["value"], scope)
        value = [_yaml_scalar(v) for v in value] if isinstance(value, list) else _yaml_scalar(value)
        text = yaml.safe_dump(value, default_flow_style=True, width=1 << 30)
        text = text.strip().removesuffix("...").strip()
        return ["-p", f"{substitute(str(item['name']), scope)}:={text}"]


def _float(text: str, where: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise LaunchError(f"{where}: expected a number, got {text!r}") from None


def _join_namespace(base: str, ns: str) -> str:
    if not ns:
        return normalize_namespace(base)
    if ns.startswith("/"):
        return normalize_namespace(ns)
    return normalize_namespace(f"{base.rstrip('/')}/{ns}")


# --- running ------------------------------------------------------------------------------
class _Running:
    def __init__(self, spec: ProcessSpec, env: dict[str, str], out: TextIO,
                 out_lock: threading.Lock) -> None:
        self.spec = spec
        self.proc = subprocess.Popen(
            spec.cmd, env={**env, **spec.env}, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
        )
        self._thread = threading.Thread(target=self._pump, args=(out, out_lock), daemon=True)
        self._thread.start()

    def _pump(self, out: TextIO, lock: threading.Lock) -> None:
        assert self.proc.stdout is not None
        for raw in iter(self.proc.stdout.readline, b""):
            line = raw.decode("utf-8", errors="replace").rstrip("\n")
            with lock:
                out.write(f"[{self.spec.label}] {line}\n")
                out.flush()
        self.proc.stdout.close()

    def signal_group(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, sig)

    def join_output(self) -> None:
        self._thread.join(timeout=1.0)


class LaunchRunner:
    """Starts the processes of a LaunchDescription and supervises them until they end."""

    def __init__(self, description: LaunchDescription, out: TextIO | None = None,
                 sigint_timeout_s: float = 3.0, sigterm_timeout_s: float = 1.0) -> None:
        self.description = description
        self.out = out or sys.stdout
        self.sigint_timeout_s = sigint_timeout_s
        self.sigterm_timeout_s = sigterm_timeout_s
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._failed = False
        self._env = child_env()

    def _log(self, level: str, msg: str) -> None:
        with self._lock:
            self.out.write(f"[{level}] [launch]: {msg}\n")
            self.out.flush()

    def request_stop(self) -> None:
        self._stop.set()

    def run(self) -> int:
        running = [self._start(spec) for spec in self.description.processes]
        pending: list[tuple[float, ProcessSpec]] = []  # respawns: (due monotonic s, spec)
        try:
            while not self._stop.is_set() and (running or pending):
                self._stop.wait(0.05)
                running, pending = self._reap(running, pending)
        finally:
            self._shutdown(running)
        return 1 if self._failed else 0

    def _start(self, spec: ProcessSpec) -> _Running:
        proc = _Running(spec, self._env, self.out, self._lock)
        self._log("INFO", f"process [{spec.label}] started with pid [{proc.proc.pid}]")
        return proc

    def _reap(self, running: list[_Running], pending: list[tuple[float, ProcessSpec]]
              ) -> tuple[list[_Running], list[tuple[float, ProcessSpec]]]:
        now = time.monotonic()
        still: list[_Running] = []
        for proc in running:
            code = proc.proc.poll()
            if code is None:
                still.append(proc)
                continue
            proc.join_output()
            spec = proc.spec
            if code == 0:
                self._log("INFO", f"process [{spec.label}] finished cleanly [pid {proc.proc.pid}]")
            else:
                self._failed = True
                self._log("ERROR", f"process [{spec.label}] died [pid {proc.proc.pid}, "
                                   f"exit code {code}]")
            if spec.shutdown_on_exit:
                self._log("INFO", f"process [{spec.label}] has on_exit: shutdown; stopping all")
                self._stop.set()
            elif spec.respawn:
                self._log("INFO", f"respawning [{spec.label}] in {spec.respawn_delay_s:g} s")
                pending.append((now + spec.respawn_delay_s, spec))
        due = [spec for t, spec in pending if t <= now and not self._stop.is_set()]
        pending = [(t, spec) for t, spec in pending if t > now]
        still.extend(self._start(spec) for spec in due)
        return still, pending

    def _shutdown(self, running: list[_Running]) -> None:
        """SIGINT, then SIGTERM, then SIGKILL, each to the whole process group."""
        alive = [p for p in running if p.proc.poll() is None]
        for sig, timeout_s in ((signal.SIGINT, self.sigint_timeout_s),
                               (signal.SIGTERM, self.sigterm_timeout_s),
                               (signal.SIGKILL, 5.0)):
            if not alive:
                break
            if sig != signal.SIGINT:
                self._log("WARN", f"sending {signal.Signals(sig).name} to "
                                  f"{[p.spec.label for p in alive]}")
            for proc in alive:
                proc.signal_group(sig)
            deadline = time.monotonic() + timeout_s
            while alive and time.monotonic() < deadline:
                time.sleep(0.02)
                alive = [p for p in alive if p.proc.poll() is None]
        for proc in running:
            proc.join_output()
            code = proc.proc.poll()
            if code is not None and code not in (0, -signal.SIGINT, -signal.SIGTERM):
                self._log("INFO", f"process [{proc.spec.label}] exited with code {code}")


def started_pids(log_text: str) -> list[int]:
    """The pids of the processes a runner's log says it started (STARTED_PID lines)."""
    return [int(pid) for pid in STARTED_PID.findall(log_text)]


def died_processes(log_text: str) -> list[str]:
    """The labels of the processes a runner's log says died (non-zero exit, DIED lines)."""
    return DIED.findall(log_text)


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists (one owned by another user counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def child_env() -> dict[str, str]:
    """Children import robot_rl from wherever this process does, and print unbuffered."""
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parents[2])
    paths = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    env["PYTHONPATH"] = os.pathsep.join([root] + [p for p in paths if p != root])
    env["PYTHONUNBUFFERED"] = "1"
    return env


def run_launch(path: str | Path, args: dict[str, str] | None = None, out: TextIO | None = None,
               sigint_timeout_s: float = 3.0, sigterm_timeout_s: float = 1.0) -> int:
    """Run a launch file until its processes end or SIGINT/SIGTERM; 0 if none failed."""
    runner = LaunchRunner(LaunchDescription.load(path, args), out, sigint_timeout_s,
                          sigterm_timeout_s)
    restore = install_signal_handlers(runner.request_stop)
    try:
        return runner.run()
    finally:
        restore()


USAGE = """\
usage: robot-rl launch FILE [name:=value ...] [--show-args]
       robot-rl launch robot_rl FILE_NAME [name:=value ...]   (as `ros2 launch robot_rl FILE_NAME`)

Runs a ROS 2 YAML launch file without ROS 2: every node a separate process on Cyclone DDS, its
output prefixed with [name]. Ctrl-C stops all nodes (SIGINT, then SIGTERM, then SIGKILL); a node
that dies is reported and restarted if the file says `respawn: true`; a node marked
`on_exit: shutdown` (the safety supervisor) takes the whole launch down with it.
--show-args lists the file's arguments with their defaults, e.g.
  robot-rl launch launch/valve.launch.yaml --show-args
  robot-rl launch launch/valve.launch.yaml mode:=twin pretrain_dataset:=runs/valve-demo/dataset.zarr"""


def main(argv: list[str] | None = None) -> int:
    """``robot-rl launch FILE [a:=b ...]`` (or ``robot_rl file.launch.yaml`` as ros2 launch)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        return 0 if argv else 2
    show_args = "--show-args" in argv or "-s" in argv
    positional = [a for a in argv if ":=" not in a and a not in ("--show-args", "-s")]
    args = dict(a.split(":=", 1) for a in argv if ":=" in a)
    if len(positional) == 2 and positional[0] == PACKAGE:
        positional = [str(share_directory() / "launch" / positional[1])]
    if len(positional) != 1:
        print(USAGE, file=sys.stderr)
        return 2
    try:
        if show_args:
            for arg in LaunchDescription.load(positional[0], {}).declared_args:
                print(f"'{arg.name}': {arg.description}\n    (default: {arg.default!r})")
            return 0
        return run_launch(positional[0], args)
    except LaunchError as exc:
        print(f"[ERROR] [launch]: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
