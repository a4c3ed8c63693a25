"""The zarr episode store: time-major ``data/<key>`` arrays plus ``meta/episode_ends``.

Commit protocol (why a crash loses at most the episode in progress): an episode's step rows are
written to ``data/*`` first, then its ``meta/episode_info`` row, and ``meta/episode_ends`` last. The
new end value is written into its chunk through a view *before* the array's shape grows, so the
single atomic write of ``meta/episode_ends/.zarray`` (DirectoryStore replaces files atomically) is
the commit point. Readers ignore rows past ``episode_ends[-1]``; opening for append trims them.

Missing data cannot pass as data: a float array's fill value is NaN (what a read of an absent chunk
returns), and every read checks that the chunks it covers exist, which is the only way to tell an
absent chunk of an int, bool or image array (no spare value marks "missing" in uint8 or bool) and
the way stores written before fill values (``fill_value`` null: an absent chunk read as
uninitialised memory) are checked. Damaged metadata or chunks raise a one-line
:class:`DatasetError` naming the store and the array.
"""

from __future__ import annotations

import itertools
import json
import logging
import math
import os
import shutil
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

import numpy as np
import zarr
from numcodecs import VLenUTF8

from robot_rl.data.errors import DatasetError, first_line
from robot_rl.data.schema import (
    COMPRESSOR,
    KeySpec,
    check_episode_steps,
    chunk_steps,
    spec_of_array,
)

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
ENDS_PATH = "meta/episode_ends"
INFO_PATH = "meta/episode_info"
_ENDS_CHUNK = 1024
_INFO_CHUNK = 64
REQUIRED_ATTRS = ("format_version", "robot", "task", "calibration_digest", "units")
LOCK_NAME = ".lock"
# What an existing store must match to be appended to (``EpisodeStore.create_or_append``).
SOURCE_ATTRS = ("robot", "task", "calibration_digest")
OVERWRITE_HINT = "pass --overwrite (overwrite=True) to replace it"


@dataclass(frozen=True)
class Recovery:
    """What opening for append removed after an interrupted write."""

    dropped_steps: int
    dropped_info_rows: int
    removed_partial_files: int
    removed_keys: tuple[str, ...] = ()


def software_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("robot_rl")
    except PackageNotFoundError:
        return "0+unknown"


def info_to_json(info: Mapping[str, Any], path: Path) -> str:
    """Serialise one episode_info row; numpy scalars and arrays become plain JSON."""

    def plain(value: Any) -> Any:
        if isinstance(value, (np.generic, np.ndarray)):
            return value.tolist()
        raise TypeError(f"{type(value).__name__} is not JSON-serialisable")

    try:
        return json.dumps(dict(info), sort_keys=True, allow_nan=False, default=plain)
    except (TypeError, ValueError) as err:
        raise DatasetError(path, f"episode info {dict(info)!r} cannot be stored: {err}") from err


def _committed_count(path: Path, ends: np.ndarray) -> int:
    """Number of committed episodes; episode_ends must be strictly increasing and positive."""
    steps = np.diff(ends, prepend=0)
    bad = np.flatnonzero(steps <= 0)
    if bad.size:
        i = int(bad[0])
        raise DatasetError(path, f"{ENDS_PATH} is not strictly increasing at episode {i} "
                                 f"(end {int(ends[i])} after {int(ends[i - 1]) if i else 0})")
    return len(ends)


class EpisodeStore:
    """A dataset of episodes; open with :meth:`create` or :meth:`open`."""

    def __init__(self, path: Path, root: zarr.Group, mode: Literal["r", "a"],
                 lock_fd: int | None = None) -> None:
        self._path = path
        self._root = root
        self._mode = mode
        self._lock_fd = lock_fd
        self._writer_active = False
        self.recovery: Recovery | None = None
        self.refresh()

    # ----------------------------------------------------------------------------- opening
    @classmethod
    def create(cls, path: str | os.PathLike[str], *, robot: str, task: str,
               calibration_digest: str, units: Mapping[str, str],
               extra: Mapping[str, Any] | None = None, overwrite: bool = False) -> EpisodeStore:
        """Create an empty dataset; refuses an existing path unless ``overwrite``, and even then
        replaces only a zarr store (:func:`remove_store`), never a file or another folder."""
        path = Path(path)
        for name, value in (("robot", robot), ("task", task),
                            ("calibration_digest", calibration_digest)):
            if not isinstance(value, str) or not value:
                raise DatasetError(path, f"{name} must be a non-empty string, got {value!r}")
        bad_units = {k: v for k, v in units.items()
                     if not (isinstance(k, str) and isinstance(v, str))}
        if bad_units:
            raise DatasetError(path, f"units must map key -> unit string, got {bad_units!r}")
        if path.exists() or path.is_symlink():
            check_removable(path)  # a file or a foreign folder is refused with or without overwrite
            if not overwrite:
                raise DatasetError(path, f"already exists; {OVERWRITE_HINT}")
            remove_store(path)
        root = zarr.group(store=CheckedDirectoryStore(str(path)), overwrite=True)
        lock_fd = _acquire_lock(path)
        root.create_group("data")
        meta = root.create_group("meta")
        meta.create("episode_ends", shape=(0,), chunks=(_ENDS_CHUNK,), dtype=np.int64,
                   compressor=COMPRESSOR, fill_value=0)
        meta.create("episode_info", shape=(0,), chunks=(_INFO_CHUNK,), dtype=object,
                    object_codec=VLenUTF8(), compressor=COMPRESSOR)
        attrs = {"robot": robot, "task": task, "calibration_digest": calibration_digest,
                 "units": dict(units), "software_version": software_version(),
                 "extra": dict(extra or {}), "format_version": FORMAT_VERSION}
        try:
            json.dumps(attrs, allow_nan=False)
        except (TypeError, ValueError) as err:
            raise DatasetError(path, f"attributes are not JSON-serialisable: {err}") from err
        # written last: a store whose creation was interrupted has no format_version
        root.attrs.put(attrs)
        return cls(path, root, "a", lock_fd)

    @classmethod
    def create_or_append(cls, path: str | os.PathLike[str], *, robot: str, task: str,
                         calibration_digest: str, units: Mapping[str, str],
                         extra: Mapping[str, Any] | None = None,
                         overwrite: bool = False) -> EpisodeStore:
        """A store to record into: a new one; the existing one, opened for append, when it was
        recorded from the same source (robot, task, calibration digest, format, the units and
        ``extra`` values given here); with ``overwrite`` a new one in its place.

        An existing store of another source is refused with one line naming what differs, before
        anything in it changes: appended to, it would hold two datasets that read as one.
        """
        path = Path(path)
        if overwrite or not (path.exists() or path.is_symlink()):
            return cls.create(path, robot=robot, task=task, calibration_digest=calibration_digest,
                              units=units, extra=extra, overwrite=overwrite)
        check_removable(path)  # a file or a foreign folder: not a store to append to either
        with cls.open(path, "r") as existing:  # read-only: a refused store is left as it was
            existing.check_source(robot=robot, task=task, calibration_digest=calibration_digest,
                                  units=units, extra=extra)
        return cls.open(path, "a")

    def check_source(self, *, robot: str, task: str, calibration_digest: str,
                     units: Mapping[str, str] | None = None,
                     extra: Mapping[str, Any] | None = None) -> None:
        """Refuses (one line) a store recorded from another source than the one given: another
        robot, task or calibration, another unit for a key both name, another ``extra`` value
        (e.g. the action mode)."""
        attrs = self.attrs
        wanted = {"robot": robot, "task": task, "calibration_digest": calibration_digest}
        differences = [(name, attrs.get(name), wanted[name]) for name in SOURCE_ATTRS
                       if attrs.get(name) != wanted[name]]
        stored_units = attrs.get("units", {})
        differences += [(f"unit of '{key}'", stored_units[key], unit)
                        for key, unit in (units or {}).items()
                        if key in stored_units and stored_units[key] != unit]
        stored_extra = attrs.get("extra", {})
        differences += [(f"extra '{key}'", stored_extra.get(key), value)
                        for key, value in (extra or {}).items() if stored_extra.get(key) != value]
        if differences:
            text = "; ".join(f"{name} {old!r} (this one: {new!r})" for name, old, new in differences)
            raise DatasetError(self._path, f"recorded with {text}: appending would mix two "
                                           f"datasets; write to another path, or "
                                           f"{OVERWRITE_HINT}")

    @classmethod
    def open(cls, path: str | os.PathLike[str], mode: Literal["r", "a"] = "r") -> EpisodeStore:
        """Open and validate a dataset; ``mode="a"`` trims any uncommitted tail first."""
        path = Path(path)
        if mode not in ("r", "a"):
            raise ValueError(f"mode must be 'r' or 'a', got {mode!r}")
        if not path.is_dir():
            raise DatasetError(path, "no such dataset (expected a zarr directory store)")
        if not (path / ".zgroup").is_file():
            raise DatasetError(path, "not a zarr group (no .zgroup): not a robot_rl dataset")
        try:
            root = zarr.open_group(CheckedDirectoryStore(str(path)), mode=mode)
            attrs = root.attrs.asdict()
        except Exception as err:  # zarr raises many types for damaged metadata
            raise DatasetError(path, f"unreadable zarr metadata: {first_line(err)}") from err
        _check_layout(path, root, attrs)
        if mode == "r":
            return cls(path, root, "r")
        lock_fd = _acquire_lock(path)
        try:
            recovery = _recover(path, root)
            store = cls(path, root, "a", lock_fd)
        except BaseException:
            _release_lock(lock_fd)
            raise
        store.recovery = recovery
        return store

    def close(self) -> None:
        """Release the append lock (an episode in progress stays uncommitted)."""
        _release_lock(self._lock_fd)
        self._lock_fd = None
        self._mode = "r"

    def __enter__(self) -> EpisodeStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        if getattr(self, "_lock_fd", None) is not None:
            _release_lock(self._lock_fd)

    def refresh(self) -> None:
        """Re-read the committed state (a reader can follow a store another process appends to)."""
        root = zarr.open_group(self._root.store, mode=self._mode)
        self._root = root
        with damage_named(self._path, ENDS_PATH):
            self._ends_array = root[ENDS_PATH]
        with damage_named(self._path, INFO_PATH):
            self._info_array = root[INFO_PATH]
        ends = read_rows(self._path, self._ends_array, ENDS_PATH).astype(np.int64)
        n = _committed_count(self._path, ends)
        self._ends = ends[:n]
        check_chunks(self._path, self._info_array, INFO_PATH, 0, min(n, len(self._info_array)))
        arrays = data_arrays(self._path, root) if n else {}
        for key, arr in arrays.items():
            if arr.ndim == 0 or arr.shape[0] < self.n_steps:
                rows = arr.shape[0] if arr.ndim else 0
                raise DatasetError(self._path, f"data/{key} has {rows} rows but the committed "
                                               f"episodes need {self.n_steps}: truncated store")
        if len(self._info_array) < n:
            raise DatasetError(self._path, f"{INFO_PATH} has {len(self._info_array)} rows for "
                                           f"{n} committed episodes: episode info missing")
        self._arrays = dict(sorted(arrays.items()))
        self._specs = {k: spec_of_array(a) for k, a in self._arrays.items()}

    # ----------------------------------------------------------------------------- reading
    @property
    def path(self) -> Path:
        return self._path

    @property
    def mode(self) -> str:
        return self._mode

    @property
    def n_episodes(self) -> int:
        return len(self._ends)

    def __len__(self) -> int:
        return self.n_episodes

    @property
    def n_steps(self) -> int:
        return int(self._ends[-1]) if len(self._ends) else 0

    @property
    def keys(self) -> tuple[str, ...]:
        return tuple(self._arrays)

    @property
    def specs(self) -> dict[str, KeySpec]:
        """Per-key dtype and per-step shape (empty until the first episode is committed)."""
        return dict(self._specs)

    @property
    def attrs(self) -> dict:
        return dict(self._root.attrs.asdict())

    @property
    def episode_ends(self) -> np.ndarray:
        return self._ends.copy()

    @property
    def episode_lengths(self) -> np.ndarray:
        return np.diff(self._ends, prepend=0)

    def episode_bounds(self, index: int) -> tuple[int, int]:
        """[start, end) step rows of episode ``index`` (negative indices count from the end)."""
        n = self.n_episodes
        if not -n <= index < n:
            raise IndexError(f"{self._path}: episode {index} out of range (have {n})")
        index %= n
        start = int(self._ends[index - 1]) if index else 0
        return start, int(self._ends[index])

    def episode(self, index: int, keys: Sequence[str] | None = None) -> dict[str, np.ndarray]:
        start, end = self.episode_bounds(index)
        return {k: self._read_rows(k, start, end, index) for k in self._select(keys)}

    def episode_info(self, index: int) -> dict:
        self.episode_bounds(index)
        index %= self.n_episodes
        raw = read_rows(self._path, self._info_array, INFO_PATH, index, index + 1)[0]
        try:
            info = json.loads(raw)
        except (TypeError, ValueError) as err:
            raise DatasetError(self._path, f"{INFO_PATH}[{index}] is not JSON: {err}") from err
        if not isinstance(info, dict):
            raise DatasetError(self._path, f"{INFO_PATH}[{index}] is not a JSON object")
        return info

    def episode_infos(self) -> list[dict]:
        """Every committed episode's info (one read of the info array)."""
        texts = read_rows(self._path, self._info_array, INFO_PATH, 0, self.n_episodes)
        infos = []
        for index, raw in enumerate(texts):
            try:
                info = json.loads(raw)
            except (TypeError, ValueError) as err:
                raise DatasetError(self._path, f"{INFO_PATH}[{index}] is not JSON: "
                                               f"{first_line(err)}") from err
            if not isinstance(info, dict):
                raise DatasetError(self._path, f"{INFO_PATH}[{index}] is not a JSON object")
            infos.append(info)
        return infos

    def iter_episodes(self, keys: Sequence[str] | None = None
                      ) -> Iterator[tuple[int, dict[str, np.ndarray]]]:
        """Yield ``(index, steps)`` one episode at a time (memory stays one episode)."""
        keys = self._select(keys)
        for index in range(self.n_episodes):
            yield index, self.episode(index, keys)

    def read(self, key: str) -> np.ndarray:
        """All committed rows of one key."""
        (key,) = self._select([key])
        return self._read_rows(key, 0, self.n_steps, None)

    def _select(self, keys: Sequence[str] | None) -> list[str]:
        if keys is None:
            return list(self._arrays)
        missing = [k for k in keys if k not in self._arrays]
        if missing:
            raise DatasetError(self._path, f"no key(s) {missing} in dataset; keys are "
                                           f"{list(self._arrays)}")
        return list(keys)

    def _read_rows(self, key: str, start: int, end: int, episode: int | None) -> np.ndarray:
        where = f"episode {episode}" if episode is not None else None
        return read_rows(self._path, self._arrays[key], f"data/{key}", start, end, where)

    def episode_of_row(self, row: int) -> tuple[int, int]:
        """(episode, step within it) of a committed step row."""
        episode = int(np.searchsorted(self._ends, row, side="right"))
        start = int(self._ends[episode - 1]) if episode else 0
        return episode, row - start

    # ----------------------------------------------------------------------------- writing
    def add_episode(self, steps: Mapping[str, np.ndarray],
                    info: Mapping[str, Any] | None = None) -> int:
        """Append one whole episode and commit it; returns its index."""
        self._require_writable()
        if self._writer_active:
            raise DatasetError(self._path, "an EpisodeWriter has an episode in progress; "
                                           "commit or discard it first")
        arrays = check_episode_steps(self._path, steps, self._specs or None)
        n_rows = len(next(iter(arrays.values())))
        self._ensure_arrays({k: KeySpec(a.dtype, a.shape[1:]) for k, a in arrays.items()})
        self._fit_rows(self.n_steps)
        self._write_rows(arrays, self.n_steps)
        return self._commit(self.n_steps + n_rows, info)

    def _require_writable(self) -> None:
        if self._mode != "a":
            raise DatasetError(self._path, "opened read-only; use EpisodeStore.open(path, 'a')")

    def _ensure_arrays(self, specs: Mapping[str, KeySpec]) -> None:
        """Create data arrays for the first episode (schema comes from its steps)."""
        if self._arrays:
            return
        data = self._root["data"]
        for key, spec in specs.items():
            # write_empty_chunks: a chunk equal to the fill value (all False, all 0) is written
            # too, so that an absent chunk always means a lost one (zarr 2's default, stated)
            data.create(key, shape=(0, *spec.step_shape), dtype=spec.dtype,
                        chunks=(chunk_steps(spec), *spec.step_shape), compressor=COMPRESSOR,
                        fill_value=fill_value(spec.dtype), write_empty_chunks=True,
                        overwrite=True)
        self._arrays = {k: data[k] for k in sorted(specs)}
        self._specs = {k: spec_of_array(a) for k, a in self._arrays.items()}

    def _write_rows(self, arrays: Mapping[str, np.ndarray], start: int,
                    spare_rows: Mapping[str, int] | None = None) -> None:
        """Write rows of some keys at ``start`` (uncommitted until :meth:`_commit`).

        ``spare_rows`` grows an array by that many extra rows when it must grow: each resize
        rewrites ``.zarray`` (an atomic file replace, a few ms), too slow to do at every step.
        """
        for key, rows in arrays.items():
            arr = self._arrays[key]
            end = start + len(rows)
            if arr.shape[0] < end:
                spare = spare_rows.get(key, 0) if spare_rows else 0
                arr.resize((end + spare, *arr.shape[1:]))
            arr[start:end] = rows

    def _fit_rows(self, n_rows: int) -> None:
        """Cut arrays to exactly ``n_rows`` (drops spare rows before a commit)."""
        for arr in self._arrays.values():
            if arr.shape[0] != n_rows:
                arr.resize((n_rows, *arr.shape[1:]))

    def _truncate_rows(self, n_rows: int) -> None:
        """Drop uncommitted rows (discard); drops the arrays when no episode is committed."""
        if not self.n_episodes:
            for key in list(self._arrays):
                del self._root["data"][key]
            self._arrays, self._specs = {}, {}
            return
        self._fit_rows(n_rows)

    def _commit(self, end: int, info: Mapping[str, Any] | None) -> int:
        """Write the info row, then publish the new episode end (the commit point)."""
        index = self.n_episodes
        row = dict(info or {})
        row.setdefault("created_utc", datetime.now(timezone.utc).isoformat(timespec="seconds"))
        row.setdefault("calibration_digest", self._root.attrs["calibration_digest"])
        text = info_to_json(row, self._path)
        if len(self._info_array) != index:
            self._info_array.resize(index)
        self._info_array.append(np.array([text], dtype=object))
        # write the value where the shape does not yet reach, then grow the shape atomically
        self._ends_array.view(shape=(index + 1,))[index] = end
        self._ends_array.resize(index + 1)
        self._ends = np.append(self._ends, np.int64(end))
        return index

    def __repr__(self) -> str:
        return (f"EpisodeStore({str(self._path)!r}, mode={self._mode!r}, "
                f"episodes={self.n_episodes}, steps={self.n_steps}, keys={list(self.keys)})")


def _check_layout(path: Path, root: zarr.Group, attrs: Mapping[str, Any]) -> None:
    version = attrs.get("format_version")
    if version is None:
        raise DatasetError(path, "no format_version attribute: not a robot_rl dataset "
                                 "(or its creation was interrupted)")
    if version != FORMAT_VERSION:
        raise DatasetError(path, f"format_version {version!r} is not supported "
                                 f"(this robot_rl reads {FORMAT_VERSION})")
    missing = [a for a in REQUIRED_ATTRS if a not in attrs]
    if missing:
        raise DatasetError(path, f"missing root attribute(s) {missing}")
    for name in ("data", "meta"):
        with damage_named(path, name):
            group = root.get(name)
        if not isinstance(group, zarr.Group):
            raise DatasetError(path, f"missing group '{name}'")
    for name, kind in ((ENDS_PATH, "i"), (INFO_PATH, "O")):
        with damage_named(path, name):
            arr = root.get(name)
        if not isinstance(arr, zarr.Array):
            raise DatasetError(path, f"missing array '{name}'")
        if arr.ndim != 1 or arr.dtype.kind != kind:
            raise DatasetError(path, f"'{name}' must be 1-D of kind {kind!r}, "
                                     f"got shape {arr.shape} dtype {arr.dtype}")


class CheckedDirectoryStore(zarr.DirectoryStore):
    """A DirectoryStore that refuses a blosc chunk whose length is not the one its header gives.

    c-blosc takes a frame's length from its own 16-byte header, and a frame of data that did not
    compress is stored as is: truncate or overwrite such a chunk and it decodes without an error
    into whatever bytes follow the buffer. Every chunk read here is checked first (the header's
    compressed size against the bytes on disk, its uncompressed size against the chunk's), which
    costs a few comparisons per chunk."""

    def __init__(self, path: str) -> None:
        super().__init__(path)
        self._chunk_nbytes: dict[str, int | None] = {}

    def __getitem__(self, key: str) -> bytes:
        value = super().__getitem__(key)
        folder, _, name = key.rpartition("/")
        if not name.startswith("."):
            expected = self._expected_nbytes(folder)
            if expected is not None:
                _check_blosc_frame(key, value, expected)
        return value

    def _expected_nbytes(self, folder: str) -> int | None:
        """Uncompressed bytes of one chunk of the array in ``folder`` (-1: any, object dtype);
        None when the array is not blosc-compressed."""
        if folder not in self._chunk_nbytes:
            meta = json.loads(super().__getitem__(f"{folder}/.zarray" if folder else ".zarray"))
            compressor = meta.get("compressor") or {}
            dtype = np.dtype(meta["dtype"]) if isinstance(meta["dtype"], str) else None
            size = (dtype.itemsize * math.prod(meta["chunks"])
                    if dtype is not None and dtype.kind != "O" else -1)
            self._chunk_nbytes[folder] = size if compressor.get("id") == "blosc" else None
        return self._chunk_nbytes[folder]


def _check_blosc_frame(key: str, value: bytes, expected_nbytes: int) -> None:
    view = memoryview(value).cast("B")
    if len(view) < 16:
        raise ValueError(f"chunk {key} has {len(view)} bytes, fewer than a blosc header")
    nbytes = int.from_bytes(view[4:8], "little")
    cbytes = int.from_bytes(view[12:16], "little")
    if cbytes != len(view):
        raise ValueError(f"chunk {key} has {len(view)} bytes, its blosc header says {cbytes}: "
                         f"truncated or overwritten")
    if expected_nbytes >= 0 and nbytes != expected_nbytes:
        raise ValueError(f"chunk {key} decodes to {nbytes} bytes, a chunk of this array has "
                         f"{expected_nbytes}: overwritten")


def fill_value(dtype: np.dtype) -> float | int | bool:
    """What a read of an absent chunk returns: NaN for floats (no finite check passes it); an
    int, bool or image has no spare value, so absent chunks are found by :func:`check_chunks`."""
    dtype = np.dtype(dtype)
    if dtype.kind in "fc":
        return float("nan")
    return False if dtype.kind == "b" else 0


VALIDATE_HINT = "the store is damaged (`robot-rl dataset validate` lists every problem)"


@contextmanager
def damage_named(path: Path, name: str, what: str = "unreadable metadata") -> Iterator[None]:
    """zarr, blosc and json raise assorted multi-line errors on damaged files: one line naming
    the store and the array instead."""
    try:
        yield
    except DatasetError:
        raise
    except Exception as err:
        raise DatasetError(path, f"{name}: {what} ({first_line(err)}): {VALIDATE_HINT}") from err


def missing_chunks(arr: zarr.Array, start: int = 0, end: int | None = None) -> list[int]:
    """Indices (along time) of the chunks that rows ``[start, end)`` need and that are absent."""
    end = arr.shape[0] if end is None else min(end, arr.shape[0])
    if arr.ndim == 0 or end <= start:
        return []
    rows_per_chunk = arr.chunks[0]
    across = [range(math.ceil(s / c)) for s, c in zip(arr.shape[1:], arr.chunks[1:])]
    store = arr.chunk_store
    return [i for i in range(start // rows_per_chunk, (end - 1) // rows_per_chunk + 1)
            if any(arr._chunk_key((i, *rest)) not in store for rest in itertools.product(*across))]


def check_chunks(path: Path, arr: zarr.Array, name: str, start: int = 0,
                 end: int | None = None, where: str | None = None) -> None:
    """Refuses (one line) rows ``[start, end)`` of ``arr`` when a chunk they need is absent."""
    missing = missing_chunks(arr, start, end)
    if missing:
        first, rows = missing[0], arr.chunks[0]
        last_row = min((first + 1) * rows, arr.shape[0] if end is None else end)
        raise DatasetError(path, f"{name}{', ' + where if where else ''}: chunk {first} (rows "
                                 f"{first * rows}:{last_row}) is missing"
                                 f"{f' ({len(missing)} chunks missing)' if len(missing) > 1 else ''}"
                                 f": {VALIDATE_HINT}")


def read_rows(path: Path, arr: zarr.Array, name: str, start: int = 0, end: int | None = None,
              where: str | None = None) -> np.ndarray:
    """Rows ``[start, end)`` of ``arr``, refused (one line) when a chunk is absent or unreadable."""
    end = arr.shape[0] if end is None else end
    check_chunks(path, arr, name, start, end, where)
    with damage_named(path, f"{name}, {where}" if where else f"{name}, rows {start}:{end}",
                      "unreadable chunk"):
        return arr[start:end]


def data_arrays(path: Path, root: zarr.Group) -> dict[str, zarr.Array]:
    """The ``data/*`` arrays, each opened so that damaged metadata names its key."""
    arrays = {}
    with damage_named(path, "data"):
        keys = list(root["data"].array_keys())
    for key in keys:
        with damage_named(path, f"data/{key}"):
            arrays[key] = root["data"][key]
    return arrays


def check_removable(path: Path) -> None:
    """Refuses a path that robot_rl never deletes: a file, a symbolic link, or a non-empty
    folder that is not a zarr store (no ``.zgroup``). Says so whether or not overwrite was asked,
    so that the hint to pass --overwrite is only given where it would help."""
    if path.is_symlink():
        raise DatasetError(path, "is a symbolic link, not a dataset; robot_rl never deletes "
                                 "through it, even with --overwrite: write to another path")
    if path.exists() and not path.is_dir():
        raise DatasetError(path, "is a file, not a dataset (a zarr directory); robot_rl never "
                                 "deletes it, even with --overwrite: write to another path")
    if path.is_dir() and not (path / ".zgroup").is_file() and any(path.iterdir()):
        raise DatasetError(path, "is a folder but not a zarr store (no .zgroup); robot_rl "
                                 "never deletes it, even with --overwrite: write to another path")


def remove_store(path: str | os.PathLike[str]) -> None:
    """Deletes a dataset for --overwrite: only a zarr directory store (or an empty folder), and
    not one that a writer holds open (its lock is held while the folder is deleted)."""
    path = Path(path)
    if not (path.exists() or path.is_symlink()):
        return
    check_removable(path)
    lock_fd = _acquire_lock(path)
    try:
        shutil.rmtree(path)
    finally:
        _release_lock(lock_fd)


def _acquire_lock(path: Path) -> int | None:
    """One appender per store: an exclusive flock on ``<store>/.lock``.

    The kernel drops the lock when its process dies, so a crashed writer never blocks recovery.
    """
    try:
        import fcntl
    except ImportError:  # not POSIX: no inter-process guard
        return None
    fd = os.open(path / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.read(fd, 64).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise DatasetError(path, f"is open for appending by another writer (pid {holder}); "
                                 f"open it read-only or close that writer first") from None
    os.ftruncate(fd, 0)
    os.write(fd, str(os.getpid()).encode())
    return fd


def _release_lock(fd: int | None) -> None:
    if fd is not None:
        os.close(fd)  # closing the descriptor releases the flock


def _remove_partial_files(path: Path) -> int:
    """DirectoryStore writes ``<name>.<uuid>.partial`` then renames; a crash can leave one."""
    removed = 0
    for dirpath, _, files in os.walk(path):
        for name in files:
            if name.endswith(".partial"):
                os.remove(os.path.join(dirpath, name))
                removed += 1
    return removed


def _recover(path: Path, root: zarr.Group) -> Recovery | None:
    """Trim everything past the last commit, in an order that is itself safe to interrupt."""
    partial = _remove_partial_files(path)
    ends_array, info_array = root[ENDS_PATH], root[INFO_PATH]
    ends = read_rows(path, ends_array, ENDS_PATH).astype(np.int64)
    n = _committed_count(path, ends)
    n_steps = int(ends[-1]) if n else 0
    dropped_info = max(0, len(info_array) - n)
    if dropped_info:
        info_array.resize(n)
    dropped_steps, removed_keys = 0, []
    data = root["data"]
    for key, arr in data_arrays(path, root).items():
        rows = arr.shape[0] if arr.ndim else 0
        dropped_steps = max(dropped_steps, rows - n_steps)
        if n == 0:
            del data[key]
            removed_keys.append(key)
        elif rows > n_steps:
            arr.resize((n_steps, *arr.shape[1:]))
    # a crashed first episode may leave a key directory without .zarray
    for name in os.listdir(path / "data") if n == 0 and (path / "data").is_dir() else ():
        if (path / "data" / name).is_dir():
            shutil.rmtree(path / "data" / name)
    if not (partial or dropped_info or dropped_steps or removed_keys):
        return None
    recovery = Recovery(dropped_steps=dropped_steps, dropped_info_rows=dropped_info,
                        removed_partial_files=partial,
                        removed_keys=tuple(removed_keys))
    log.warning("%s: recovered from an interrupted write: dropped %d step rows past the last "
                "commit and "
                "%d episode_info rows, removed %d partial files; %d committed episodes intact",
                path, dropped_steps, dropped_info, partial, n)
    return recovery


__all__ = ["DatasetError", "EpisodeStore", "FORMAT_VERSION", "Recovery", "remove_store"]
