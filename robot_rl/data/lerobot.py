"""LeRobotDataset v3.0 export and import (needs ``pyarrow``: ``pip install 'robot_rl[lerobot]'``).

The layout written (what lerobot 0.4 reads; tests/unit/test_data_lerobot.py loads it with the real
``lerobot`` package):

    meta/info.json            codebase_version "v3.0", fps, features (dtype, shape, names), paths
    meta/stats.json           per feature: min, max, mean, std, count (images per channel in [0, 1])
    meta/tasks.parquet        task strings (the pandas index) and their task_index
    meta/episodes/chunk-000/file-000.parquet   one row per episode: length, data and video ranges
    meta/robot_rl.json        what LeRobot has no place for (robot, calibration digest, units,
                              each key's dtype and shape, every episode's info): import reads it
                              back so that zarr -> LeRobot -> zarr loses nothing
    data/chunk-000/file-000.parquet            one row per frame: every non-video key, plus
                              timestamp, frame_index, episode_index, index, task_index
    videos/<key>/chunk-000/file-000.mp4        one MP4 per camera holding every episode in turn

Timestamps are exactly ``frame_index / fps`` (float32, as LeRobot stores them), and episode e's
frames start at ``from_timestamp = (frames before e) / fps`` in its camera's MP4. Colour images
(uint8 ``[H, W, 3]``) become videos; the default codec is lossless (H.264 RGB at qp 0, so the
round trip is pixel-exact); ``video_codec="h264"`` or ``"av1"`` trade exactness for size. Other
images (depth, uint16) stay in the parquet file as fixed-shape arrays, losslessly.

Keys and feature names (one table, :data:`FEATURE_NAMES`): ``observation`` is
``observation.state``, ``action`` is ``action``, ``reward`` is ``next.reward``,
``terminated``/``truncated`` are ``next.terminated``/``next.truncated`` (plus ``next.done``, their
OR, which LeRobot's tools read), ``next_observation`` is ``next.observation.state``, a camera key
K is ``observation.images.K``; any other key keeps its name.

A LeRobot dataset recorded elsewhere (no ``meta/robot_rl.json``) imports by the same table read
backwards, ``next.done`` standing for ``terminated`` where there is no ``next.terminated``.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from robot_rl.data.errors import DatasetError, first_line
from robot_rl.data.schema import KeySpec
from robot_rl.data.store import OVERWRITE_HINT, EpisodeStore, remove_store

CODEBASE_VERSION = "v3.0"
INFO = "meta/info.json"
STATS = "meta/stats.json"
TASKS = "meta/tasks.parquet"
EPISODES = "meta/episodes/chunk-000/file-000.parquet"
SIDECAR = "meta/robot_rl.json"
DATA_PATH = "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
VIDEO_PATH = "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
SIDECAR_FORMAT = 1
# LeRobot's defaults for chunking (its DEFAULT_CHUNK_SIZE, DEFAULT_*_FILE_SIZE_IN_MB): recorded in
# info.json; one data file and one video per camera are written whatever the size (readers take
# any size; LeRobot itself starts a new file past these sizes).
CHUNKS_SIZE, DATA_FILE_MB, VIDEO_FILE_MB = 1000, 100, 200

# robot_rl key -> LeRobot feature name (the one home of this mapping)
FEATURE_NAMES = {"observation": "observation.state", "next_observation": "next.observation.state",
                 "action": "action", "reward": "next.reward", "terminated": "next.terminated",
                 "truncated": "next.truncated"}
DONE = "next.done"  # written as terminated OR truncated: what LeRobot's tools read
VIDEO_PREFIX = "observation.images."
FRAME_COLUMNS = ("timestamp", "frame_index", "episode_index", "index", "task_index")
FRAME_FEATURES = {"timestamp": "float32", "frame_index": "int64", "episode_index": "int64",
                  "index": "int64", "task_index": "int64"}
# Scalar keys of robot_rl's pipeline: LeRobot stores scalars as shape (1,); import makes these
# scalars again when a dataset has no robot_rl.json to say so.
SCALAR_KEYS = ("reward", "terminated", "truncated")
# name -> (ffmpeg encoder, pixel format, encoder options)
VIDEO_CODECS = {"lossless": ("libx264rgb", "rgb24", ["-qp", "0"]),
                "h264": ("libx264", "yuv420p", ["-crf", "23"]),
                "av1": ("libsvtav1", "yuv420p", ["-crf", "30"])}
GOP_FRAMES = 10  # a key frame every 10 frames: a random frame decodes after at most 9 others
# A timestamp within this of frame_index / fps counts as on the grid (float32 rounding of a
# ten-hour episode at 1 kHz stays below it).
TIMESTAMP_TOLERANCE_S = 1e-4


def _pyarrow(path: str | os.PathLike[str]) -> Any:
    try:
        import pyarrow
        import pyarrow.parquet
    except ImportError as err:
        raise DatasetError(path, "LeRobot datasets need pyarrow: pip install "
                                 "'robot_rl[lerobot]' (or pip install pyarrow)") from err
    return pyarrow


# ------------------------------------------------------------------------------------- export
@dataclass
class _Feature:
    """One store key as a LeRobot feature."""

    key: str
    name: str
    spec: KeySpec
    video: bool

    @property
    def shape(self) -> tuple[int, ...]:
        return self.spec.step_shape or (1,)

    def describe(self, fps: int, codec: str) -> dict[str, Any]:
        if self.video:
            height, width, channels = self.spec.step_shape
            encoder, pix_fmt, _ = VIDEO_CODECS[codec]
            return {"dtype": "video", "shape": [height, width, channels],
                    "names": ["height", "width", "channels"],
                    "info": {"video.height": height, "video.width": width, "video.codec": "h264"
                             if encoder.startswith("libx264") else "av1",
                             "video.pix_fmt": "gbrp" if pix_fmt == "rgb24" else pix_fmt,
                             "video.is_depth_map": False, "video.fps": fps,
                             "video.channels": channels, "has_audio": False}}
        return {"dtype": str(self.spec.dtype), "shape": list(self.shape), "names": None}


def feature_name(key: str, spec: KeySpec) -> str:
    """The LeRobot name of a store key (:data:`FEATURE_NAMES`; cameras under observation.images)."""
    if _is_video(spec):
        return VIDEO_PREFIX + key
    return FEATURE_NAMES.get(key, key)


def _is_video(spec: KeySpec) -> bool:
    return (spec.dtype == np.uint8 and len(spec.step_shape) == 3 and spec.step_shape[2] == 3)


def export_lerobot(input: str | os.PathLike[str], output: str | os.PathLike[str], *,
                   fps: int | None = None, task_text: str | None = None,
                   video_codec: str = "lossless", overwrite: bool = False,
                   progress: bool = False) -> dict[str, Any]:
    """Write the dataset ``input`` as a LeRobotDataset v3.0 folder ``output``; returns a summary.

    ``fps``: frames per second (LeRobot's is a whole number); default: the rate of the store's
    ``stamp_s`` key. ``task_text``: the task's description (LeRobot's per-frame task string);
    default: an episode's own ``task`` info, else the store's task name. The folder is written
    beside ``output`` first and renamed when complete, so a reader never sees half an export; an
    existing ``output`` is replaced only with ``overwrite`` and only if it is a LeRobot dataset.
    """
    pa = _pyarrow(output)
    output = Path(output)
    if video_codec not in VIDEO_CODECS:
        raise ValueError(f"video codec {video_codec!r} is not one of {sorted(VIDEO_CODECS)}")
    _check_output(output, overwrite)
    with EpisodeStore.open(input, "r") as store:
        if not store.n_episodes:
            raise DatasetError(store.path, "no committed episodes to export")
        fps = _fps(store, fps)
        features = [_Feature(k, feature_name(k, s), s, _is_video(s)) for k, s in store.specs.items()]
        _check_names(store.path, features)
        partial = output.with_name(output.name + ".partial")
        _clear_partial(partial)
        try:
            summary = _write(pa, store, partial, features, fps, task_text, video_codec, progress)
        except BaseException:
            shutil.rmtree(partial, ignore_errors=True)
            raise
    if output.exists():
        shutil.rmtree(output)  # a LeRobot dataset (checked above), replaced with overwrite
    os.replace(partial, output)
    return {**summary, "output": str(output)}


def _check_output(output: Path, overwrite: bool) -> None:
    """Refuses an existing output without ``overwrite``, and always one that is not a LeRobot
    dataset folder (a file, a link, another folder are never deleted)."""
    if not (output.exists() or output.is_symlink()):
        return
    if output.is_symlink() or not output.is_dir() or not (output / INFO).is_file():
        raise DatasetError(output, "exists and is not a LeRobot dataset (no meta/info.json); "
                                   "robot_rl never replaces it, even with --overwrite: write to "
                                   "another path")
    if not overwrite:
        raise DatasetError(output, f"already exists; {OVERWRITE_HINT}")


def _clear_partial(partial: Path) -> None:
    """An interrupted export leaves ``<out>.partial``: ours to remove, unless it is not one."""
    if not (partial.exists() or partial.is_symlink()):
        return
    if partial.is_symlink() or not partial.is_dir() or (
            any(partial.iterdir()) and not (partial / "meta").is_dir()
            and not (partial / "data").is_dir()):
        raise DatasetError(partial, "is in the way of the export (robot_rl writes the export "
                                    "there first) and is not an interrupted export: move it")
    shutil.rmtree(partial)


def _fps(store: EpisodeStore, fps: int | None) -> int:
    if fps is not None:
        if fps < 1:
            raise ValueError(f"fps must be >= 1, got {fps}")
        return int(fps)
    if "stamp_s" in store.keys:
        stamps = store.read("stamp_s").astype(np.float64)
        steps = np.concatenate([np.diff(s) for s in np.split(stamps, store.episode_ends[:-1])])
        steps = steps[steps > 0]
        if steps.size:
            rate = 1.0 / float(np.median(steps))
            if abs(rate - round(rate)) <= 0.02 * rate:
                return int(round(rate))
            raise DatasetError(store.path, f"its stamp_s key gives {rate:.3f} frames/s, not a "
                                           f"whole number (LeRobot's fps is one): pass --fps")
    raise DatasetError(store.path, "does not record its control rate (no stamp_s key): pass "
                                   "--fps (the valve and drawer tasks act at 20 Hz)")


def _check_names(path: Path, features: Sequence[_Feature]) -> None:
    names: dict[str, str] = {}
    for f in features:
        if f.name in FRAME_FEATURES or f.name == DONE or f.name in names:
            other = names.get(f.name, "LeRobot's own column")
            raise DatasetError(path, f"key '{f.key}' would be LeRobot feature '{f.name}', which "
                                     f"{other} already is: rename the key")
        names[f.name] = f"key '{f.key}'"


@dataclass
class _Stats:
    """Streamed min, max, mean and std (population) of one feature, Chan's parallel update."""

    count: int = 0
    mean: Any = 0.0
    m2: Any = 0.0
    low: Any = None
    high: Any = None

    def add(self, x: np.ndarray) -> None:
        x = x.astype(np.float64)
        n, mean = len(x), x.mean(axis=0)
        m2 = ((x - mean) ** 2).sum(axis=0)
        lo, hi = x.min(axis=0), x.max(axis=0)
        if not self.count:
            self.count, self.mean, self.m2, self.low, self.high = n, mean, m2, lo, hi
            return
        total = self.count + n
        delta = mean - self.mean
        self.mean = self.mean + delta * (n / total)
        self.m2 = self.m2 + m2 + delta ** 2 * (self.count * n / total)
        self.low, self.high = np.minimum(self.low, lo), np.maximum(self.high, hi)
        self.count = total

    def as_json(self) -> dict[str, Any]:
        def plain(v: Any) -> Any:
            return np.asarray(v).tolist()
        return {"min": plain(self.low), "max": plain(self.high), "mean": plain(self.mean),
                "std": plain(np.sqrt(self.m2 / self.count)), "count": [self.count]}


class _ImageStats(_Stats):
    """Per-channel statistics of uint8 frames in [0, 1], shaped [C, 1, 1] as LeRobot's are;
    ``count`` is frames."""

    frames: int = 0

    def add(self, frames: np.ndarray) -> None:
        super().add(frames.reshape(-1, frames.shape[-1]).astype(np.float64) / 255.0)
        self.frames += len(frames)

    def as_json(self) -> dict[str, Any]:
        stats = super().as_json()
        channel = {k: [[[v]] for v in stats[k]] for k in ("min", "max", "mean", "std")}
        return {**channel, "count": [self.frames]}


def _write(pa: Any, store: EpisodeStore, root: Path, features: Sequence[_Feature], fps: int,
           task_text: str | None, codec: str, progress: bool) -> dict[str, Any]:
    import pyarrow.parquet as pq

    root.mkdir(parents=True)
    table_features = [f for f in features if not f.video]
    videos = [f for f in features if f.video]
    schema = _data_schema(pa, table_features)
    data_path = root / DATA_PATH.format(chunk_index=0, file_index=0)
    data_path.parent.mkdir(parents=True)
    writers = {f.key: _VideoWriter(root / VIDEO_PATH.format(video_key=f.name, chunk_index=0,
                                                            file_index=0), f.spec, fps, codec)
               for f in videos}
    stats: dict[str, _Stats] = {f.name: _Stats() for f in table_features}
    stats.update({f.name: _ImageStats() for f in videos})
    for name in (*FRAME_COLUMNS, DONE):
        stats[name] = _Stats()
    tasks: dict[str, int] = {}
    episodes: list[dict[str, Any]] = []
    infos = store.episode_infos()
    first = 0
    done_key = [k for k in ("terminated", "truncated") if k in store.keys]
    try:
        with pq.ParquetWriter(data_path, schema) as data:
            for index in tqdm(range(store.n_episodes), desc="export lerobot", unit="episode",
                              disable=not progress, delay=0.5):
                steps = store.episode(index)
                length = len(next(iter(steps.values())))
                text = task_text or str(infos[index].get("task") or store.attrs["task"])
                task_index = tasks.setdefault(text, len(tasks))
                frame = np.arange(length, dtype=np.int64)
                columns: dict[str, np.ndarray] = {
                    "timestamp": (frame / fps).astype(np.float32), "frame_index": frame,
                    "episode_index": np.full(length, index, np.int64),
                    "index": first + frame, "task_index": np.full(length, task_index, np.int64)}
                for f in table_features:
                    columns[f.name] = steps[f.key]
                if done_key:
                    columns[DONE] = np.logical_or.reduce([steps[k].astype(bool)
                                                          for k in done_key])
                data.write_table(_frame_table(pa, schema, table_features, columns, length))
                for name in (*FRAME_COLUMNS, DONE, *(f.name for f in table_features)):
                    if name in columns:
                        values = columns[name]
                        stats[name].add(values.reshape(length, -1) if values.ndim == 1
                                        else values)
                row = {"episode_index": index, "tasks": [text], "length": length,
                       "data/chunk_index": 0, "data/file_index": 0,
                       "dataset_from_index": first, "dataset_to_index": first + length}
                for f in videos:
                    start = writers[f.key].frames
                    writers[f.key].write(steps[f.key])
                    stats[f.name].add(steps[f.key])
                    row.update({f"videos/{f.name}/chunk_index": 0,
                                f"videos/{f.name}/file_index": 0,
                                f"videos/{f.name}/from_timestamp": start / fps,
                                f"videos/{f.name}/to_timestamp": (start + length) / fps})
                row.update({"meta/episodes/chunk_index": 0, "meta/episodes/file_index": 0})
                episodes.append(row)
                first += length
    finally:
        for writer in writers.values():
            writer.close()
    _write_meta(pa, store, root, features, fps, codec, stats, tasks, episodes, first,
                bool(done_key))
    return {"n_episodes": store.n_episodes, "n_frames": first, "fps": fps,
            "features": [f.name for f in features], "videos": [f.name for f in videos],
            "video_codec": codec, "tasks": list(tasks)}


# ---- parquet columns ------------------------------------------------------------------------
_ARROW_TYPES = {"bool": "bool_", "float16": "float16", "float32": "float32",
                "float64": "float64", "int8": "int8", "int16": "int16", "int32": "int32",
                "int64": "int64", "uint8": "uint8", "uint16": "uint16", "uint32": "uint32",
                "uint64": "uint64"}


def _arrow_type(pa: Any, dtype: np.dtype) -> Any:
    name = str(np.dtype(dtype))
    if name not in _ARROW_TYPES:
        raise DatasetError("<export>", f"dtype {name} has no LeRobot equivalent")
    return getattr(pa, _ARROW_TYPES[name])()


def _hf_array_type(pa: Any) -> Any:
    """Hugging Face datasets' ``Array2D``..``Array5D`` column type, defined here so that writing
    needs only pyarrow: an extension type of that name over nested lists, its shape and dtype
    serialised as datasets serialises them (``[[4, 5], "uint16"]``)."""

    class HFArray(pa.ExtensionType):
        def __init__(self, shape: tuple[int, ...], dtype: str) -> None:
            self.shape, self.value_type_name = tuple(shape), dtype
            storage = _arrow_type(pa, np.dtype(dtype))
            for _ in shape:
                storage = pa.list_(storage)
            super().__init__(storage, f"datasets.features.features.Array{len(shape)}"
                                      f"DExtensionType")

        def __arrow_ext_serialize__(self) -> bytes:
            return json.dumps([list(self.shape), self.value_type_name]).encode()

        @classmethod
        def __arrow_ext_deserialize__(cls, storage_type: Any, serialized: bytes) -> Any:
            shape, dtype = json.loads(serialized)
            return cls(tuple(shape), dtype)

    return HFArray


def _column_type(pa: Any, f: _Feature) -> Any:
    dtype, shape = f.spec.dtype, f.spec.step_shape
    if len(shape) == 0:
        return _arrow_type(pa, dtype)
    if len(shape) == 1:
        return pa.list_(_arrow_type(pa, dtype), shape[0])
    if len(shape) > 5:
        raise DatasetError("<export>", f"key '{f.key}' has {len(shape)} dimensions per step; "
                                       f"LeRobot features have at most 5")
    return _hf_array_type(pa)(shape, str(dtype))


def _hf_feature(f: _Feature) -> dict[str, Any]:
    """The feature as Hugging Face datasets describes it in a parquet file's metadata."""
    dtype, shape = str(f.spec.dtype), f.spec.step_shape
    if len(shape) == 0:
        return {"dtype": dtype, "_type": "Value"}
    if len(shape) == 1:
        return {"feature": {"dtype": dtype, "_type": "Value"}, "length": shape[0],
                "_type": "List"}
    return {"shape": list(shape), "dtype": dtype, "_type": f"Array{len(shape)}D"}


def _data_schema(pa: Any, features: Sequence[_Feature]) -> Any:
    fields = [pa.field(f.name, _column_type(pa, f)) for f in features]
    hf = {f.name: _hf_feature(f) for f in features}
    has_done = any(f.key in ("terminated", "truncated") for f in features)
    if has_done:
        fields.append(pa.field(DONE, pa.bool_()))
        hf[DONE] = {"dtype": "bool", "_type": "Value"}
    for name, dtype in FRAME_FEATURES.items():
        fields.append(pa.field(name, getattr(pa, dtype)()))
        hf[name] = {"dtype": dtype, "_type": "Value"}
    return pa.schema(fields, metadata={"huggingface": json.dumps({"info": {"features": hf}})})


def _nested(pa: Any, values: np.ndarray, dims: Sequence[int]) -> Any:
    """Rows of fixed-shape arrays as nested list arrays (innermost dimension first)."""
    flat = pa.array(np.ascontiguousarray(values).reshape(-1))
    rows = int(np.prod(values.shape[:values.ndim - len(dims)]))
    array, count = flat, rows * int(np.prod(dims))
    for size in reversed(dims):
        count //= size
        array = pa.ListArray.from_arrays(pa.array(np.arange(count + 1, dtype=np.int32) * size),
                                         array)
    return array


def _frame_table(pa: Any, schema: Any, features: Sequence[_Feature],
                 columns: Mapping[str, np.ndarray], length: int) -> Any:
    arrays = []
    by_name = {f.name: f for f in features}
    for field_ in schema:
        values = columns[field_.name]
        f = by_name.get(field_.name)
        if f is None or not f.spec.step_shape:
            arrays.append(pa.array(values, type=field_.type))
        elif len(f.spec.step_shape) == 1:
            flat = pa.array(np.ascontiguousarray(values).reshape(-1))
            arrays.append(pa.FixedSizeListArray.from_arrays(flat, f.spec.step_shape[0]))
        else:
            storage = _nested(pa, values, f.spec.step_shape)
            arrays.append(pa.ExtensionArray.from_storage(field_.type, storage))
    return pa.Table.from_arrays(arrays, schema=schema)


# ---- videos ---------------------------------------------------------------------------------
class _VideoWriter:
    """One camera's MP4: frames of every episode in turn, frame k at k / fps."""

    def __init__(self, path: Path, spec: KeySpec, fps: int, codec: str) -> None:
        import imageio_ffmpeg

        path.parent.mkdir(parents=True, exist_ok=True)
        height, width, _ = spec.step_shape
        encoder, pix_fmt, options = VIDEO_CODECS[codec]
        self.path, self.frames = path, 0
        self._writer = imageio_ffmpeg.write_frames(
            str(path), (width, height), fps=fps, codec=encoder, pix_fmt_in="rgb24",
            pix_fmt_out=pix_fmt, quality=None, bitrate=None, macro_block_size=1,
            output_params=[*options, "-g", str(GOP_FRAMES)], ffmpeg_log_level="error")
        self._writer.send(None)

    def write(self, frames: np.ndarray) -> None:
        for frame in frames:
            self._writer.send(np.ascontiguousarray(frame))
        self.frames += len(frames)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


# ---- meta -----------------------------------------------------------------------------------
def _write_meta(pa: Any, store: EpisodeStore, root: Path, features: Sequence[_Feature], fps: int,
                codec: str, stats: Mapping[str, _Stats], tasks: Mapping[str, int],
                episodes: Sequence[dict[str, Any]], n_frames: int, has_done: bool) -> None:
    import pyarrow.parquet as pq

    described = {f.name: f.describe(fps, codec) for f in features}
    if has_done:
        described[DONE] = {"dtype": "bool", "shape": [1], "names": None}
    for name, dtype in FRAME_FEATURES.items():
        described[name] = {"dtype": dtype, "shape": [1], "names": None}
    attrs = store.attrs
    info = {"codebase_version": CODEBASE_VERSION, "robot_type": attrs["robot"],
            "total_episodes": len(episodes), "total_frames": n_frames, "total_tasks": len(tasks),
            "chunks_size": CHUNKS_SIZE, "data_files_size_in_mb": DATA_FILE_MB,
            "video_files_size_in_mb": VIDEO_FILE_MB, "fps": fps,
            "splits": {"train": f"0:{len(episodes)}"}, "data_path": DATA_PATH,
            "video_path": VIDEO_PATH if any(f.video for f in features) else None,
            "features": described}
    _write_json(root / INFO, info)
    _write_json(root / STATS, {name: s.as_json() for name, s in stats.items() if s.count})
    (root / EPISODES).parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(list(episodes)), root / EPISODES)
    pq.write_table(_tasks_table(pa, tasks), root / TASKS)
    _write_json(root / SIDECAR, {
        "format": "robot_rl", "version": SIDECAR_FORMAT, "source": str(store.path),
        "attrs": {k: attrs[k] for k in ("robot", "task", "calibration_digest", "units", "extra",
                                        "format_version", "software_version") if k in attrs},
        "keys": {f.key: {"feature": f.name, "dtype": str(f.spec.dtype),
                         "step_shape": list(f.spec.step_shape)} for f in features},
        "derived": [DONE] if has_done else [],
        "episode_info": store.episode_infos()})


def _tasks_table(pa: Any, tasks: Mapping[str, int]) -> Any:
    """meta/tasks.parquet as pandas writes it: the task strings are the index (LeRobot looks a
    task up by ``tasks.loc[text]``), task_index the one column."""
    names = list(tasks)
    pandas_meta = {
        "index_columns": ["__index_level_0__"],
        "column_indexes": [{"name": None, "field_name": None, "pandas_type": "unicode",
                            "numpy_type": "object", "metadata": {"encoding": "UTF-8"}}],
        "columns": [{"name": "task_index", "field_name": "task_index", "pandas_type": "int64",
                     "numpy_type": "int64", "metadata": None},
                    {"name": None, "field_name": "__index_level_0__", "pandas_type": "unicode",
                     "numpy_type": "object", "metadata": None}],
        "attributes": {}, "creator": {"library": "pyarrow", "version": pa.__version__},
        "pandas_version": "2.2.0"}
    table = pa.table({"task_index": pa.array([tasks[n] for n in names], pa.int64()),
                      "__index_level_0__": pa.array(names, pa.string())})
    return table.replace_schema_metadata({"pandas": json.dumps(pandas_meta)})


def _write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, allow_nan=False))


# ------------------------------------------------------------------------------------- import
def import_lerobot(input: str | os.PathLike[str], output: str | os.PathLike[str], *,
                   robot: str | None = None, task: str | None = None,
                   calibration_digest: str | None = None, overwrite: bool = False,
                   progress: bool = False) -> dict[str, Any]:
    """Read the LeRobotDataset v3.0 folder ``input`` into a new episode store ``output``.

    A dataset exported by robot_rl (``meta/robot_rl.json``) comes back as it was: keys, dtypes,
    shapes, attributes and episode info. Another LeRobot dataset is read by
    :data:`FEATURE_NAMES` backwards; ``robot``, ``task`` and ``calibration_digest`` name its
    source (defaults: its ``robot_type``, its one task string, ``unknown``), and a timestamp off
    the ``frame_index / fps`` grid is kept as a ``timestamp`` key rather than dropped.
    Nothing is left at ``output`` if the import fails.
    """
    _pyarrow(input)
    source = Path(input)
    info = _read_info(source)
    fps = int(info["fps"])
    sidecar = _read_json(source / SIDECAR) if (source / SIDECAR).is_file() else None
    episodes = _read_episodes(source)
    data = _read_data(source)
    features = info["features"]
    plan = _import_plan(source, features, sidecar)
    attrs = _import_attrs(source, info, sidecar, episodes, robot, task, calibration_digest)
    infos = sidecar["episode_info"] if sidecar else None
    out = Path(output)
    created = False
    try:
        store = EpisodeStore.create(out, robot=attrs["robot"], task=attrs["task"],
                                    calibration_digest=attrs["calibration_digest"],
                                    units=attrs["units"], extra=attrs["extra"],
                                    overwrite=overwrite)
        created = True
        with store, _VideoReaders(source, info, fps) as videos:
            episode_index = data["episode_index"]
            for row in tqdm(episodes, desc="import lerobot", unit="episode",
                            disable=not progress, delay=0.5):
                index = int(row["episode_index"])
                rows = np.flatnonzero(episode_index == index)
                steps = _episode_steps(source, data, rows, row, plan, fps, videos)
                episode_info = (dict(infos[index]) if infos is not None and index < len(infos)
                                else {"task": row["tasks"][0] if row.get("tasks") else "",
                                      "source_episode": index})
                store.add_episode(steps, episode_info)
            summary = {"output": str(out), "n_episodes": store.n_episodes,
                       "n_steps": store.n_steps, "keys": list(store.keys), "fps": fps,
                       "exact": sidecar is not None}
    except BaseException:
        if created:
            remove_store(out)
        raise
    return summary


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise DatasetError(path, f"unreadable JSON: {first_line(err)}") from err


def _read_info(root: Path) -> dict[str, Any]:
    if not root.is_dir():
        raise DatasetError(root, "no such LeRobot dataset (expected a folder with meta/info.json)")
    if not (root / INFO).is_file():
        raise DatasetError(root, "not a LeRobot dataset: no meta/info.json")
    info = _read_json(root / INFO)
    version = info.get("codebase_version")
    if version != CODEBASE_VERSION:
        raise DatasetError(root / INFO, f"codebase_version {version!r}: robot_rl reads "
                                        f"LeRobotDataset {CODEBASE_VERSION} (convert older ones "
                                        f"with lerobot's convert_dataset_v21_to_v30)")
    for name in ("fps", "features"):
        if name not in info:
            raise DatasetError(root / INFO, f"missing '{name}'")
    return info


def _parquet_files(root: Path, folder: str) -> list[Path]:
    files = sorted((root / folder).glob("*/*.parquet"))
    if not files:
        raise DatasetError(root, f"no parquet files under {folder}/")
    return files


def _read_episodes(root: Path) -> list[dict[str, Any]]:
    import pyarrow.parquet as pq

    rows: list[dict[str, Any]] = []
    for path in _parquet_files(root, "meta/episodes"):
        table = pq.read_table(path)
        keep = [c for c in table.column_names if not c.startswith("stats/")]
        rows += table.select(keep).to_pylist()
    return sorted(rows, key=lambda r: int(r["episode_index"]))


def _read_data(root: Path) -> dict[str, Any]:
    """Every data file's columns, concatenated (low-dimensional: the videos are read apart)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    tables = [pq.read_table(path) for path in _parquet_files(root, "data")]
    table = pa.concat_tables(tables) if len(tables) > 1 else tables[0]
    columns = {name: table.column(name).combine_chunks() for name in table.column_names}
    for name in ("episode_index", "frame_index"):
        if name not in columns:
            raise DatasetError(root, f"data files have no '{name}' column")
    columns["episode_index"] = columns["episode_index"].to_numpy(zero_copy_only=False)
    return columns


@dataclass(frozen=True)
class _Target:
    """Where one LeRobot feature goes: a store key, its dtype and per-step shape."""

    feature: str
    key: str
    dtype: np.dtype
    step_shape: tuple[int, ...]
    kind: str  # "column", "video" or "image"


def _import_plan(root: Path, features: Mapping[str, Any],
                 sidecar: Mapping[str, Any] | None) -> list[_Target]:
    if sidecar is not None:
        if sidecar.get("version") != SIDECAR_FORMAT:
            raise DatasetError(root / SIDECAR, f"version {sidecar.get('version')!r}; this "
                                               f"robot_rl reads {SIDECAR_FORMAT}")
        plan = []
        for key, k in sidecar["keys"].items():
            if k["feature"] not in features:
                raise DatasetError(root / INFO, f"feature '{k['feature']}' (key '{key}' in "
                                                f"{SIDECAR}) is missing")
            kind = features[k["feature"]]["dtype"]
            plan.append(_Target(k["feature"], key, np.dtype(k["dtype"]),
                                tuple(k["step_shape"]), kind if kind in ("video", "image")
                                else "column"))
        return plan
    by_name = {v: k for k, v in FEATURE_NAMES.items()}
    if DONE in features and "next.terminated" not in features:
        by_name[DONE] = "terminated"
    plan = []
    for name, feature in features.items():
        if name in FRAME_FEATURES or (name == DONE and by_name.get(DONE) is None):
            continue
        kind = feature["dtype"]
        shape = tuple(int(s) for s in feature["shape"])
        if kind in ("video", "image"):
            key = name[len(VIDEO_PREFIX):] if name.startswith(VIDEO_PREFIX) else name
            plan.append(_Target(name, key.replace("/", "_"), np.dtype(np.uint8), shape, kind))
            continue
        key = by_name.get(name, name)
        if key in SCALAR_KEYS and shape == (1,):
            shape = ()
        plan.append(_Target(name, key, np.dtype(kind), shape, "column"))
    return plan


def _import_attrs(root: Path, info: Mapping[str, Any], sidecar: Mapping[str, Any] | None,
                  episodes: Sequence[Mapping[str, Any]], robot: str | None, task: str | None,
                  calibration_digest: str | None) -> dict[str, Any]:
    if sidecar is not None:
        attrs = dict(sidecar["attrs"])
    else:
        texts = sorted({t for row in episodes for t in (row.get("tasks") or [])})
        attrs = {"robot": info.get("robot_type") or "unknown",
                 "task": texts[0] if len(texts) == 1 else "unknown",
                 "calibration_digest": "unknown", "units": {},
                 "extra": {"imported_from": {"format": f"LeRobotDataset {CODEBASE_VERSION}",
                                             "path": str(root), "fps": info["fps"]}}}
    for name, value in (("robot", robot), ("task", task),
                        ("calibration_digest", calibration_digest)):
        if value is not None:
            attrs[name] = value
    attrs.setdefault("extra", {})
    attrs.setdefault("units", {})
    return attrs


def _episode_steps(root: Path, data: Mapping[str, Any], rows: np.ndarray,
                   episode: Mapping[str, Any], plan: Sequence[_Target], fps: int,
                   videos: _VideoReaders) -> dict[str, np.ndarray]:
    index = int(episode["episode_index"])
    length = int(episode["length"])
    if len(rows) != length or (len(rows) and rows[-1] - rows[0] + 1 != len(rows)):
        raise DatasetError(root, f"episode {index}: meta/episodes says {length} frames, the data "
                                 f"files hold {len(rows)} (contiguous: "
                                 f"{bool(len(rows)) and rows[-1] - rows[0] + 1 == len(rows)})")
    start = int(rows[0]) if len(rows) else 0
    frames = data["frame_index"].slice(start, length).to_numpy(zero_copy_only=False)
    if not np.array_equal(frames, np.arange(length)):
        raise DatasetError(root, f"episode {index}: frame_index is not 0..{length - 1} in order")
    steps: dict[str, np.ndarray] = {}
    for target in plan:
        if target.kind == "video":
            steps[target.key] = videos.frames(target.feature, episode, length)
        elif target.kind == "image":
            steps[target.key] = _decode_images(root, data[target.feature].slice(start, length),
                                               target.feature)
        else:
            column = data.get(target.feature)
            if column is None:
                raise DatasetError(root, f"data files have no column '{target.feature}'")
            values = _column_values(column.slice(start, length), target.step_shape or (1,))
            steps[target.key] = values.reshape(length, *target.step_shape).astype(target.dtype)
    if "timestamp" in data and "timestamp" not in steps:
        stamps = data["timestamp"].slice(start, length).to_numpy(zero_copy_only=False)
        if np.abs(stamps.astype(np.float64) - frames / fps).max(initial=0.0) > \
                TIMESTAMP_TOLERANCE_S:
            steps["timestamp"] = stamps.astype(np.float64)  # off the grid: kept, not lost
    return steps


def _column_values(column: Any, shape: tuple[int, ...]) -> np.ndarray:
    """A column of scalars, fixed-size lists or nested lists as an array [T, *shape]."""
    import pyarrow as pa

    array = column.storage if isinstance(column, pa.ExtensionArray) else column
    while pa.types.is_list(array.type) or pa.types.is_fixed_size_list(array.type) or \
            pa.types.is_large_list(array.type):
        array = array.flatten()
    values = array.to_numpy(zero_copy_only=False)
    return values.reshape(len(column), *shape)


def _decode_images(root: Path, column: Any, name: str) -> np.ndarray:
    """A LeRobot ``image`` feature (PNG or JPEG bytes per frame) as [T, H, W, C] uint8."""
    import io

    from PIL import Image

    frames = []
    for cell in column.to_pylist():
        data = cell.get("bytes") if isinstance(cell, dict) else None
        if data is None and isinstance(cell, dict) and cell.get("path"):
            data = (root / cell["path"]).read_bytes()
        if data is None:
            raise DatasetError(root, f"feature '{name}': a frame has no image bytes")
        frames.append(np.asarray(Image.open(io.BytesIO(data)).convert("RGB")))
    return np.stack(frames)


class _VideoReaders:
    """Frames of each camera's MP4s, read forward from where the last episode ended."""

    def __init__(self, root: Path, info: Mapping[str, Any], fps: int) -> None:
        self.root, self.fps = root, fps
        self.template = info.get("video_path") or VIDEO_PATH
        self._open: dict[str, tuple[Path, Iterator[bytes], int, tuple[int, int]]] = {}

    def __enter__(self) -> _VideoReaders:
        return self

    def __exit__(self, *exc: object) -> None:
        for _, frames, _, _ in self._open.values():
            frames.close()
        self._open = {}

    def frames(self, feature: str, episode: Mapping[str, Any], length: int) -> np.ndarray:
        path = self.root / self.template.format(
            video_key=feature, chunk_index=int(episode[f"videos/{feature}/chunk_index"]),
            file_index=int(episode[f"videos/{feature}/file_index"]))
        first = int(round(float(episode[f"videos/{feature}/from_timestamp"]) * self.fps))
        current = self._open.get(feature)
        if current is None or current[0] != path or current[2] > first:
            current = self._start(feature, path)
        _, reader, position, (width, height) = current
        out = []
        try:
            while position < first + length:
                raw = next(reader)
                if position >= first:
                    out.append(np.frombuffer(raw, np.uint8).reshape(height, width, 3))
                position += 1
        except StopIteration:
            raise DatasetError(path, f"episode {episode['episode_index']}: the video ends at "
                                     f"frame {position}, the episode needs frames {first}.."
                                     f"{first + length - 1}") from None
        self._open[feature] = (path, reader, position, (width, height))
        return np.stack(out)

    def _start(self, feature: str, path: Path) -> tuple[Path, Iterator[bytes], int,
                                                          tuple[int, int]]:
        import imageio_ffmpeg

        if feature in self._open:
            self._open[feature][1].close()
        if not path.is_file():
            raise DatasetError(path, "missing video file")
        reader = imageio_ffmpeg.read_frames(str(path), pix_fmt="rgb24")
        try:
            meta = next(reader)
        except Exception as err:  # ffmpeg's errors are long: one line naming the file
            raise DatasetError(path, f"unreadable video: {first_line(err)}") from err
        return path, reader, 0, tuple(meta["size"])


__all__ = ["CODEBASE_VERSION", "FEATURE_NAMES", "VIDEO_CODECS", "export_lerobot",
           "feature_name", "import_lerobot"]
