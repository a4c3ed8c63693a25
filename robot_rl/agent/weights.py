"""Policy weights as bytes, for the POLICY topic (std_msgs/UInt8MultiArray).

The payload is a safetensors file (a JSON header, then raw little-endian arrays): the acting
policy's arrays as ``PolicySnapshot.arrays()`` names them (``layers.{i}.weight`` in
``torch.nn.Linear``'s (out, in) layout, ``obs_mean``, ``obs_std``, ``action_std``) and its
description as string metadata. A message from the network can carry numbers, never code; the
arrays are checked (names, shapes, finite values) before they act. A pixel task's policy adds its
image encoder's arrays (``encoder.<name>``) and, in the metadata, the view and encoder settings
that rebuild it (``PixelPolicySnapshot``). Decoding a 256x256 policy
takes about 0.5 ms of the actor's GIL, where the torch.save payload of format 1 took about 5 ms
(bench/control_loop.py prints both).
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load, save

from robot_rl.learning.background import PolicySnapshot
from robot_rl.learning.pixel_agent import PixelPolicySnapshot

WEIGHTS_FORMAT = 2


class WeightsError(ValueError):
    """Bytes on the policy topic that are not policy weights this code can use."""


def snapshot_to_bytes(snapshot: PolicySnapshot | PixelPolicySnapshot, **meta: Any) -> bytes:
    """Serialise a snapshot; ``meta`` (e.g. task name) travels along as JSON values. A pixel
    task's snapshot adds its encoder's arrays and, as ``meta["pixels"]``, its view and encoder
    settings."""
    if isinstance(snapshot, PixelPolicySnapshot):
        meta = {**meta, "pixels": snapshot.meta()}
    arrays = {name: np.ascontiguousarray(value, dtype=np.float32)
              for name, value in snapshot.arrays().items()}
    header = {"format": str(WEIGHTS_FORMAT), "version": str(snapshot.version),
              "hidden_sizes": json.dumps(list(snapshot.hidden_sizes)), "meta": json.dumps(meta)}
    return save(arrays, metadata=header)


def snapshot_from_bytes(data: bytes
                        ) -> tuple[PolicySnapshot | PixelPolicySnapshot, dict[str, Any]]:
    """(numpy-only snapshot, meta) from :func:`snapshot_to_bytes` output; WeightsError if the
    bytes are not weights of this format, or the weights are unusable."""
    data = bytes(data)
    try:
        arrays = load(data)
        header = _header(data)
    except (SafetensorError, ValueError, UnicodeDecodeError) as err:
        raise WeightsError(f"policy weights ({len(data)} bytes) do not load: {err}") from err
    if header.get("format") != str(WEIGHTS_FORMAT):
        raise WeightsError(f"policy weights: format {header.get('format')!r}, expected "
                           f"{WEIGHTS_FORMAT}")
    try:
        version = int(header["version"])
        hidden = tuple(json.loads(header["hidden_sizes"]))
        meta = json.loads(header.get("meta", "{}"))
        if "pixels" in meta:
            snapshot = PixelPolicySnapshot.from_arrays(version, hidden, arrays, meta["pixels"])
        else:
            snapshot = PolicySnapshot.from_arrays(version, hidden, arrays)
    except (KeyError, ValueError, TypeError) as err:
        raise WeightsError(f"policy weights: {err}") from err
    return snapshot, dict(meta)


def _header(data: bytes) -> dict[str, str]:
    """The safetensors file's ``__metadata__`` (the library loads arrays, not the metadata)."""
    length = int.from_bytes(data[:8], "little")
    return json.loads(data[8:8 + length]).get("__metadata__") or {}
