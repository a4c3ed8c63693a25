"""Checkpoints that load with torch.load(weights_only=True).

Inside: only tensors, dicts, lists, numbers and strings. Written atomically (temp file in the same
folder, fsync, os.replace), so a crash mid-write leaves the previous checkpoint intact.

A checkpoint that cannot be used as asked (missing, not a checkpoint, another format version,
networks of another shape or task) raises :class:`CheckpointError`: one line naming the file and
what does not match, which the CLI prints as is.
"""

from __future__ import annotations

import os
import pickle
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from robot_rl.learning.awac import AWAC
from robot_rl.learning.config import config_to_dict
from robot_rl.learning.normalizer import Normalizer

FORMAT_VERSION = 1
REQUIRED_KEYS = ("obs_dim", "act_dim", "agent", "normalizer", "config", "counters")
NETWORKS = ("actor", "critic", "critic_target")
# AWAC settings that say where and how fast to run, not what the networks are: never a reason
# for a checkpoint not to fit, so not named when one does not.
RUNTIME_SETTINGS = ("device", "compile", "matmul_precision")


class CheckpointError(ValueError):
    """A checkpoint that cannot be used as asked; the message names the file."""

    def __init__(self, path: str | os.PathLike[str], problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = str(path)
        self.problem = problem


def save_checkpoint(path: str | Path, agent: AWAC, normalizer: Normalizer | None,
                    config_dict: dict[str, Any], counters: Mapping[str, int | bool], *,
                    action_mode: str, extra: dict[str, Any] | None = None) -> Path:
    """`action_mode` is how the task the agent learned on read its actions (``Task.actions.mode``),
    saved by name: a config that leaves it to the task's default would mean another mode once
    that default changes. `extra` must hold only tensors, dicts, lists, tuples, numbers,
    strings, bools or None. A pixel agent adds what rebuilds it (its view and encoder) to it."""
    path = Path(path)
    extra = {**(extra or {}), **(agent.checkpoint_extra() if hasattr(agent, "checkpoint_extra")
                                 else {})}
    payload = {
        "format_version": FORMAT_VERSION,
        "obs_dim": agent.obs_dim,
        "act_dim": agent.act_dim,
        "action_mode": action_mode,
        "agent": agent.state_dict(),
        "normalizer": None if normalizer is None else normalizer.state_dict(),
        "config": config_dict,
        "counters": {str(k): _counter(k, v) for k, v in counters.items()},
        "extra": extra,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(payload, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def checkpoint_action_mode(state: dict[str, Any]) -> str | None:
    """The action mode a loaded checkpoint's policy was trained with: saved by name, or named by
    its config's ``env_kwargs``; None for one saved before checkpoints recorded it, which trained
    on its task's default of the time."""
    mode = state.get("action_mode")
    if mode is None:
        config = state.get("config") if isinstance(state.get("config"), dict) else {}
        mode = ((config.get("env_kwargs") or {}).get("config") or {}).get("action_mode")
    return None if mode is None else str(mode)


def trained_action_mode(state: dict[str, Any], consumer: str, unnamed_mode: str | None) -> str:
    """``checkpoint_action_mode``, or ``unnamed_mode`` for a checkpoint that names none: what it
    was trained with, where ``consumer``'s default never changed (``Task.unnamed_action_mode``);
    refused (CheckpointError) where it did, since then it cannot be known."""
    trained = checkpoint_action_mode(state) or unnamed_mode
    if trained is None:
        raise CheckpointError(state.get("path", "checkpoint"), f"names no action mode (saved "
                              f"before checkpoints recorded it), and {consumer} has changed its "
                              f"default since: train it again")
    return trained


def check_checkpoint_action_mode(state: dict[str, Any], mode: str, consumer: str,
                                 unnamed_mode: str | None) -> None:
    """Refuses a checkpoint whose policy was trained with another action mode than ``mode``:
    a step read as a target (or a smaller step than it learned) commands something else."""
    trained = trained_action_mode(state, consumer, unnamed_mode)
    if trained != mode:
        raise CheckpointError(state.get("path", "checkpoint"), f"trained with {trained} actions, "
                              f"{consumer} acts with {mode} actions")


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """The saved dict: format_version, obs_dim, act_dim, agent (AWAC.state_dict), normalizer
    (Normalizer.state_dict or None), config, counters, extra; and ``path``, the file it was read
    from (not saved in it), which :func:`restore_agent` names in its errors."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(path, "no such checkpoint")
    if not path.is_file():
        raise CheckpointError(path, "is not a file (a checkpoint is a .pt file)")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # torch raises many types for foreign or truncated files
        raise CheckpointError(path, f"not a robot_rl checkpoint: torch.load cannot read it "
                                    f"({_load_failure(err)}; the file has "
                                    f"{path.stat().st_size} bytes)") from err
    version = payload.get("format_version") if isinstance(payload, dict) else None
    if version is None:
        raise CheckpointError(path, "not a robot_rl checkpoint (no format_version in it)")
    if version != FORMAT_VERSION:
        raise CheckpointError(path, f"format_version {version!r}, expected {FORMAT_VERSION}")
    missing = [k for k in REQUIRED_KEYS if k not in payload]
    if missing:
        raise CheckpointError(path, f"not a whole robot_rl checkpoint: {missing} missing")
    payload["path"] = str(path)
    return payload


def restore_agent(checkpoint: Mapping[str, Any], agent: AWAC) -> None:
    """Weights, optimiser state, target nets, RNG state and the normaliser into `agent`.

    Refused (:class:`CheckpointError`) when the checkpoint's networks are not the agent's: other
    observation or action sizes, or layers of other shapes (another network config); the error
    names the first tensor that differs and the AWAC settings the checkpoint was trained with
    that differ from the agent's."""
    where = checkpoint.get("path", "checkpoint")
    dims = (int(checkpoint["obs_dim"]), int(checkpoint["act_dim"]))
    if dims != (agent.obs_dim, agent.act_dim):
        raise CheckpointError(where, f"its networks take {dims[0]} observation values and give "
                                     f"{dims[1]} actions; this agent's take {agent.obs_dim} and "
                                     f"give {agent.act_dim} (a checkpoint of another task?)")
    mismatch = _first_mismatch(checkpoint.get("agent"), agent)
    if mismatch:
        raise CheckpointError(where, f"{mismatch}{_settings_hint(checkpoint, agent)}")
    try:
        agent.load_state_dict(checkpoint["agent"])
    except (RuntimeError, ValueError, KeyError, TypeError, IndexError) as err:
        # shapes agreed, yet e.g. the optimiser holds another parameter set (sac_learn_alpha)
        raise CheckpointError(where, f"does not load into this agent ({_load_failure(err)})"
                                     f"{_settings_hint(checkpoint, agent)}") from err
    norm = checkpoint["normalizer"]
    agent.set_normalizer(None if norm is None else Normalizer.from_state_dict(norm))


def stored_awac_settings(checkpoint: Mapping[str, Any]) -> dict[str, Any] | None:
    """The AWAC settings a checkpoint was trained with: its config's ``awac`` section (pipeline
    checkpoints), or the config itself when that is an AWAC config; None when it has neither."""
    config = checkpoint.get("config")
    if not isinstance(config, Mapping):
        return None
    awac = config.get("awac", config)
    return dict(awac) if isinstance(awac, Mapping) and "actor_hidden_sizes" in awac else None


def _first_mismatch(saved: Any, agent: AWAC) -> str:
    """'' when every network tensor of the checkpoint has the agent's name and shape, else the
    first difference in words."""
    if not isinstance(saved, Mapping):
        return "holds no agent state"
    for part in NETWORKS:
        theirs = saved.get(part)
        if not isinstance(theirs, Mapping):
            return f"holds no '{part}' network"
        ours = getattr(agent, part).state_dict()
        for name, tensor in ours.items():
            if name not in theirs:
                return f"has no {part}.{name} (this config's networks have it)"
            shape = tuple(getattr(theirs[name], "shape", ()))
            if shape != tuple(tensor.shape):
                return (f"{part}.{name} is {list(shape)} in the checkpoint, {list(tensor.shape)} "
                        f"in this config's networks")
        extra = [name for name in theirs if name not in ours]
        if extra:
            return f"has {part}.{extra[0]}, which this config's networks do not"
    return ""


def _settings_hint(checkpoint: Mapping[str, Any], agent: AWAC, most: int = 3) -> str:
    """'; trained with awac.actor_hidden_sizes [64, 64] (this config: [256, 256])' for the
    settings that differ, runtime ones left out."""
    stored = stored_awac_settings(checkpoint)
    if stored is None:
        return "; the checkpoint does not say which AWAC settings it was trained with"
    ours = _flat(config_to_dict(agent.config))
    theirs = _flat(stored)
    differ = [k for k in sorted(set(ours) | set(theirs))
              if k.split(".")[0] not in RUNTIME_SETTINGS and ours.get(k) != theirs.get(k)]
    if not differ:
        return ""
    text = ", ".join(f"awac.{k} {theirs.get(k)!r} (this config: {ours.get(k)!r})"
                     for k in differ[:most])
    more = f" and {len(differ) - most} more" if len(differ) > most else ""
    return f"; trained with {text}{more}"


def _flat(settings: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in settings.items():
        if isinstance(value, Mapping):
            flat.update(_flat(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = list(value) if isinstance(value, tuple) else value
    return flat


def _load_failure(err: BaseException) -> str:
    """Why torch could not read or load something, in one short line. An unpickling error's
    message is advice to load without weights_only (arbitrary code): its type says enough."""
    if isinstance(err, pickle.UnpicklingError):
        return type(err).__name__
    text = str(err).strip()
    head = text.splitlines()[0] if text else ""
    if len(head) > 160:
        head = head[:157] + "..."
    return f"{type(err).__name__}: {head}" if head else type(err).__name__


def _counter(key: str, value: int | bool) -> int | bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) or (hasattr(value, "__index__")):
        return int(value)
    raise TypeError(f"save_checkpoint: counter {key!r} must be an int or bool, got {value!r}")
