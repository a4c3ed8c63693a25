"""Checkpoints that load with torch.load(weights_only=True).

Inside: only tensors, dicts, lists, numbers and strings. Written atomically (temp file in the same
folder, fsync, os.replace), so a crash mid-write leaves the previous checkpoint intact.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from robot_rl.learning.awac import AWAC
from robot_rl.learning.normalizer import Normalizer

FORMAT_VERSION = 1


def save_checkpoint(path: str | Path, agent: AWAC, normalizer: Normalizer | None,
                    config_dict: dict[str, Any], counters: Mapping[str, int | bool],
                    extra: dict[str, Any] | None = None) -> Path:
    """`extra` must hold only tensors, dicts, lists, tuples, numbers, strings, bools or None."""
    path = Path(path)
    payload = {
        "format_version": FORMAT_VERSION,
        "obs_dim": agent.obs_dim,
        "act_dim": agent.act_dim,
        "agent": agent.state_dict(),
        "normalizer": None if normalizer is None else normalizer.state_dict(),
        "config": config_dict,
        "counters": {str(k): _counter(k, v) for k, v in counters.items()},
        "extra": extra or {},
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


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """The saved dict: format_version, obs_dim, act_dim, agent (AWAC.state_dict), normalizer
    (Normalizer.state_dict or None), config, counters, extra."""
    path = Path(path)
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as err:  # torch raises many types for foreign or truncated files
        raise ValueError(f"{path}: not a loadable robot_rl checkpoint ({err})") from err
    version = payload.get("format_version") if isinstance(payload, dict) else None
    if version != FORMAT_VERSION:
        raise ValueError(f"{path}: format_version {version!r}, expected {FORMAT_VERSION}")
    return payload


def restore_agent(checkpoint: Mapping[str, Any], agent: AWAC) -> None:
    """Weights, optimiser state, target nets, RNG state and the normaliser into `agent`."""
    agent.load_state_dict(checkpoint["agent"])
    norm = checkpoint["normalizer"]
    agent.set_normalizer(None if norm is None else Normalizer.from_state_dict(norm))


def _counter(key: str, value: int | bool) -> int | bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) or (hasattr(value, "__index__")):
        return int(value)
    raise TypeError(f"save_checkpoint: counter {key!r} must be an int or bool, got {value!r}")
