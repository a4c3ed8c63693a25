"""Import rosbag2 recordings (sqlite3 or mcap, read through ``rosbags``) into an episode store.

Messages are resampled onto a control clock: at every tick each key takes the latest message of
its topic(s) received at or before the tick (bag receive time). Ticks start once every mapped
topic has been seen. One bag is one episode, or a marker topic splits it: every marker message
ends the episode in progress and starts the next.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from robot_rl.data.errors import DatasetError
from robot_rl.data.store import EpisodeStore
from robot_rl.data.writer import EpisodeWriter

TIMESTAMP_KEY = "timestamp_s"
DEFAULT_FIELDS = {"sensor_msgs/msg/JointState": ("position",)}
IMAGE_TYPE = "sensor_msgs/msg/Image"


@dataclass(frozen=True)
class TopicField:
    """One topic's contribution to a store key: message fields concatenated in order."""

    topic: str
    key: str
    fields: tuple[str, ...] = ()


def parse_topic_map(topic_map: Mapping[str, str]) -> list[TopicField]:
    """``{"/hand/joint_states": "observation:position+velocity", "/hand/command": "action"}``.

    Several topics may map to one key; their values are concatenated in mapping order.
    """
    parsed = []
    for topic, spec in topic_map.items():
        key, _, fields = str(spec).partition(":")
        if not key:
            raise ValueError(f"topic {topic}: key missing in {spec!r} (expected 'key[:field+...]')")
        parsed.append(TopicField(topic, key, tuple(f for f in fields.split("+") if f)))
    return parsed


def import_rosbag(bag_path: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
                  output: str | os.PathLike[str], topic_map: Mapping[str, str], *,
                  control_period_s: float, robot: str = "unknown", task: str = "unknown",
                  calibration_digest: str = "unknown", units: Mapping[str, str] | None = None,
                  episode_marker_topic: str | None = None, info: Mapping[str, Any] | None = None,
                  append: bool = False, overwrite: bool = False) -> dict[str, Any]:
    """Import one or more bags; each bag is one episode unless a marker topic splits it.

    A ``timestamp_s`` key (the tick time on the bag clock, s) is added to every step.
    Returns a summary with one entry per committed episode.
    """
    from rosbags.highlevel import AnyReader
    from rosbags.typesys import Stores, get_typestore

    if not control_period_s > 0:
        raise ValueError(f"control_period_s must be > 0, got {control_period_s}")
    bags = [Path(bag_path)] if isinstance(bag_path, (str, os.PathLike)) else \
        [Path(b) for b in bag_path]
    fields = parse_topic_map(topic_map)
    # appending refuses a store of another robot, task or calibration before anything changes
    open_store = EpisodeStore.create_or_append if append else EpisodeStore.create
    store = open_store(output, robot=robot, task=task, calibration_digest=calibration_digest,
                       units={**(units or {}), TIMESTAMP_KEY: "s"}, overwrite=overwrite)
    period_ns = int(round(control_period_s * 1e9))
    episodes: list[dict[str, Any]] = []
    typestore = get_typestore(Stores.ROS2_HUMBLE)
    for bag in bags:
        if not bag.exists():
            raise DatasetError(bag, "no such rosbag2 directory")
        try:
            reader = AnyReader([bag], default_typestore=typestore)
            reader.open()
        except Exception as err:  # rosbags raises its own error types per storage plugin
            raise DatasetError(bag, f"cannot read rosbag2: {err}") from err
        try:
            episodes += _import_one(reader, bag, store, fields, period_ns, episode_marker_topic,
                                    dict(info or {}))
        finally:
            reader.close()
    return {"output": str(store.path), "episodes": episodes, "n_episodes": store.n_episodes,
            "n_steps": store.n_steps}


def _import_one(reader: Any, bag: Path, store: EpisodeStore, fields: Sequence[TopicField],
                period_ns: int, marker: str | None, info: dict) -> list[dict[str, Any]]:
    topics = {f.topic for f in fields}
    available = {c.topic for c in reader.connections}
    missing = sorted(topics - available) + ([marker] if marker and marker not in available else [])
    if missing:
        raise DatasetError(bag, f"topic(s) {missing} not in bag; it has {sorted(available)}")
    wanted = [c for c in reader.connections if c.topic in topics or c.topic == marker]
    resampler = _Resampler(fields, period_ns)
    writer = EpisodeWriter(store, flush_every_steps=50)
    committed: list[dict[str, Any]] = []

    def close_segment() -> None:
        if not writer.n_steps:
            return
        start, end = resampler.segment_start_ns, resampler.last_tick_ns
        row = {**info, "source_bag": str(bag), "segment": len(committed),
               "start_time_s": start / 1e9, "end_time_s": end / 1e9}
        index = writer.commit(row)
        committed.append({"episode": index, "bag": str(bag), "segment": row["segment"],
                          "steps": int(store.episode_lengths[index])})
        resampler.segment_start_ns = None

    try:
        for conn, t_ns, raw in reader.messages(connections=wanted):
            for step in resampler.ticks_before(t_ns):
                writer.append(step)
            if conn.topic == marker:
                close_segment()
                continue
            msg = reader.deserialize(raw, conn.msgtype)
            resampler.update(conn.topic, conn.msgtype, msg, t_ns, bag)
        for step in resampler.ticks_before(resampler.last_message_ns + 1):
            writer.append(step)
        close_segment()
    finally:
        writer.close()  # discards a segment left open by an error
    return committed


class _Resampler:
    """Latest value per topic; yields steps at each control tick."""

    def __init__(self, fields: Sequence[TopicField], period_ns: int) -> None:
        self.fields = list(fields)
        self.period_ns = period_ns
        self.latest: dict[tuple[str, int], np.ndarray] = {}
        self.joint_names: dict[str, list[str]] = {}
        self.next_tick_ns: int | None = None
        self.last_tick_ns = 0
        self.last_message_ns = 0
        self.segment_start_ns: int | None = None

    def update(self, topic: str, msgtype: str, msg: Any, t_ns: int, bag: Path) -> None:
        self.last_message_ns = t_ns
        for i, f in enumerate(self.fields):
            if f.topic == topic:
                self.latest[(topic, i)] = self._extract(f, msgtype, msg, bag)
        if self.next_tick_ns is None and len(self.latest) == len(self.fields):
            self.next_tick_ns = t_ns

    def ticks_before(self, t_ns: int) -> Iterable[dict[str, np.ndarray]]:
        while self.next_tick_ns is not None and self.next_tick_ns < t_ns:
            if self.segment_start_ns is None:
                self.segment_start_ns = self.next_tick_ns
            self.last_tick_ns = self.next_tick_ns
            yield self._step(self.next_tick_ns)
            self.next_tick_ns += self.period_ns

    def _step(self, tick_ns: int) -> dict[str, np.ndarray]:
        parts: dict[str, list[np.ndarray]] = {}
        for i, f in enumerate(self.fields):
            parts.setdefault(f.key, []).append(self.latest[(f.topic, i)])
        step = {k: v[0] if len(v) == 1 else np.concatenate([np.ravel(p) for p in v])
                for k, v in parts.items()}
        step[TIMESTAMP_KEY] = np.float64(tick_ns / 1e9)
        return step

    def _extract(self, f: TopicField, msgtype: str, msg: Any, bag: Path) -> np.ndarray:
        if msgtype == IMAGE_TYPE and not f.fields:
            return _image_array(msg, f.topic, bag)
        names = f.fields or DEFAULT_FIELDS.get(msgtype, ("data",))
        values = [self._field(f, msgtype, msg, name, bag) for name in names]
        return values[0] if len(values) == 1 else np.concatenate([np.ravel(v) for v in values])

    def _field(self, f: TopicField, msgtype: str, msg: Any, name: str, bag: Path) -> np.ndarray:
        value = msg
        for part in name.split("."):
            if not hasattr(value, part):
                raise DatasetError(bag, f"topic {f.topic} ({msgtype}) has no field '{name}'")
            value = getattr(value, part)
        arr = np.asarray(value)
        if arr.dtype.kind == "f":
            arr = arr.astype(np.float32)
        if msgtype == "sensor_msgs/msg/JointState" and arr.ndim == 1:
            arr = self._in_first_joint_order(f.topic, list(msg.name), arr, bag)
        return arr

    def _in_first_joint_order(self, topic: str, names: list[str], arr: np.ndarray,
                              bag: Path) -> np.ndarray:
        """Publishers may reorder JointState.name; keep the first message's order."""
        first = self.joint_names.setdefault(topic, names)
        if names == first or not names:
            return arr
        if sorted(names) != sorted(first):
            raise DatasetError(bag, f"topic {topic}: joint names changed from {first} to {names}")
        return arr[[names.index(n) for n in first]]


def _image_array(msg: Any, topic: str, bag: Path) -> np.ndarray:
    """sensor_msgs/Image -> [H, W, 3] uint8 (rgb8, bgr8 as rgb) or [H, W] uint8/uint16/float32."""
    layouts = {"rgb8": (np.uint8, 3), "bgr8": (np.uint8, 3), "mono8": (np.uint8, 1),
               "8UC1": (np.uint8, 1), "mono16": (np.uint16, 1), "16UC1": (np.uint16, 1),
               "32FC1": (np.float32, 1)}
    if msg.encoding not in layouts:
        raise DatasetError(bag, f"topic {topic}: image encoding '{msg.encoding}' not supported; "
                                f"supported: {sorted(layouts)}")
    dtype, channels = layouts[msg.encoding]
    dt = np.dtype(dtype).newbyteorder(">" if msg.is_bigendian else "<")
    row_bytes = msg.width * channels * dt.itemsize
    rows = np.asarray(msg.data, dtype=np.uint8).reshape(msg.height, msg.step)[:, :row_bytes]
    img = np.ascontiguousarray(rows).view(dt).astype(dtype).reshape(msg.height, msg.width,
                                                                    channels)
    if msg.encoding == "bgr8":
        img = img[..., ::-1]
    return np.ascontiguousarray(img if channels == 3 else img[..., 0])
