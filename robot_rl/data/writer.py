"""Streaming episode writer for a live recorder: steps reach the disk as they arrive.

Image keys (one frame per chunk) are written at every step, so memory does not grow with the
episode; low-dimensional keys are buffered for ``flush_every_steps`` steps so that their larger
chunks are not rewritten at every step. Nothing is visible to readers until :meth:`commit`.
With ``background=True`` the writes run in a worker thread and ``append`` only validates and
queues (bounded by ``max_pending_steps``, which then applies back-pressure).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Mapping
from typing import Any

import numpy as np

from robot_rl.data.errors import DatasetError, SchemaError
from robot_rl.data.schema import KeySpec, as_step_array, check_keys, check_spec, chunk_steps
from robot_rl.data.store import EpisodeStore

_FLUSH_ALL = "flush"
# Arrays grow ahead of the writer by this many frames (about 4 s at 30 Hz), so the array
# metadata is rewritten every few seconds rather than at every frame. Readers never see spare
# rows (they stop at episode_ends[-1]) and commit cuts them off.
SPARE_IMAGE_ROWS = 128


class EpisodeWriter:
    """Writes one episode at a time into ``store`` (opened for append)."""

    def __init__(self, store: EpisodeStore, flush_every_steps: int = 10, *,
                 background: bool = False, max_pending_steps: int = 90) -> None:
        store._require_writable()
        if flush_every_steps < 1:
            raise ValueError(f"flush_every_steps must be >= 1, got {flush_every_steps}")
        self._store = store
        self._flush_every = flush_every_steps
        self._specs: dict[str, KeySpec] | None = store.specs or None
        self._start = 0
        self._n_steps = 0
        self._pending: dict[str, list[np.ndarray]] = {}
        self._written: dict[str, int] = {}
        self._spare_rows: dict[str, int] = {}
        self._error: BaseException | None = None
        self._queue: queue.Queue | None = None
        self._thread: threading.Thread | None = None
        self._closed = False
        if background:
            self._queue = queue.Queue(maxsize=max_pending_steps)
            self._thread = threading.Thread(target=self._work, name="episode-writer", daemon=True)
            self._thread.start()

    @property
    def n_steps(self) -> int:
        """Steps appended to the episode in progress."""
        return self._n_steps

    def append(self, step: Mapping[str, Any]) -> None:
        """Add one step: a mapping key -> per-step value (no time axis)."""
        if self._closed:
            raise DatasetError(self._store.path, "this EpisodeWriter is closed")
        self._raise_worker_error()
        arrays = self._check_step(step)
        if self._n_steps == 0:
            self._begin()
        self._n_steps += 1
        if self._queue is not None:
            self._queue.put({k: np.array(a, copy=True) for k, a in arrays.items()})
        else:
            self._absorb(arrays, copy_buffered=True)

    def commit(self, info: Mapping[str, Any] | None = None) -> int:
        """Write what is buffered and commit the episode; returns its index."""
        if self._n_steps == 0:
            raise DatasetError(self._store.path, "cannot commit an episode with no steps")
        if self._queue is None:
            self._flush(all_keys=True)
        else:
            self._drain()
        self._raise_worker_error()
        self._store._fit_rows(self._start + self._n_steps)
        index = self._store._commit(self._start + self._n_steps, info)
        self._reset()
        return index

    def discard(self) -> None:
        """Drop the episode in progress (its rows are removed from disk)."""
        self._drain()
        self._error = None
        self._pending = {}
        self._store._truncate_rows(self._store.n_steps)
        if not self._store.n_episodes:
            self._specs = None
        self._reset()

    def close(self) -> None:
        """Discard any uncommitted episode and stop the worker thread."""
        if self._n_steps:
            self.discard()
        self._closed = True
        if self._thread is not None and self._queue is not None:
            self._queue.put(None)
            self._thread.join()
            self._thread = None

    def __enter__(self) -> EpisodeWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------------------ internals
    def _check_step(self, step: Mapping[str, Any]) -> dict[str, np.ndarray]:
        path = self._store.path
        where = f"step {self._n_steps}"
        if self._specs is not None:
            check_keys(path, step, self._specs, where)
        arrays = {}
        for key, value in step.items():
            spec = self._specs[key] if self._specs is not None else None
            arr = as_step_array(key, value, spec)
            if spec is not None:
                check_spec(path, key, KeySpec(arr.dtype, arr.shape), spec, where)
            elif not isinstance(key, str) or not key or "/" in key or key.startswith("."):
                raise SchemaError(path, f"key {key!r} must be a non-empty name without '/'")
            arrays[key] = arr
        if self._specs is None:
            if not arrays:
                raise SchemaError(path, "a step needs at least one key")
            self._specs = {k: KeySpec(a.dtype, a.shape) for k, a in arrays.items()}
        return arrays

    def _begin(self) -> None:
        self._store._require_writable()
        if self._store._writer_active:
            raise DatasetError(self._store.path, "another episode is in progress on this store")
        self._store._writer_active = True
        self._start = self._store.n_steps
        self._pending = {k: [] for k in self._specs or {}}
        self._spare_rows = {k: SPARE_IMAGE_ROWS if s.is_image else chunk_steps(s)
                            for k, s in (self._specs or {}).items()}
        self._written = {k: 0 for k in self._specs or {}}

    def _reset(self) -> None:
        self._store._writer_active = False
        self._n_steps = 0
        self._pending, self._written = {}, {}

    def _absorb(self, arrays: Mapping[str, np.ndarray], copy_buffered: bool) -> None:
        assert self._specs is not None
        for key, arr in arrays.items():
            keep = np.array(arr, copy=True) if copy_buffered and not self._specs[key].is_image \
                else arr
            self._pending[key].append(keep)
        self._flush(all_keys=False)

    def _flush(self, all_keys: bool) -> None:
        """Write buffered rows: images every step, other keys every ``flush_every_steps``."""
        assert self._specs is not None
        self._store._ensure_arrays(self._specs)
        for key, rows in self._pending.items():
            due = self._specs[key].is_image or len(rows) >= self._flush_every
            if not rows or not (all_keys or due):
                continue
            self._store._write_rows({key: np.stack(rows)}, self._start + self._written[key],
                                    self._spare_rows)
            self._written[key] += len(rows)
            rows.clear()

    def _work(self) -> None:
        assert self._queue is not None
        while True:
            item = self._queue.get()
            try:
                if item is None:
                    return
                if self._error is None:
                    if item == _FLUSH_ALL:
                        self._flush(all_keys=True)
                    else:
                        self._absorb(item, copy_buffered=False)
            except BaseException as err:  # surfaced to the caller on its next call
                self._error = err
            finally:
                self._queue.task_done()

    def _drain(self) -> None:
        if self._queue is not None:
            self._queue.put(_FLUSH_ALL)
            self._queue.join()

    def _raise_worker_error(self) -> None:
        if self._error is not None:
            raise DatasetError(self._store.path, f"background write failed: {self._error!r}; "
                                                 "discard() the episode") from self._error
