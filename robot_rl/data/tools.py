"""Dataset tools: info, validate, merge, split, filter, stats (plus rosbag import and export).

Each returns data (printing is the CLI's job) and streams episode by episode, so memory stays
about one episode whatever the dataset size.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import zarr
from tqdm.auto import tqdm

from robot_rl.data.errors import DatasetError, SchemaError, first_line
from robot_rl.data.robomimic import export_robomimic_hdf5
from robot_rl.data.rosbag_import import import_rosbag
from robot_rl.data.schema import KeySpec
from robot_rl.data.store import (
    ENDS_PATH,
    FORMAT_VERSION,
    INFO_PATH,
    OVERWRITE_HINT,
    REQUIRED_ATTRS,
    VALIDATE_HINT,
    CheckedDirectoryStore,
    EpisodeStore,
    check_removable,
    damage_named,
    missing_chunks,
    read_rows,
)

PathLike = str | os.PathLike[str]
InfoPredicate = Callable[[dict], bool] | Mapping[str, Any]

# The learning pipeline's standard keys: (dtype, dims per step or None when any).
STANDARD_KEYS: dict[str, tuple[str, int | None]] = {
    "observation": ("float32", 1), "next_observation": ("float32", 1), "action": ("float32", 1),
    "reward": ("float32", 0), "terminated": ("bool", 0), "truncated": ("bool", 0),
    "camera_color": ("uint8", 3), "camera_depth": ("uint16", 2),
}
# Raw sensor keys a cell may not measure: NaN there means "not measured" (the recorder writes it
# where no topic reports the value: no temperature from a ros2_control arm, no object sensor on a
# camera-only cell), so validate accepts NaN in them; an infinity is still an error.
UNMEASURED_AS_NAN = frozenset({"joint_effort_a", "temperature_c", "object_position",
                               "object_velocity"})


# --------------------------------------------------------------------------------------- info
def info(path: PathLike) -> dict[str, Any]:
    """Summary of a dataset: attributes, episode counts and lengths, per-key schema and size."""
    store = EpisodeStore.open(path, "r")
    attrs = store.attrs
    lengths = store.episode_lengths
    raw = zarr.open_group(CheckedDirectoryStore(str(store.path)), mode="r")
    rows_on_disk = max([0, *(a.shape[0] for _, a in raw["data"].arrays() if a.ndim)])
    keys = {}
    for key, spec in store.specs.items():
        arr = raw["data"][key]
        keys[key] = {"dtype": str(spec.dtype), "step_shape": list(spec.step_shape),
                     "unit": attrs["units"].get(key), "chunk_steps": int(arr.chunks[0]),
                     "image": spec.is_image, "stored_bytes": int(arr.nbytes_stored),
                     "raw_bytes": int(spec.dtype.itemsize * math.prod(spec.step_shape)
                                      * store.n_steps)}
    successes = [row.get("success") for row in store.episode_infos()]  # one read
    labelled = [s for s in successes if isinstance(s, bool)]
    return {
        "path": str(store.path), "format_version": attrs["format_version"],
        "robot": attrs["robot"], "task": attrs["task"],
        "calibration_digest": attrs["calibration_digest"], "units": attrs["units"],
        "software_version": attrs.get("software_version"), "extra": attrs.get("extra", {}),
        "n_episodes": store.n_episodes, "n_steps": store.n_steps,
        "episode_length": ({"min": int(lengths.min()), "mean": float(lengths.mean()),
                            "max": int(lengths.max())} if len(lengths) else None),
        "success": {"labelled": len(labelled), "succeeded": sum(labelled)},
        "uncommitted_steps": max(0, rows_on_disk - store.n_steps),
        "keys": keys,
    }


# ----------------------------------------------------------------------------------- validate
@dataclass(frozen=True)
class Problem:
    """One thing wrong with a dataset, at an exact episode and key where that applies."""

    severity: Literal["error", "warning"]
    message: str
    episode: int | None = None
    key: str | None = None

    def __str__(self) -> str:
        where = [f"episode {self.episode}" if self.episode is not None else "",
                 f"key '{self.key}'" if self.key is not None else ""]
        where_text = ", ".join(w for w in where if w)
        return f"{self.severity}: {where_text + ': ' if where_text else ''}{self.message}"


def validate(path: PathLike, *, check_all_keys: bool = True,
             progress: bool = False) -> list[Problem]:
    """Check a dataset without trusting it: layout, commit marks, info rows, schema, that every
    chunk the committed rows need is present, and that every float value is finite (NaN allowed
    in UNMEASURED_AS_NAN's sensor keys, where it means "not measured").

    Values are read episode by episode; with ``check_all_keys`` every non-float key is read too,
    so an unreadable chunk is reported at its episode. Chunk presence is checked for every key
    either way (an absent int, bool or image chunk would read as zeros). ``progress`` shows a bar
    on stderr once the scan takes more than half a second.
    """
    path = Path(path)
    problems: list[Problem] = []
    try:
        raw = _open_raw(path)
        ends_array = raw[ENDS_PATH]
        ends = read_rows(path, ends_array, ENDS_PATH).astype(np.int64)
    except DatasetError as err:
        return [Problem("error", _problem(err))]
    n = _check_ends(ends, problems)
    n_steps = int(ends[n - 1]) if n else 0
    committed_ends = ends[:n]
    _check_info_rows(path, raw, n, problems)
    try:
        arrays = _check_arrays(path, raw, committed_ends, n_steps, problems)
    except DatasetError as err:  # the data group itself is unreadable: nothing more to check
        return [*problems, Problem("error", _problem(err))]
    _check_standard_keys(arrays, problems)
    absent = _check_chunks_present(arrays, committed_ends, n_steps, problems)
    scanned = {k: a for k, a in arrays.items() if check_all_keys or a.dtype.kind in "fc"}
    bar = tqdm(total=n_steps, unit="step", desc=f"validate {path.name}", delay=0.5,
               disable=not progress or not scanned, leave=False)
    for index in range(n):
        start = int(committed_ends[index - 1]) if index else 0
        end = int(committed_ends[index])
        for key, arr in scanned.items():
            if end > arr.shape[0] or index in absent.get(key, ()):
                continue  # reported as truncated, or its chunk as missing
            problem = _scan_rows(arr, start, end, nan_allowed=key in UNMEASURED_AS_NAN)
            if problem:
                problems.append(Problem("error", problem, index, key))
        bar.update(end - start)
    bar.close()
    return problems


def _scan_rows(arr: zarr.Array, start: int, end: int, nan_allowed: bool = False) -> str | None:
    """What is wrong with rows [start, end) of one key: unreadable, or non-finite floats (NaN
    allowed where ``nan_allowed``: a sensor value not measured)."""
    try:
        rows = arr[start:end]
    except Exception as err:  # damaged chunk: blosc/zarr raise assorted types
        return f"unreadable chunk ({first_line(err)})"
    if arr.dtype.kind in "fc":
        bad = np.isinf(rows) if nan_allowed else ~np.isfinite(rows)
        if bad.any():
            step = int(np.argwhere(bad)[0][0])
            kind = "infinite value(s)" if nan_allowed else "non-finite value(s) (NaN/inf)"
            return f"{int(bad.sum())} {kind}, first at step {step}"
    return None


def _problem(err: DatasetError) -> str:
    """A store error as a validate problem: without the hint to run validate."""
    return err.problem.removesuffix(f": {VALIDATE_HINT}")


def _open_raw(path: Path) -> zarr.Group:
    if not (path / ".zgroup").is_file():
        raise DatasetError(path, "not a zarr group (no .zgroup): not a robot_rl dataset")
    try:
        raw = zarr.open_group(CheckedDirectoryStore(str(path)), mode="r")
        attrs = raw.attrs.asdict()
    except Exception as err:  # damaged metadata
        raise DatasetError(path, f"unreadable zarr metadata: {first_line(err)}") from err
    if attrs.get("format_version") != FORMAT_VERSION:
        raise DatasetError(path, f"format_version {attrs.get('format_version')!r} is not "
                                 f"{FORMAT_VERSION}")
    missing = [a for a in REQUIRED_ATTRS if a not in attrs]
    for name in (ENDS_PATH, INFO_PATH, "data", "meta"):
        with damage_named(path, name):
            if name not in raw:
                missing.append(name)
    if missing:
        raise DatasetError(path, f"missing {missing}")
    for name in (ENDS_PATH, INFO_PATH, "data", "meta"):
        with damage_named(path, name):
            raw[name]  # parses the metadata: a damaged .zarray or .zgroup says so here
    return raw


def _check_ends(ends: np.ndarray, problems: list[Problem]) -> int:
    """Report non-increasing ends; returns how many leading episodes are well formed."""
    steps = np.diff(ends, prepend=0)
    bad = np.flatnonzero(steps <= 0)
    for i in bad:
        prev = int(ends[i - 1]) if i else 0
        problems.append(Problem("error", f"episode_ends not increasing: end {int(ends[i])} "
                                         f"after {prev}", int(i)))
    return int(bad[0]) if bad.size else len(ends)


def _check_info_rows(path: Path, raw: zarr.Group, n: int, problems: list[Problem]) -> None:
    info_array = raw[INFO_PATH]
    rows = len(info_array)
    for i in range(rows, n):
        problems.append(Problem("error", "episode_info row missing", i))
    if rows > n:
        problems.append(Problem("warning", f"{rows - n} uncommitted episode_info row(s) past the "
                                           f"last committed episode"))
    try:
        texts = read_rows(path, info_array, INFO_PATH, 0, min(rows, n))
    except DatasetError as err:
        problems.append(Problem("error", _problem(err)))
        return
    for i, text in enumerate(texts):
        try:
            ok = isinstance(json.loads(text), dict)
        except (TypeError, ValueError):
            ok = False
        if not ok:
            problems.append(Problem("error", "episode_info row is not a JSON object", i))


def _check_arrays(path: Path, raw: zarr.Group, ends: np.ndarray, n_steps: int,
                  problems: list[Problem]) -> dict[str, zarr.Array]:
    with damage_named(path, "data"):
        keys, groups = list(raw["data"].array_keys()), list(raw["data"].group_keys())
    for name in groups:
        problems.append(Problem("error", "a group where a data array belongs", key=name))
    for name in _folders_without_metadata(path, keys, groups):
        # the key's .zarray is lost (zarr then does not list it); a crash while the first
        # episode created its arrays leaves the same, and nothing is committed then
        problems.append(Problem("error" if n_steps else "warning",
                                "a folder without .zarray: the array's metadata is lost",
                                key=name))
    arrays = {}
    for key in keys:
        try:
            arrays[key] = raw["data"][key]
        except Exception as err:  # damaged .zarray: zarr and json raise assorted types
            problems.append(Problem("error", f"unreadable metadata ({first_line(err)})",
                                    key=key))
    for key, arr in arrays.items():
        rows = arr.shape[0] if arr.ndim else 0
        if arr.ndim == 0:
            problems.append(Problem("error", "data array is 0-D (not time-major)", key=key))
        elif rows < n_steps:
            first = int(np.searchsorted(ends, rows, side="right"))
            problems.append(Problem("error", f"truncated: {rows} rows but committed episodes "
                                             f"need {n_steps}", first, key))
        elif rows > n_steps:
            problems.append(Problem("warning", f"uncommitted tail: {rows - n_steps} row(s) past "
                                               f"episode_ends[-1] (opening for append trims it)",
                                    key=key))
    return {k: a for k, a in arrays.items() if a.ndim}


def _folders_without_metadata(path: Path, keys: Sequence[str],
                              groups: Sequence[str]) -> list[str]:
    folder = path / "data"
    known = {*keys, *groups}
    return sorted(p.name for p in folder.iterdir()
                  if p.is_dir() and p.name not in known) if folder.is_dir() else []


def _check_chunks_present(arrays: Mapping[str, zarr.Array], ends: np.ndarray, n_steps: int,
                          problems: list[Problem]) -> dict[str, set[int]]:
    """One problem per key whose committed rows need an absent chunk; returns, per key, the
    episodes those chunks hold (their values are not scanned: there are none)."""
    absent: dict[str, set[int]] = {}
    for key, arr in arrays.items():
        missing = missing_chunks(arr, 0, n_steps)
        if not missing:
            continue
        rows = arr.chunks[0]
        episodes: set[int] = set()
        for chunk in missing:
            first = int(np.searchsorted(ends, chunk * rows, side="right"))
            last = int(np.searchsorted(ends, min((chunk + 1) * rows, n_steps) - 1, side="right"))
            episodes.update(range(first, last + 1))
        absent[key] = episodes
        first = missing[0]
        problems.append(Problem(
            "error", f"{len(missing)} chunk(s) missing, the first chunk {first} (rows "
                     f"{first * rows}:{min((first + 1) * rows, n_steps)}); episode(s) "
                     f"{_ranges(sorted(episodes))} have no values there", min(episodes), key))
    return absent


def _ranges(values: Sequence[int]) -> str:
    """[0, 1, 2, 5, 7, 8] -> '0-2, 5, 7-8' (at most 6 runs, then '...')."""
    runs: list[list[int]] = []
    for v in values:
        if runs and v == runs[-1][1] + 1:
            runs[-1][1] = v
        else:
            runs.append([v, v])
    text = [f"{a}-{b}" if b > a else f"{a}" for a, b in runs[:6]]
    return ", ".join(text) + (", ..." if len(runs) > 6 else "")


def _check_standard_keys(arrays: Mapping[str, zarr.Array], problems: list[Problem]) -> None:
    for key, arr in arrays.items():
        if key not in STANDARD_KEYS:
            continue
        dtype, dims = STANDARD_KEYS[key]
        step_ndim = arr.ndim - 1
        if str(arr.dtype) != dtype or (dims is not None and step_ndim != dims):
            problems.append(Problem("error", f"expected {dtype} with {dims} dim(s) per step, "
                                             f"got {arr.dtype} {list(arr.shape[1:])}", key=key))
    if "observation" in arrays and "next_observation" in arrays:
        a, b = arrays["observation"], arrays["next_observation"]
        if a.dtype != b.dtype or a.shape[1:] != b.shape[1:]:
            problems.append(Problem("error", f"next_observation {b.dtype}{list(b.shape[1:])} "
                                             f"differs from observation "
                                             f"{a.dtype}{list(a.shape[1:])}",
                                    key="next_observation"))
    if "camera_color" in arrays and arrays["camera_color"].shape[-1:] != (3,):
        problems.append(Problem("error", "camera_color must be [T, H, W, 3]", key="camera_color"))


# ------------------------------------------------------------------------- merge/split/filter
def _create_like(source: EpisodeStore, output: PathLike, extra: Mapping[str, Any],
                 overwrite: bool) -> EpisodeStore:
    attrs = source.attrs
    return EpisodeStore.create(output, robot=attrs["robot"], task=attrs["task"],
                               calibration_digest=attrs["calibration_digest"],
                               units=attrs["units"], extra={**attrs.get("extra", {}), **extra},
                               overwrite=overwrite)


def _bar(total: int, desc: str, progress: bool) -> Any:
    """A progress bar on stderr, drawn once the work takes more than half a second."""
    return tqdm(total=total, desc=desc, unit="episode", disable=not progress, delay=0.5)


def _copy_episode(source: EpisodeStore, index: int, target: EpisodeStore) -> int:
    row = source.episode_info(index)
    row.setdefault("source_path", str(source.path))
    row.setdefault("source_episode", index)
    return target.add_episode(source.episode(index), row)


def _refuse_same_path(inputs: Sequence[PathLike], output: PathLike) -> None:
    out = Path(output).resolve()
    for p in inputs:
        if Path(p).resolve() == out:
            raise DatasetError(output, "output is also an input; write to a new path")


def check_outputs(outputs: Sequence[PathLike], overwrite: bool) -> None:
    """Refuses, before anything is written, an output that exists (without ``overwrite``) or that
    would not be deleted (a file, a foreign folder): a tool with several outputs then never
    leaves some written and the rest refused."""
    for output in outputs:
        path = Path(output)
        if path.exists() or path.is_symlink():
            check_removable(path)
            if not overwrite:
                raise DatasetError(path, f"already exists; {OVERWRITE_HINT}")


def merge(inputs: Sequence[PathLike], output: PathLike, *, force: bool = False,
          overwrite: bool = False, progress: bool = False) -> dict[str, Any]:
    """Concatenate datasets; refuses different robots, tasks or units unless ``force``."""
    if not inputs:
        raise ValueError("merge needs at least one input")
    _refuse_same_path(inputs, output)
    check_outputs([output], overwrite)
    sources = [EpisodeStore.open(p, "r") for p in inputs]
    first = sources[0]
    for src in sources[1:]:
        for name in ("robot", "task", "units"):
            if src.attrs[name] != first.attrs[name] and not force:
                raise DatasetError(src.path, f"{name} {src.attrs[name]!r} differs from "
                                             f"{first.path}'s {first.attrs[name]!r}; "
                                             f"pass --force (force=True) to merge anyway")
    with_data = [s for s in sources if s.n_episodes]
    for src in with_data[1:]:
        if src.specs != with_data[0].specs:
            raise SchemaError(src.path, f"keys/dtypes/shapes "
                                        f"{_describe(src.specs)} differ from "
                                        f"{with_data[0].path}'s {_describe(with_data[0].specs)}")
    provenance = [{"path": str(s.path), "robot": s.attrs["robot"], "task": s.attrs["task"],
                   "calibration_digest": s.attrs["calibration_digest"],
                   "episodes": s.n_episodes} for s in sources]
    target = _create_like(first, output, {"merged_from": provenance}, overwrite)
    with _bar(sum(s.n_episodes for s in sources), "merge", progress) as bar:
        for src in sources:
            for index in range(src.n_episodes):
                _copy_episode(src, index, target)
                bar.update()
    return {"output": str(target.path), "n_episodes": target.n_episodes,
            "n_steps": target.n_steps, "sources": provenance}


def _describe(specs: Mapping[str, KeySpec]) -> str:
    return "{" + ", ".join(f"{k}: {s.describe()}" for k, s in specs.items()) + "}"


def split(input: PathLike, outputs: Mapping[PathLike, float], seed: int = 0, *,
          overwrite: bool = False, progress: bool = False) -> dict[str, list[int]]:
    """Shuffle episodes with ``seed`` and deal them to outputs by fraction (summing to 1).

    Returns output -> the input episode indices it received (each in original order).
    """
    if not outputs:
        raise ValueError("split needs at least one output")
    fractions = {str(k): float(v) for k, v in outputs.items()}
    if any(not (f > 0) for f in fractions.values()) or abs(sum(fractions.values()) - 1) > 1e-6:
        raise ValueError(f"split fractions must be positive and sum to 1, got {fractions}")
    for name in fractions:
        _refuse_same_path([input], name)
    if len({Path(o).resolve() for o in fractions}) != len(fractions):
        raise ValueError(f"split outputs must be distinct paths, got {list(fractions)}")
    check_outputs(list(fractions), overwrite)
    source = EpisodeStore.open(input, "r")
    counts = _largest_remainder(list(fractions.values()), source.n_episodes)
    order = np.random.default_rng(seed).permutation(source.n_episodes)
    assignment: dict[str, list[int]] = {}
    offset = 0
    for name, count in zip(fractions, counts):
        assignment[name] = sorted(int(i) for i in order[offset:offset + count])
        offset += count
    owner = {i: name for name, idx in assignment.items() for i in idx}
    targets = {name: _create_like(source, name, {"split_from": {
        "path": str(source.path), "seed": seed, "fraction": fractions[name]}}, overwrite)
        for name in fractions}
    for index in tqdm(range(source.n_episodes), desc="split", unit="episode",
                      disable=not progress, delay=0.5):
        _copy_episode(source, index, targets[owner[index]])
    return assignment


def _largest_remainder(fractions: Sequence[float], n: int) -> list[int]:
    exact = [f * n for f in fractions]
    counts = [math.floor(x) for x in exact]
    by_remainder = sorted(range(len(exact)), key=lambda i: counts[i] - exact[i])
    for i in by_remainder[:n - sum(counts)]:
        counts[i] += 1
    return counts


def filter(input: PathLike, output: PathLike, predicate: InfoPredicate, *,
           overwrite: bool = False, progress: bool = False) -> list[int]:
    """Copy the episodes whose episode_info satisfies ``predicate``; returns their indices.

    ``predicate`` is a callable on the info dict, or a mapping of required values
    (``{"success": True}``). Refused before anything is written: a field that no episode's info
    has (a misspelt field would otherwise write an empty dataset), and a predicate that no
    episode matches (the error lists the values each field takes).
    """
    _refuse_same_path([input], output)
    check_outputs([output], overwrite)
    source = EpisodeStore.open(input, "r")
    infos = source.episode_infos()
    if isinstance(predicate, Mapping):
        wanted = dict(predicate)
        _check_fields(source.path, infos, wanted)

        def test(row: dict) -> bool:
            return all(k in row and row[k] == v for k, v in wanted.items())
        description: Any = wanted
    else:
        test, description = predicate, getattr(predicate, "__name__", "callable")
    kept = [i for i, row in enumerate(infos) if test(row)]
    if not kept:
        seen = _values_seen(infos, wanted) if isinstance(predicate, Mapping) else ""
        raise DatasetError(source.path, f"no episode of {len(infos)} matches {description}"
                                        f"{seen}; nothing written")
    target = _create_like(source, output, {"filtered_from": {
        "path": str(source.path), "predicate": str(description)}}, overwrite)
    for index in tqdm(kept, desc="filter", unit="episode", disable=not progress, delay=0.5):
        _copy_episode(source, index, target)
    return kept


def _check_fields(path: Path, infos: Sequence[dict], wanted: Mapping[str, Any]) -> None:
    fields = sorted({k for row in infos for k in row})
    unknown = [k for k in wanted if k not in fields]
    if unknown:
        raise DatasetError(path, f"no episode's info has the field(s) {unknown}; the fields are "
                                 f"{fields}")


def _values_seen(infos: Sequence[dict], wanted: Mapping[str, Any]) -> str:
    """'; success takes the values [false, true]' (JSON, at most 8 per field)."""
    parts = []
    for key in wanted:
        values = sorted({json.dumps(row[key], sort_keys=True) for row in infos if key in row})
        more = ", ..." if len(values) > 8 else ""
        parts.append(f"{key} takes the values [{', '.join(values[:8])}{more}]")
    return "; " + "; ".join(parts)


# -------------------------------------------------------------------------------------- stats
def stats(path: PathLike, keys: Sequence[str] | None = None, *,
          progress: bool = False) -> dict[str, dict[str, Any]]:
    """Per-dimension mean, std (population), min, max and count of each key, streamed.

    Episodes are combined with Chan et al.'s parallel update in float64; default keys are all
    numeric keys. An image key (camera frames) is summarised per channel over every pixel of
    every frame (an rgb key gives three values, a depth key one); its ``count`` is frames and
    ``pixels`` the values per channel.
    """
    store = EpisodeStore.open(path, "r")
    specs = store.specs
    if keys is None:
        keys = [k for k, s in specs.items() if s.dtype.kind in "fiub"]
    if not store.n_episodes:
        raise DatasetError(store.path, "no committed episodes to compute statistics on")
    acc: dict[str, list[Any]] = {}
    frames: dict[str, int] = {}
    for _, steps in tqdm(store.iter_episodes(keys), total=store.n_episodes, desc="stats",
                         unit="episode", disable=not progress, delay=0.5):
        for key, rows in steps.items():
            if specs[key].is_image:  # per channel: (frames, H, W[, C]) -> (pixels, C)
                frames[key] = frames.get(key, 0) + len(rows)
                channels = rows.shape[-1] if rows.ndim == 4 else 1
                rows = rows.reshape(-1, channels)
            x = rows.astype(np.float64)
            n_b, mean_b = len(x), x.mean(axis=0)
            m2_b = ((x - mean_b) ** 2).sum(axis=0)
            lo, hi = x.min(axis=0), x.max(axis=0)
            if key not in acc:
                acc[key] = [n_b, mean_b, m2_b, lo, hi]
                continue
            n_a, mean_a, m2_a, lo_a, hi_a = acc[key]
            n = n_a + n_b
            delta = mean_b - mean_a
            acc[key] = [n, mean_a + delta * (n_b / n), m2_a + m2_b + delta ** 2 * (n_a * n_b / n),
                        np.minimum(lo_a, lo), np.maximum(hi_a, hi)]
    out = {key: {"mean": mean, "std": np.sqrt(m2 / n), "min": lo, "max": hi, "count": n}
           for key, (n, mean, m2, lo, hi) in acc.items()}
    for key, count in frames.items():
        out[key]["pixels"], out[key]["count"] = out[key]["count"], count
    return out


__all__ = ["Problem", "STANDARD_KEYS", "export_robomimic_hdf5", "filter", "import_rosbag", "info",
           "merge", "split", "stats", "validate"]
