"""Typed, frozen configs loaded from YAML, with errors that name the file, the key and what is allowed.

A config is a frozen dataclass. Validation is declared next to each field in its metadata:
``field(default=0.5, metadata={"range": (0.0, 1.0), "help": "..."})`` for numbers (inclusive bounds),
``metadata={"choices": ("min", "mean_minus_std")}`` for strings. Nested configs are nested dataclasses;
sequences are tuples. ``load_config(MyConfig, "file.yaml")`` returns a validated instance or raises
:class:`ConfigError` with one line such as::

    robot_rl/configs/demo.yaml: awac.beta: 7.0 is out of range [0.01, 5.0]
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

import yaml

T = TypeVar("T")


class ConfigError(ValueError):
    """A config file or value is wrong; the message names the file, the key and what is allowed."""


class DuplicateKeyError(yaml.YAMLError):
    """A key appears twice in one mapping (``line`` and ``first_line`` count from 1)."""

    def __init__(self, key: Any, line: int, first_line: int) -> None:
        super().__init__(f"line {line}: duplicate key {key!r} in one mapping (first on line "
                         f"{first_line}); YAML allows each key once")
        self.key, self.line, self.first_line = key, line, first_line


class UniqueKeyLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # libyaml's when built in
    """PyYAML's safe loader that refuses a key repeated in one mapping.

    YAML forbids it, but PyYAML keeps the last one silently: a second ``max_step_rad`` further
    down a calibration would replace the first without a word. Keys brought in by a merge
    (``<<: *anchor``) may still be overridden; that is what a merge is for.
    ``yaml.load(text, Loader=UniqueKeyLoader)`` for YAML read outside ``load_yaml``.
    """

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        if isinstance(node, yaml.MappingNode):
            first_line: dict[Any, int] = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=True)
                try:
                    seen = key in first_line
                except TypeError:  # an unhashable key: PyYAML's own error says so
                    continue
                line = key_node.start_mark.line + 1
                if seen:
                    raise DuplicateKeyError(key, line, first_line[key])
                first_line[key] = line
        return super().construct_mapping(node, deep=deep)


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Reads a YAML mapping; a syntax error, a duplicate key or a non-mapping top level names the
    file (and line)."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as err:
        raise ConfigError(f"{path}: cannot read: {err.strerror}") from err
    try:
        data = yaml.load(text, Loader=UniqueKeyLoader)  # a SafeLoader: no arbitrary objects
    except DuplicateKeyError as err:
        raise ConfigError(f"{path}: {err}") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(err, "problem", None) or str(err)
        raise ConfigError(f"{path}:{where}: malformed YAML: {problem}") from err
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    return data


def named_yaml(name_or_path: str | Path, folder: Path, what: str) -> Path:
    """``name`` -> folder/name.yaml (which must exist); a .yaml/.yml path is returned as is."""
    candidate = Path(name_or_path)
    if candidate.suffix in (".yaml", ".yml"):
        return candidate
    path = folder / f"{name_or_path}.yaml"
    if not path.exists():
        known = sorted(p.stem for p in folder.glob("*.yaml"))
        raise ConfigError(f"no {what} named '{name_or_path}' in {folder}; known: {known}")
    return path


def load_config(cls: type[T], path: str | Path, *, section: str | None = None) -> T:
    """Loads ``cls`` from a YAML file (optionally from one top-level section of it)."""
    data = load_yaml(path)
    prefix = ""
    if section is not None:
        if section not in data:
            raise ConfigError(f"{path}: missing section '{section}'")
        data, prefix = data[section], section
    return from_dict(cls, data, source=str(path), prefix=prefix)


def from_dict(cls: type[T], data: Any, *, source: str = "<dict>", prefix: str = "") -> T:
    """Builds and validates a config dataclass from plain data (as parsed from YAML)."""
    return _build(cls, data, source, prefix)


def replace(config: T, **changes: Any) -> T:
    """``dataclasses.replace`` that validates the changed values like a file would be."""
    merged = {**to_dict(config), **changes}
    return from_dict(type(config), merged, source="<override>")


def annotated_yaml(config: Any, comment_column: int = 44) -> str:
    """The config as YAML with every field written out, so it loads back to an equal config; each
    line commented with the field's help, what it allows, and its default where it differs."""
    lines: list[str] = []
    _annotate(config, type(config)(), 0, comment_column, lines)
    return "\n".join(lines) + "\n"


def _annotate(config: Any, default: Any, depth: int, column: int, lines: list[str]) -> None:
    for f in dataclasses.fields(config):
        value, base = getattr(config, f.name), getattr(default, f.name)
        key = "  " * depth + f"{f.name}:"
        if dataclasses.is_dataclass(value):
            lines.append(_commented(key, f.metadata.get("help") or _first_line(value), column))
            _annotate(value, base, depth + 1, column, lines)
            continue
        notes = [f.metadata["help"]] if "help" in f.metadata else []
        if "range" in f.metadata:
            notes.append("[{}, {}]".format(*f.metadata["range"]))
        if "choices" in f.metadata:
            notes.append("one of " + ", ".join(map(str, f.metadata["choices"])))
        if value != base:
            notes.append(f"default {_flow(base)}")
        lines.append(_commented(f"{key} {_flow(value)}", "; ".join(notes), column))


def _flow(value: Any) -> str:
    text = yaml.safe_dump(to_dict(value), default_flow_style=True, width=1 << 30)
    return text.removesuffix("\n...\n").strip()  # a plain scalar ends its document with '...'


def _commented(text: str, comment: str, column: int) -> str:
    return f"{text.ljust(column - 1)} # {comment}" if comment else text


def _first_line(config: Any) -> str:
    """The class docstring's first line; '' for a dataclass without one (its generated signature)."""
    cls = type(config)
    doc = (cls.__doc__ or "").strip()
    return "" if not doc or doc.startswith(f"{cls.__name__}(") else doc.splitlines()[0]


def to_dict(config: Any) -> Any:
    """Plain dicts, lists and scalars (YAML- and checkpoint-safe) from a config dataclass."""
    if dataclasses.is_dataclass(config):
        return {f.name: to_dict(getattr(config, f.name)) for f in dataclasses.fields(config)}
    if isinstance(config, (tuple, list)):
        return [to_dict(v) for v in config]
    if isinstance(config, Mapping):
        return {k: to_dict(v) for k, v in config.items()}
    return config


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Applies ``a.b.c=value`` strings (values parsed as YAML) to a nested dict, for ``--set`` flags."""
    data = {**data}
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE, e.g. awac.beta=0.3")
        node = data
        parts = key.split(".")
        for part in parts[:-1]:
            child = node.get(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"--set {item!r}: '{part}' is not a section")
            node[part] = child = {**child}
            node = child
        node[parts[-1]] = yaml.safe_load(raw)
    return data


def _build(cls: Any, data: Any, source: str, prefix: str) -> Any:
    if not isinstance(data, Mapping):
        raise ConfigError(f"{source}: {prefix or '<top>'}: expected a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    # a field marked "loader" is set by the code that loads the file, never by the file
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init and not f.metadata.get("loader")}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        key = _join(prefix, str(unknown[0]))
        raise ConfigError(f"{source}: {key}: unknown key; allowed keys: {', '.join(sorted(fields))}")
    values = {}
    for name, f in fields.items():
        key = _join(prefix, name)
        if name not in data:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise ConfigError(f"{source}: {key}: required key is missing")
            continue
        values[name] = _check_field(f, hints[name], data[name], source, key)
    try:
        return cls(**values)
    except (TypeError, ValueError) as err:
        if isinstance(err, ConfigError):
            raise
        raise ConfigError(f"{source}: {prefix or '<top>'}: {err}") from err


def _check_field(f: dataclasses.Field, hint: Any, value: Any, source: str, key: str) -> Any:
    value = _coerce(hint, value, source, key)
    meta = f.metadata
    if "range" in meta and value is not None:
        lo, hi = meta["range"]
        for v in value if isinstance(value, tuple) else (value,):
            if not lo <= v <= hi:
                raise ConfigError(f"{source}: {key}: {v!r} is out of range [{lo}, {hi}]")
    if "choices" in meta and value not in meta["choices"]:
        allowed = ", ".join(repr(c) for c in meta["choices"])
        raise ConfigError(f"{source}: {key}: {value!r} is not one of {allowed}")
    return value


def _coerce(hint: Any, value: Any, source: str, key: str) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        options = [a for a in args if a is not type(None)]
        errors = []
        for option in options:
            try:
                return _coerce(option, value, source, key)
            except ConfigError as err:
                errors.append(str(err))
        raise ConfigError(errors[0])
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, source, key)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{source}: {key}: expected a list, got {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(args[0], v, source, f"{key}[{i}]") for i, v in enumerate(value))
        if len(args) != len(value):
            raise ConfigError(f"{source}: {key}: expected {len(args)} items, got {len(value)}")
        return tuple(_coerce(a, v, source, f"{key}[{i}]") for i, (a, v) in enumerate(zip(args, value)))
    if origin in (dict, Mapping) or hint in (dict, Mapping):
        if not isinstance(value, Mapping):
            raise ConfigError(f"{source}: {key}: expected a mapping, got {value!r}")
        return dict(value)
    if origin is typing.Literal:
        if value not in args:
            raise ConfigError(f"{source}: {key}: {value!r} is not one of {', '.join(map(repr, args))}")
        return value
    return _scalar(hint, value, source, key)


def _scalar(hint: Any, value: Any, source: str, key: str) -> Any:
    if hint is Any:
        return value
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{source}: {key}: expected true or false, got {value!r}")
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"{source}: {key}: expected an integer, got {value!r}")
    if hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise ConfigError(f"{source}: {key}: expected a number, got {value!r}")
    if hint is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{source}: {key}: expected a string, got {value!r}")
    return value


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name
