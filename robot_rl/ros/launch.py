"""A runner for ROS 2 YAML launch files, so one file serves ``ros2 launch`` and ``robot-rl launch``.

Supported: ``arg`` (name, default, description, choice), ``let``, ``node`` (pkg, exec, name,
namespace, param, remap, args, ros_args, env, respawn, respawn_delay, output, on_exit: shutdown),
``include`` (file, arg), ``group`` (scoped, children), ``push_ros_namespace``/
``push-ros-namespace``, ``if``/``unless`` on every entity, and the substitutions ``$(var)``,
``$(env)``, ``$(optenv)``, ``$(find-pkg-share robot_rl)``, ``$(dirname)``.

A file is checked whole before anything starts, as ROS 2 Jazzy's YAML frontend checks it: an
unknown attribute, a value of the wrong YAML type or a malformed boolean is an error naming the
file, the line and the known names, never a silent default. Stricter than ``ros2 launch`` where
its lenience starts the wrong graph: a command-line argument that reaches no ``arg`` of a loaded
file (``mdoe:=real``) is rejected, and so is a duplicate YAML key. Each node runs
as its own process in its own process group; its output lines are prefixed with ``[name]``. A node
that dies is reported (exit code, last lines of its output) and the launch goes on, unless it has
``respawn: "true"`` (restarted) or ``on_exit: shutdown`` (every node stops, the launch fails).
The rules and every error are listed in docs/launch.md.
"""

from __future__ import annotations

import collections
import contextlib
import difflib
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

from robot_rl.ros.api import RosNameError, install_signal_handlers, normalize_namespace

PACKAGE = "robot_rl"
CLI_MODULE = "robot_rl.cli"  # the console script that is the command-line tool, not a node
STARTED_PID = re.compile(r"started with pid \[(\d+)\]")  # the runner's log line per process
DIED = re.compile(r"process \[([^\]]+)\] died \[pid")  # ... and per process that failed
TAIL_LINES = 10  # lines of a dead node's output repeated in the runner's report of its death
TRUE_WORDS, FALSE_WORDS = ("true", "1"), ("false", "0")  # Jazzy's conditions, any case

# --- what a launch file may say -------------------------------------------------------------
# Attribute types as Jazzy's YAML frontend checks them (launch_yaml's Entity.get_attr):
#   str      a YAML string: a bare true, 1 or 2.5 fails `ros2 launch` ("expected str")
#   float    a YAML float, at least 0: a bare 1 fails `ros2 launch` too
#   bool     a YAML boolean (Jazzy would take any string here as true)
#   value    a parameter value: a scalar, or a list of scalars of one type (strings may mix in)
#   children a list of entities
# any other type names a list of the _ITEMS of that name. Jazzy rejects a key its parser does not
# read (launch.frontend.expose_action: assert_entity_completely_parsed); so does this runner.
_CONDITIONS = {"if": "str", "unless": "str"}
ENTITIES: dict[str, dict[str, str]] = {
    "arg": {"name": "str", "default": "str", "description": "str", "choice": "choice"},
    "let": {"name": "str", "value": "str"},
    "node": {"pkg": "str", "exec": "str", "name": "str", "namespace": "str", "param": "param",
             "remap": "remap", "args": "str", "ros_args": "str", "env": "env", "respawn": "str",
             "respawn_delay": "float", "output": "str", "on_exit": "str"},
    "include": {"file": "str", "arg": "include arg"},
    "group": {"scoped": "bool", "children": "children"},
    "push_ros_namespace": {"namespace": "str"},
    "push-ros-namespace": {"namespace": "str"},
}
_ITEMS: dict[str, dict[str, str]] = {
    "param": {"name": "str", "value": "value", "from": "str"},
    "remap": {"from": "str", "to": "str"},
    "env": {"name": "str", "value": "str"},
    "include arg": {"name": "str", "value": "str"},
    "choice": {"value": "str"},
}
_REQUIRED: dict[str, tuple[str, ...]] = {
    "arg": ("name",), "let": ("name", "value"), "node": ("pkg", "exec"), "include": ("file",),
    "group": ("children",), "push_ros_namespace": ("namespace",),
    "push-ros-namespace": ("namespace",), "remap": ("from", "to"), "env": ("name", "value"),
    "include arg": ("name", "value"), "choice": ("value",),
}
# Valid for `ros2 launch` but not run here: rejected with that reason rather than ignored.
_NOT_RUN_HERE: dict[str, tuple[str, ...]] = {
    "node": ("cwd", "launch-prefix", "respawn_max_retries", "sigterm_timeout", "sigkill_timeout",
             "shell", "emulate_tty", "node-name", "exec_name"),
    "group": ("forwarding", "keep"),
    "param": ("type", "param", "allow_substs"),
}


class LaunchError(ValueError):
    """A launch file that cannot be run; the message names the file, the line and the entity."""

    def __init__(self, message: str, located: bool = False) -> None:
        super().__init__(message)
        self.located = located  # the message already says where (file:line: entity)


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
    given: set[str] = field(default_factory=set)  # vars whose value is the command line's


@dataclass
class LaunchDescription:
    path: Path
    processes: list[ProcessSpec]
    declared_args: list[DeclaredArg]

    @classmethod
    def load(cls, path: str | Path, args: dict[str, str] | None = None) -> LaunchDescription:
        """Evaluate ``path`` with launch arguments ``args`` into the processes to start.

        Every argument in ``args`` must reach an ``arg`` of a file this launch loads (not
        overridden on the way by an include's ``arg`` or a ``let``): ``ros2 launch`` ignores one
        that does not, so ``mdoe:=real`` would start the default mode.
        """
        args = {k: str(v) for k, v in (args or {}).items()}
        loader = _Loader()
        scope = _Scope(vars=dict(args), namespace="/", file=Path(path).resolve(), given=set(args))
        loader.load_file(scope, top_level=True)
        for name in args:
            loader.check_used(name, scope.file)
        labels: dict[str, int] = {}
        processes = []
        for spec in loader.processes:  # unique labels for the prefixes, as ros2 launch does
            n = labels[spec.label] = labels.get(spec.label, 0) + 1
            processes.append(spec if n == 1 else replace(spec, label=f"{spec.label}-{n}"))
        return cls(Path(path), processes, loader.declared_args)


def _did_you_mean(word: str, known: Any) -> str:
    close = difflib.get_close_matches(str(word), [str(k) for k in known], n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


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


# --- reading: YAML with lines, then the whole file's structure -------------------------------
class _Mapping(dict):
    """A YAML mapping that knows the line it starts on (1-based), for error messages."""

    line = 0


class _LineLoader(yaml.SafeLoader):
    """PyYAML's safe loader whose mappings are _Mappings and refuse duplicate keys (PyYAML keeps
    the last silently: a second ``if:`` or ``name:`` would replace the first unseen)."""


def _construct_mapping(loader: _LineLoader, node: yaml.MappingNode) -> Any:
    data = _Mapping()
    data.line = node.start_mark.line + 1
    yield data
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        if isinstance(key_node, yaml.ScalarNode) and key_node.value != "<<":
            key = loader.construct_object(key_node)
            if key in seen:
                raise LaunchError(f"line {key_node.start_mark.line + 1}: duplicate key {key!r} "
                                  f"(first on line {seen[key]})")
            seen[key] = key_node.start_mark.line + 1
    data.update(loader.construct_mapping(node))


_LineLoader.add_constructor("tag:yaml.org,2002:map", _construct_mapping)


def _read(file: Path) -> list[Any]:
    """The entities of a launch file, its YAML and structure checked."""
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise LaunchError(f"launch file {file}: cannot read ({exc.strerror})", True) from exc
    try:
        tree = yaml.load(text, Loader=_LineLoader)  # a SafeLoader: no object construction
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        what = "; ".join(filter(None, (getattr(exc, "context", None),
                                       getattr(exc, "problem", None)))) or str(exc)
        where = f"{file}:{mark.line + 1}" if mark else f"launch file {file}"
        raise LaunchError(f"{where}: invalid YAML ({what})".replace("\n", " "), True) from None
    except LaunchError as exc:
        raise LaunchError(f"{file}: {exc}", True) from None
    if not isinstance(tree, dict) or list(tree) != ["launch"] or not isinstance(tree["launch"],
                                                                                 list):
        raise LaunchError(f"launch file {file}: expected one top-level key, 'launch:', holding a "
                          f"list of entities", True)
    _check_entities(tree["launch"], file)
    return tree["launch"]


def _split(entity: Any, index: int, file: Path) -> tuple[str, Any, str]:
    """(kind, body, where) of one entry of an entity list."""
    if not isinstance(entity, dict) or len(entity) != 1:
        raise LaunchError(f"{file}: launch entry {index} must be a mapping with one key "
                          f"({', '.join(ENTITIES)}), got {entity!r}", True)
    (kind, body), = entity.items()
    where = f"{file}:{getattr(entity, 'line', '?')}: {kind}"
    if isinstance(body, dict) and isinstance(body.get("name"), str):
        where += f" {body['name']!r}"
    if kind not in ENTITIES:
        raise LaunchError(f"{where}: unsupported entity{_did_you_mean(kind, ENTITIES)} "
                          f"(supported: {', '.join(ENTITIES)})", True)
    return kind, body, where


def _check_entities(entities: list[Any], file: Path) -> None:
    """Jazzy's parse step: every entity, also those under a false condition, checked before
    anything runs (includes are read when they are reached, as in ros2 launch)."""
    for index, entity in enumerate(entities):
        kind, body, where = _split(entity, index, file)
        if kind == "group" and isinstance(body, list):
            _check_entities(body, file)
            continue
        if not isinstance(body, dict):
            raise LaunchError(f"{where}: expected a mapping of attributes, got {body!r}", True)
        _check_attrs(body, kind, where)
        if "if" in body and "unless" in body:
            raise LaunchError(f"{where}: 'if' and 'unless' cannot be used together (ros2 launch "
                              "rejects it)", True)
        if kind == "group":
            _check_entities(body["children"], file)


def _check_attrs(attrs: dict[Any, Any], kind: str, where: str) -> None:
    spec = {**ENTITIES[kind], **_CONDITIONS} if kind in ENTITIES else _ITEMS[kind]
    for key, value in attrs.items():
        if key in _NOT_RUN_HERE.get(kind, ()):
            raise LaunchError(f"{where}: {key!r} is valid for ros2 launch but robot-rl launch "
                              f"does not implement it (supported: {', '.join(spec)})", True)
        if key not in spec:
            raise LaunchError(f"{where}: unknown attribute {key!r}{_did_you_mean(key, spec)} "
                              f"(known: {', '.join(spec)})", True)
        _check_type(value, spec[key], f"{where}: {key}")
    for key in _REQUIRED.get(kind, ()):
        if key not in attrs:
            raise LaunchError(f"{where}: missing required attribute {key!r}", True)
    if kind == "param" and ("from" in attrs) == ("name" in attrs or "value" in attrs):
        raise LaunchError(f"{where}: a param has either 'name' and 'value', or 'from' (a "
                          f"parameter file), got {dict(attrs)!r}", True)
    if kind == "param" and "name" in attrs and "value" not in attrs:
        raise LaunchError(f"{where}: missing required attribute 'value'", True)


_YAML_TYPE = {str: "a string", bool: "a boolean", int: "an integer", float: "a float",
              list: "a list", type(None): "empty"}


def _type_name(value: Any) -> str:
    return _YAML_TYPE.get(type(value), "a mapping" if isinstance(value, dict) else "a value")


def _check_type(value: Any, tag: str, where: str) -> None:
    got = f"got {_type_name(value)} ({value!r})"
    if tag == "str" and not isinstance(value, str):
        raise LaunchError(f"{where}: expected a string, {got}; quote it: ros2 launch's YAML "
                          f"frontend rejects anything else here", True)
    if tag == "float" and (not isinstance(value, float) or value < 0):
        raise LaunchError(f"{where}: expected a non-negative float such as 1.0, {got}; "
                          f"ros2 launch's YAML frontend rejects an integer or a string here", True)
    if tag == "bool" and not isinstance(value, bool):
        raise LaunchError(f"{where}: expected true or false unquoted, {got}; ros2 launch "
                          f"would take any string here as true", True)
    if tag == "children" and not isinstance(value, list):
        raise LaunchError(f"{where}: expected a list of entities, {got}", True)
    if tag == "value" and not _is_param_value(value):
        raise LaunchError(f"{where}: expected a string, number, boolean or a list of them of one "
                          f"type, {got}", True)
    if tag in _ITEMS:
        if not isinstance(value, list) or not value or not all(isinstance(v, dict) for v in value):
            raise LaunchError(f"{where}: expected a non-empty list of mappings "
                              f"({', '.join(_ITEMS[tag])}), {got}", True)
        for index, item in enumerate(value):
            _check_attrs(item, tag, f"{where}[{index}] (line {getattr(item, 'line', '?')})")


def _is_param_value(value: Any) -> bool:
    """launch's is_instance_of_valid_type: a scalar, or a list whose non-strings share a type."""
    scalars = (str, int, float, bool)
    if not isinstance(value, list):
        return isinstance(value, scalars)
    types = {type(v) for v in value if not isinstance(v, str)}
    return all(isinstance(v, scalars) for v in value) and len(types) <= 1


# --- evaluating ---------------------------------------------------------------------------
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
    where = f"$({' '.join(words)})"
    if kind == "var" and len(rest) == 1:
        if rest[0] not in scope.vars:
            raise LaunchError(f"{where}: launch argument {rest[0]!r} is not set"
                              f"{_did_you_mean(rest[0], scope.vars)} (known: "
                              f"{', '.join(sorted(scope.vars)) or 'none'})")
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
    raise LaunchError(f"{where}: unsupported substitution (supported: var NAME, env NAME "
                      "[DEFAULT], optenv NAME [DEFAULT], find-pkg-share robot_rl, dirname)")


def as_bool(text: str, where: str) -> bool:
    """Jazzy's rule for conditions (evaluate_condition_expression), used for every boolean here:
    true/1 or false/0 in any case, surrounding spaces ignored; anything else is an error, not a
    false (a typo would otherwise drop a node, or keep one meant to be off)."""
    word = text.strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise LaunchError(f"{where}: expected true, false, 1 or 0 (any case), got {text!r}")


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


def node_executables() -> dict[str, str]:
    """robot_rl's node executables, ``exec`` name -> "module:function": the console_scripts of
    setup.cfg (their one home), read from the installed package's metadata; the command-line tool
    (robot_rl.cli) is not a node."""
    try:
        dist = importlib.metadata.distribution(PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        raise LaunchError(f"{PACKAGE} is not installed (pip install -e .): its node executables "
                          "are its console scripts") from None
    return {e.name: e.value for e in dist.entry_points
            if e.group == "console_scripts" and e.module != CLI_MODULE}


def resolve_executable(pkg: str, executable: str) -> tuple[str, ...]:
    """The command that runs a robot_rl executable without relying on PATH."""
    if pkg != PACKAGE:
        raise LaunchError(f"pkg {pkg!r}: only {PACKAGE!r} nodes can run without ROS 2")
    known = node_executables()
    if executable not in known:
        raise LaunchError(f"exec {executable!r}: not a node executable of {PACKAGE}"
                          f"{_did_you_mean(executable, known)} (known: {', '.join(sorted(known))})")
    module, _, func = known[executable].partition(":")
    code = f"import sys, {module} as _m; sys.exit(_m.{func or 'main'}())"
    return (sys.executable, "-c", code)


class _Loader:
    def __init__(self) -> None:
        self.processes: list[ProcessSpec] = []
        self.declared_args: list[DeclaredArg] = []  # the top-level file's, for --show-args
        self.declared_in: dict[str, list[str]] = {}  # arg name -> the files that declare it
        self.used: set[str] = set()  # command-line arguments that reached an arg

    def load_file(self, scope: _Scope, top_level: bool = False) -> None:
        entities = _read(scope.file)
        for name in _arg_names(entities):
            self.declared_in.setdefault(name, []).append(scope.file.name)
        self._entities(entities, scope, top_level)

    def check_used(self, name: str, file: Path) -> None:
        """A command-line argument that no evaluated ``arg`` received is an error."""
        if name in self.used:
            return
        where = f"{file}: launch argument {name!r}"
        if name not in self.declared_in:
            declared = sorted(self.declared_in)
            raise LaunchError(f"{where} is not declared by this file or the files it includes"
                              f"{_did_you_mean(name, declared)} (declared: "
                              f"{', '.join(declared) or 'none'}); ros2 launch would ignore it "
                              "and use the default", located=True)
        raise LaunchError(f"{where} would be ignored: {', '.join(self.declared_in[name])} "
                          "declares it, but not where it is reached with the value given here "
                          "(an include's arg or a let sets it, or its condition is false)",
                          located=True)

    def _entities(self, entities: list[Any], scope: _Scope, top_level: bool = False) -> None:
        for index, entity in enumerate(entities):
            kind, body, where = _split(entity, index, scope.file)
            handler: Callable[..., None] = {
                "arg": self._arg, "let": self._let, "node": self._node, "include": self._include,
                "group": self._group, "push_ros_namespace": self._push,
                "push-ros-namespace": self._push,
            }[kind]
            try:
                attrs = body if isinstance(body, dict) else {}
                if not self._condition(attrs, scope):
                    continue
                if kind == "arg":
                    self._arg(attrs, scope, top_level)
                else:
                    handler(body, scope)
            except LaunchError as exc:
                if exc.located and kind == "include":  # an error in the included file
                    raise LaunchError(f"{exc}; included from {where}", located=True) from None
                if exc.located:
                    raise
                raise LaunchError(f"{where}: {exc}", located=True) from None

    def _condition(self, attrs: dict[str, Any], scope: _Scope) -> bool:
        if "if" in attrs:
            return as_bool(substitute(attrs["if"], scope), f"if {attrs['if']!r}")
        if "unless" in attrs:
            return not as_bool(substitute(attrs["unless"], scope), f"unless {attrs['unless']!r}")
        return True

    def _arg(self, attrs: dict[str, Any], scope: _Scope, top_level: bool) -> None:
        name = attrs["name"]
        default = attrs.get("default")
        default = None if default is None else substitute(default, scope)
        if top_level:
            self.declared_args.append(DeclaredArg(name, default, attrs.get("description", "")))
        if name in scope.given:
            self.used.add(name)
        if name not in scope.vars:
            if default is None:
                raise LaunchError(f"launch argument {name!r} is required (no default); "
                                  f"pass {name}:=<value>")
            scope.vars[name] = default
        choices = [item["value"] for item in attrs.get("choice", [])]
        if choices and scope.vars[name] not in choices:
            raise LaunchError(f"launch argument {name}:={scope.vars[name]!r} is not one of "
                              f"{', '.join(choices)}")

    def _let(self, attrs: dict[str, Any], scope: _Scope) -> None:
        name = substitute(attrs["name"], scope)
        scope.vars[name] = substitute(attrs["value"], scope)
        scope.given.discard(name)

    def _push(self, attrs: dict[str, Any], scope: _Scope) -> None:
        scope.namespace = _join_namespace(scope.namespace, substitute(attrs["namespace"], scope))

    def _group(self, body: Any, scope: _Scope) -> None:
        children = body["children"] if isinstance(body, dict) else body
        scoped = body.get("scoped", True) if isinstance(body, dict) else True
        inner = (_Scope(dict(scope.vars), scope.namespace, scope.file, set(scope.given))
                 if scoped else scope)
        self._entities(children, inner)

    def _include(self, attrs: dict[str, Any], scope: _Scope) -> None:
        path = Path(substitute(attrs["file"], scope))
        if not path.is_absolute():
            path = scope.file.parent / path
        child_vars = dict(scope.vars)  # as ros2 launch: the includer's configurations, then these
        given = set(scope.given)
        for item in attrs.get("arg", []):
            name = substitute(item["name"], scope)
            child_vars[name] = substitute(item["value"], scope)
            given.discard(name)
        self.load_file(_Scope(child_vars, scope.namespace, path.resolve(), given))

    def _node(self, attrs: dict[str, Any], scope: _Scope) -> None:
        sub = lambda key, default="": substitute(attrs.get(key, default), scope)  # noqa: E731
        executable = sub("exec")
        name = sub("name") or None
        cmd = list(resolve_executable(sub("pkg"), executable)) + shlex.split(sub("args"))
        ros_args: list[str] = []
        if name:
            ros_args += ["-r", f"__node:={name}"]
        namespace = _join_namespace(scope.namespace, sub("namespace"))
        if namespace != "/":
            ros_args += ["-r", f"__ns:={namespace}"]
        for item in attrs.get("param", []):
            ros_args += self._param(item, scope)
        for item in attrs.get("remap", []):
            ros_args += ["-r", f"{substitute(item['from'], scope)}:={substitute(item['to'], scope)}"]
        ros_args += shlex.split(sub("ros_args"))
        env = {substitute(e["name"], scope): substitute(e["value"], scope)
               for e in attrs.get("env", [])}
        on_exit = sub("on_exit")
        if on_exit not in ("", "shutdown"):
            raise LaunchError(f"on_exit {on_exit!r}: only 'shutdown' is supported (as in ros2 "
                              "launch's YAML frontend)")
        self.processes.append(ProcessSpec(
            label=name or executable,
            cmd=tuple(cmd + (["--ros-args", *ros_args] if ros_args else [])),
            env=env,
            respawn=as_bool(sub("respawn", "false"), "respawn"),
            respawn_delay_s=attrs.get("respawn_delay", 0.0),
            shutdown_on_exit=on_exit == "shutdown",
        ))

    def _param(self, item: dict[str, Any], scope: _Scope) -> list[str]:
        if "from" in item:
            path = Path(substitute(item["from"], scope))
            return ["--params-file", str(path if path.is_absolute() else scope.file.parent / path)]
        value = _deep_substitute(item["value"], scope)
        value = [_yaml_scalar(v) for v in value] if isinstance(value, list) else _yaml_scalar(value)
        text = yaml.safe_dump(value, default_flow_style=True, width=1 << 30)
        text = text.strip().removesuffix("...").strip()
        return ["-p", f"{substitute(item['name'], scope)}:={text}"]


def _arg_names(entities: list[Any]) -> set[str]:
    """The names every ``arg`` of these entities declares, also in groups and under conditions."""
    names: set[str] = set()
    for entity in entities:
        (kind, body), = entity.items()
        if kind == "arg":
            names.add(body["name"])
        elif kind == "group":
            names |= _arg_names(body["children"] if isinstance(body, dict) else body)
    return names


def _join_namespace(base: str, ns: str) -> str:
    try:
        if not ns:
            return normalize_namespace(base)
        if ns.startswith("/"):
            return normalize_namespace(ns)
        return normalize_namespace(f"{base.rstrip('/')}/{ns}")
    except RosNameError as exc:
        raise LaunchError(str(exc)) from None


# --- running ------------------------------------------------------------------------------
class _Running:
    def __init__(self, spec: ProcessSpec, env: dict[str, str], out: TextIO,
                 out_lock: threading.Lock) -> None:
        self.spec = spec
        self.tail: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)
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
            self.tail.append(line)
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

    def _log(self, level: str, msg: str, *more: str) -> None:
        """One log line, and ``more`` lines below it, written together (no node's in between)."""
        with self._lock:
            self.out.write(f"[{level}] [launch]: {msg}\n")
            self.out.writelines(f"[{level}] [launch]:   | {line}\n" for line in more)
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
                tail = list(proc.tail)  # one copy: a grandchild may still hold the pipe open
                self._log("ERROR", _death(spec.label, proc.proc.pid, code, len(tail)), *tail)
            if spec.shutdown_on_exit:  # an essential node ended: the graph cannot go on
                self._failed = True
                self._log("ERROR", f"process [{spec.label}] has on_exit: shutdown: stopping "
                                   "every node; the launch fails")
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


def _death(label: str, pid: int, code: int, tail_lines: int) -> str:
    """The runner's report of a node that died (its output's last lines follow it)."""
    how = ""
    if code < 0:
        with contextlib.suppress(ValueError):
            how = f" ({signal.Signals(-code).name})"
    tail = f"; its last {tail_lines} lines of output:" if tail_lines else "; it printed nothing"
    return f"process [{label}] died [pid {pid}, exit code {code}{how}]{tail}"


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
that dies is reported (exit code, last lines of its output) and restarted if the file says
`respawn: "true"`; a node marked `on_exit: shutdown` (the twin, the safety node, the drivers)
takes the whole launch down with it, and the launch exits with 1. An argument that no loaded file
declares is an error (ros2 launch would ignore it). docs/launch.md lists the rules.
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
    if "" in args:
        print(f"[ERROR] [launch]: malformed launch argument ':={args['']}', expected "
              "NAME:=VALUE", file=sys.stderr)
        return 2
    if len(positional) not in (1, 2) or len(positional) == 2 and positional[0] != PACKAGE:
        print(USAGE, file=sys.stderr)
        return 2
    try:
        if len(positional) == 2:
            positional = [str(share_directory() / "launch" / positional[1])]
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
