"""Policy weights as bytes, for the POLICY topic (std_msgs/UInt8MultiArray).

The payload is a ``torch.save`` of plain tensors and numbers, read back with
``weights_only=True``: a message from the network can carry weights, never code.
"""

from __future__ import annotations

import io
from typing import Any

import torch

from robot_rl.learning.background import PolicySnapshot
from robot_rl.learning.networks import GaussianPolicy
from robot_rl.learning.normalizer import Normalizer

WEIGHTS_FORMAT = 1


class WeightsError(ValueError):
    """Bytes on the policy topic that are not policy weights this code can use."""


def snapshot_to_bytes(snapshot: PolicySnapshot, **meta: Any) -> bytes:
    """Serialise a snapshot; ``meta`` (e.g. task name) travels along as plain values."""
    policy = snapshot.policy
    payload = {
        "format": WEIGHTS_FORMAT, "version": snapshot.version,
        "obs_dim": snapshot.obs_dim, "act_dim": snapshot.act_dim,
        "hidden_sizes": list(snapshot.hidden_sizes),
        "log_std_range": [policy.log_std_lo, policy.log_std_hi],
        "policy": {k: v.detach().cpu() for k, v in policy.state_dict().items()},
        "normalizer": None if snapshot.normalizer is None else snapshot.normalizer.state_dict(),
        "meta": dict(meta),
    }
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    return buffer.getvalue()


def snapshot_from_bytes(data: bytes) -> tuple[PolicySnapshot, dict[str, Any]]:
    """(snapshot, meta) from :func:`snapshot_to_bytes` output; WeightsError if unusable."""
    try:
        payload = torch.load(io.BytesIO(bytes(data)), weights_only=True, map_location="cpu")
    except Exception as err:  # torch raises many types for foreign or truncated data
        raise WeightsError(f"policy weights ({len(data)} bytes) do not load: {err}") from err
    if not isinstance(payload, dict) or payload.get("format") != WEIGHTS_FORMAT:
        found = payload.get("format") if isinstance(payload, dict) else type(payload).__name__
        raise WeightsError(f"policy weights: format {found!r}, expected {WEIGHTS_FORMAT}")
    try:
        policy = GaussianPolicy(int(payload["obs_dim"]), int(payload["act_dim"]),
                                tuple(payload["hidden_sizes"]),
                                tuple(payload["log_std_range"]))
        policy.load_state_dict(payload["policy"])
        norm_state = payload["normalizer"]
        normalizer = None if norm_state is None else Normalizer.from_state_dict(norm_state)
    except (KeyError, RuntimeError, TypeError) as err:
        raise WeightsError(f"policy weights v{payload.get('version')}: {err}") from err
    snapshot = PolicySnapshot(policy, normalizer, int(payload["version"]),
                              tuple(payload["hidden_sizes"]))
    return snapshot, dict(payload.get("meta") or {})
