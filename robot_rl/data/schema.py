"""Per-key schema (dtype and per-step shape), chunking and compression of the episode store."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import zarr
from numcodecs import Blosc

from robot_rl.data.errors import SchemaError

COMPRESSOR = Blosc(cname="lz4", clevel=5, shuffle=Blosc.SHUFFLE)
# Low-dimensional keys: chunks of about this many bytes; a read of one episode then touches few
# files and a streaming writer rewrites a chunk of modest size on each flush.
CHUNK_TARGET_BYTES = 256 * 1024
MAX_CHUNK_STEPS = 8192
IMAGE_DTYPES = (np.dtype(np.uint8), np.dtype(np.uint16))


@dataclass(frozen=True)
class KeySpec:
    """What every step of one key looks like."""

    dtype: np.dtype
    step_shape: tuple[int, ...]

    @property
    def is_image(self) -> bool:
        return len(self.step_shape) >= 2 and self.dtype in IMAGE_DTYPES

    def describe(self) -> str:
        return f"{self.dtype}{list(self.step_shape)}"


def spec_of_array(arr: zarr.Array | np.ndarray) -> KeySpec:
    return KeySpec(np.dtype(arr.dtype), tuple(int(s) for s in arr.shape[1:]))


def chunk_steps(spec: KeySpec) -> int:
    """Steps per chunk: one frame for images (a frame is written as it arrives), else ~256 KiB."""
    if spec.is_image:
        return 1
    row_bytes = spec.dtype.itemsize * math.prod(spec.step_shape)
    return int(min(MAX_CHUNK_STEPS, max(1, CHUNK_TARGET_BYTES // max(1, row_bytes))))


def as_step_array(key: str, value: Any, spec: KeySpec | None) -> np.ndarray:
    """Plain Python values take the dataset's dtype; numpy values must already have it."""
    if spec is not None and not isinstance(value, (np.ndarray, np.generic)):
        return np.asarray(value, dtype=spec.dtype)
    return np.asarray(value)


def check_spec(path: str | os.PathLike[str], key: str, got: KeySpec, expected: KeySpec,
               where: str) -> None:
    if got != expected:
        raise SchemaError(path, f"{where}: key '{key}' expected {expected.describe()} per step, "
                                f"got {got.describe()}")


def check_keys(path: str | os.PathLike[str], got: Mapping[str, Any],
               expected: Mapping[str, Any], where: str) -> None:
    if set(got) != set(expected):
        missing = sorted(set(expected) - set(got))
        extra = sorted(set(got) - set(expected))
        raise SchemaError(path, f"{where}: keys differ from the dataset's {sorted(expected)}: "
                                f"missing {missing}, unexpected {extra}")


def check_episode_steps(path: str | os.PathLike[str], steps: Mapping[str, Any],
                        specs: Mapping[str, KeySpec] | None) -> dict[str, np.ndarray]:
    """Validate a whole episode (time-major arrays); ``specs=None`` for the first episode."""
    if not steps:
        raise SchemaError(path, "an episode needs at least one key")
    if specs is not None:
        check_keys(path, steps, specs, "episode")
    arrays: dict[str, np.ndarray] = {}
    for key, value in steps.items():
        if not isinstance(key, str) or not key or "/" in key or key.startswith("."):
            raise SchemaError(path, f"key {key!r} must be a non-empty name without '/'")
        spec = specs[key] if specs is not None else None
        arr = as_step_array(key, value, KeySpec(spec.dtype, ()) if spec else None)
        if arr.ndim == 0:
            raise SchemaError(path, f"episode: key '{key}' must be time-major [T, ...], "
                                    f"got a scalar")
        if spec is not None:
            check_spec(path, key, spec_of_array(arr), spec, "episode")
        if arr.dtype.kind == "O":
            raise SchemaError(path, f"episode: key '{key}' has object dtype; store numbers")
        arrays[key] = arr
    lengths = {k: len(a) for k, a in arrays.items()}
    if len(set(lengths.values())) != 1:
        raise SchemaError(path, f"episode: keys have different numbers of steps {lengths}")
    if not next(iter(lengths.values())):
        raise SchemaError(path, "episode: an episode needs at least one step")
    return arrays
