"""Standard ROS 2 message types as Cyclone DDS structs, wire-compatible with rmw_cyclonedds.

Type names follow ROS 2's DDS mapping (``<pkg>::msg::dds_::<Name>_``) and field order and
types follow the .msg definitions of Humble/Jazzy, so a ROS 2 machine on the same domain
reads these topics and ``ros2 topic echo`` works.

``uint8``/``byte`` fields are declared ``types.byte``: same wire format as ``uint8``, and the
``uint8`` annotation crashed Cyclone 0.10 peers. ``uint8[]`` fields hold ``bytes`` and numeric
sequences go through numpy (see ``_install_fast_machines``): the per-element path of
cyclonedds costs tens of milliseconds per camera image. JointState, on every hop of the control
loop, has its own plain-CDR codec (``_encode_joint_state``): the same bytes in a few
microseconds instead of about forty.
"""

# No `from __future__ import annotations` here: cyclonedds resolves string annotations by
# importing module names ("str" -> module lookup) and fails; Python >= 3.10 needs none.
import hashlib
import json
import math
import struct
import sys
import time
import typing
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from functools import cache
from typing import Any

import numpy as np
from cyclonedds.idl import IdlStruct
from cyclonedds.idl import types as idl_types
from cyclonedds.idl.types import array, byte, float32, float64, int32, sequence, uint32

__all__ = [
    "Time", "Duration", "Header", "String", "Bool", "MultiArrayDimension", "MultiArrayLayout",
    "Float32MultiArray", "Float64MultiArray", "UInt8MultiArray", "JointState", "Image",
    "RegionOfInterest", "CameraInfo", "Joy", "KeyValue", "DiagnosticStatus", "DiagnosticArray",
    "JointTrajectoryPoint", "JointTrajectory", "Log", "Clock", "MESSAGE_TYPES", "ros_type_name",
    "type_description", "type_hash",
    "stamp_to_s", "s_to_stamp", "now_stamp", "header", "joint_state", "image_from_numpy",
    "image_to_numpy", "IMAGE_ENCODINGS",
]


def _dds(pkg: str, name: str) -> str:
    return f"{pkg}::msg::dds_::{name}_"


def _floats(n: int = 0) -> Any:
    return field(default_factory=lambda: [0.0] * n)


# --- builtin_interfaces -------------------------------------------------------------------
@dataclass
class Time(IdlStruct, typename=_dds("builtin_interfaces", "Time")):
    sec: int32 = 0
    nanosec: uint32 = 0


@dataclass
class Duration(IdlStruct, typename=_dds("builtin_interfaces", "Duration")):
    sec: int32 = 0
    nanosec: uint32 = 0


# --- std_msgs -----------------------------------------------------------------------------
@dataclass
class Header(IdlStruct, typename=_dds("std_msgs", "Header")):
    stamp: Time = field(default_factory=Time)
    frame_id: str = ""


@dataclass
class String(IdlStruct, typename=_dds("std_msgs", "String")):
    data: str = ""


@dataclass
class Bool(IdlStruct, typename=_dds("std_msgs", "Bool")):
    data: bool = False


@dataclass
class MultiArrayDimension(IdlStruct, typename=_dds("std_msgs", "MultiArrayDimension")):
    label: str = ""
    size: uint32 = 0
    stride: uint32 = 0


@dataclass
class MultiArrayLayout(IdlStruct, typename=_dds("std_msgs", "MultiArrayLayout")):
    dim: sequence[MultiArrayDimension] = field(default_factory=list)
    data_offset: uint32 = 0


@dataclass
class Float32MultiArray(IdlStruct, typename=_dds("std_msgs", "Float32MultiArray")):
    layout: MultiArrayLayout = field(default_factory=MultiArrayLayout)
    data: sequence[float32] = field(default_factory=list)


@dataclass
class Float64MultiArray(IdlStruct, typename=_dds("std_msgs", "Float64MultiArray")):
    layout: MultiArrayLayout = field(default_factory=MultiArrayLayout)
    data: sequence[float64] = field(default_factory=list)


@dataclass
class UInt8MultiArray(IdlStruct, typename=_dds("std_msgs", "UInt8MultiArray")):
    layout: MultiArrayLayout = field(default_factory=MultiArrayLayout)
    data: sequence[byte] = b""  # type: ignore[assignment]


# --- sensor_msgs --------------------------------------------------------------------------
@dataclass
class JointState(IdlStruct, typename=_dds("sensor_msgs", "JointState")):
    header: Header = field(default_factory=Header)
    name: sequence[str] = field(default_factory=list)
    position: sequence[float64] = field(default_factory=list)
    velocity: sequence[float64] = field(default_factory=list)
    effort: sequence[float64] = field(default_factory=list)

    # cyclonedds' DataWriter and DataReader call these; anything but little-endian plain CDR
    # (XCDR1, what ROS 2 sends) takes cyclonedds' own path
    def serialize(self, buffer: Any = None, endianness: Any = None,
                  use_version_2: Any = None) -> bytes:
        if buffer is None and endianness is None and not use_version_2 and _LITTLE_ENDIAN:
            return _encode_joint_state(self)
        return super().serialize(buffer, endianness, use_version_2)

    @classmethod
    def deserialize(cls, data: Any, has_header: bool = True, use_version_2: Any = None) -> Any:
        if has_header and use_version_2 is None and isinstance(data, bytes) \
                and data[:2] == _CDR_LE[:2]:
            return _decode_joint_state(data)
        return super().deserialize(data, has_header, use_version_2)


@dataclass
class Image(IdlStruct, typename=_dds("sensor_msgs", "Image")):
    header: Header = field(default_factory=Header)
    height: uint32 = 0
    width: uint32 = 0
    encoding: str = ""
    is_bigendian: byte = 0
    step: uint32 = 0
    data: sequence[byte] = b""  # type: ignore[assignment]


@dataclass
class RegionOfInterest(IdlStruct, typename=_dds("sensor_msgs", "RegionOfInterest")):
    x_offset: uint32 = 0
    y_offset: uint32 = 0
    height: uint32 = 0
    width: uint32 = 0
    do_rectify: bool = False


@dataclass
class CameraInfo(IdlStruct, typename=_dds("sensor_msgs", "CameraInfo")):
    header: Header = field(default_factory=Header)
    height: uint32 = 0
    width: uint32 = 0
    distortion_model: str = ""
    d: sequence[float64] = field(default_factory=list)
    k: array[float64, 9] = _floats(9)
    r: array[float64, 9] = _floats(9)
    p: array[float64, 12] = _floats(12)
    binning_x: uint32 = 0
    binning_y: uint32 = 0
    roi: RegionOfInterest = field(default_factory=RegionOfInterest)


@dataclass
class Joy(IdlStruct, typename=_dds("sensor_msgs", "Joy")):
    header: Header = field(default_factory=Header)
    axes: sequence[float32] = field(default_factory=list)
    buttons: sequence[int32] = field(default_factory=list)


# --- diagnostic_msgs ----------------------------------------------------------------------
@dataclass
class KeyValue(IdlStruct, typename=_dds("diagnostic_msgs", "KeyValue")):
    key: str = ""
    value: str = ""


@dataclass
class DiagnosticStatus(IdlStruct, typename=_dds("diagnostic_msgs", "DiagnosticStatus")):
    OK = 0
    WARN = 1
    ERROR = 2
    STALE = 3
    level: byte = 0
    name: str = ""
    message: str = ""
    hardware_id: str = ""
    values: sequence[KeyValue] = field(default_factory=list)


@dataclass
class DiagnosticArray(IdlStruct, typename=_dds("diagnostic_msgs", "DiagnosticArray")):
    header: Header = field(default_factory=Header)
    status: sequence[DiagnosticStatus] = field(default_factory=list)


# --- trajectory_msgs ----------------------------------------------------------------------
@dataclass
class JointTrajectoryPoint(IdlStruct, typename=_dds("trajectory_msgs", "JointTrajectoryPoint")):
    positions: sequence[float64] = field(default_factory=list)
    velocities: sequence[float64] = field(default_factory=list)
    accelerations: sequence[float64] = field(default_factory=list)
    effort: sequence[float64] = field(default_factory=list)
    time_from_start: Duration = field(default_factory=Duration)


@dataclass
class JointTrajectory(IdlStruct, typename=_dds("trajectory_msgs", "JointTrajectory")):
    header: Header = field(default_factory=Header)
    joint_names: sequence[str] = field(default_factory=list)
    points: sequence[JointTrajectoryPoint] = field(default_factory=list)


# --- rcl_interfaces ------------------------------------------------------------------------
@dataclass
class Log(IdlStruct, typename=_dds("rcl_interfaces", "Log")):
    """What a node's logger publishes on /rosout (levels as rcutils': 10 debug ... 50 fatal)."""

    DEBUG = 10
    INFO = 20
    WARN = 30
    ERROR = 40
    FATAL = 50
    stamp: Time = field(default_factory=Time)
    level: byte = 0
    name: str = ""
    msg: str = ""
    file: str = ""
    function: str = ""
    line: uint32 = 0


# --- rosgraph_msgs -------------------------------------------------------------------------
@dataclass
class Clock(IdlStruct, typename=_dds("rosgraph_msgs", "Clock")):
    """Simulated time on /clock: what nodes with use_sim_time run on."""

    clock: Time = field(default_factory=Time)


MESSAGE_TYPES: tuple[type, ...] = (
    Time, Duration, Header, String, Bool, MultiArrayDimension, MultiArrayLayout,
    Float32MultiArray, Float64MultiArray, UInt8MultiArray, JointState, Image, RegionOfInterest,
    CameraInfo, Joy, KeyValue, DiagnosticStatus, DiagnosticArray, JointTrajectoryPoint,
    JointTrajectory, Log, Clock,
)
# Fields declared ``byte`` here (see the module docstring) that the .msg files declare uint8: the
# type hash needs the ROS type.
_ROS_UINT8_FIELDS = {
    ("std_msgs/msg/UInt8MultiArray", "data"), ("sensor_msgs/msg/Image", "is_bigendian"),
    ("sensor_msgs/msg/Image", "data"), ("rcl_interfaces/msg/Log", "level"),
}


def ros_type_name(msg_type: type) -> str:
    """``sensor_msgs::msg::dds_::JointState_`` -> ``sensor_msgs/msg/JointState``."""
    dds_name: str = msg_type.__idl_typename__.replace(".", "::")
    pkg, _, _, name = dds_name.split("::")
    return f"{pkg}/msg/{name.rstrip('_')}"


# --- type hashes (REP 2011), as Iron and later announce them -----------------------------
# type_description_interfaces/msg/FieldType: element type ids; +48 for a fixed array, +144 for an
# unbounded sequence
_FIELD_TYPE_IDS = {"int8": 2, "uint8": 3, "int16": 4, "uint16": 5, "int32": 6, "uint32": 7,
                   "int64": 8, "uint64": 9, "float32": 10, "float64": 11, "char": 13,
                   "bool": 15, "byte": 16, "str": 17}
_NESTED_TYPE, _ARRAY_OFFSET, _SEQUENCE_OFFSET = 1, 48, 144


def _element(annotation: Any) -> tuple[int, str]:
    """(type id, nested type name) of one element type."""
    if isinstance(annotation, type) and issubclass(annotation, IdlStruct):
        return _NESTED_TYPE, ros_type_name(annotation)
    if annotation is bool:
        return _FIELD_TYPE_IDS["bool"], ""
    if annotation is str:
        return _FIELD_TYPE_IDS["str"], ""
    if typing.get_origin(annotation) is typing.Annotated:
        base, holder = typing.get_args(annotation)[:2]
        if isinstance(holder, str) and holder in _FIELD_TYPE_IDS:
            return _FIELD_TYPE_IDS[holder], ""
    raise TypeError(f"type hash: no ROS 2 field type for {annotation!r}")


def _field_type(owner: str, name: str, annotation: Any) -> dict[str, Any]:
    capacity, offset = 0, 0
    if typing.get_origin(annotation) is typing.Annotated:
        holder = typing.get_args(annotation)[1]
        if isinstance(holder, idl_types.sequence) and holder.max_length is None:
            annotation, offset = holder.subtype, _SEQUENCE_OFFSET
        elif isinstance(holder, idl_types.array):
            annotation, offset, capacity = holder.subtype, _ARRAY_OFFSET, holder.length
    type_id, nested = _element(annotation)
    if (owner, name) in _ROS_UINT8_FIELDS:
        type_id = _FIELD_TYPE_IDS["uint8"]
    return {"type_id": type_id + offset, "capacity": capacity, "string_capacity": 0,
            "nested_type_name": nested}


def _individual_description(msg_type: type) -> dict[str, Any]:
    owner = ros_type_name(msg_type)
    hints = typing.get_type_hints(msg_type, include_extras=True)
    return {"type_name": owner, "fields": [
        {"name": f.name, "type": _field_type(owner, f.name, hints[f.name])}
        for f in fields(msg_type)]}


def _referenced(msg_type: type, found: dict[str, type]) -> None:
    hints = typing.get_type_hints(msg_type, include_extras=True)
    for f in fields(msg_type):
        annotation = hints[f.name]
        if typing.get_origin(annotation) is typing.Annotated:
            holder = typing.get_args(annotation)[1]
            annotation = getattr(holder, "subtype", annotation)
        if isinstance(annotation, type) and issubclass(annotation, IdlStruct):
            found.setdefault(ros_type_name(annotation), annotation)
            _referenced(annotation, found)


def type_description(msg_type: type) -> dict[str, Any]:
    """REP 2011's type description of ``msg_type``: its fields and every type it references
    (sorted by name), as rosidl generates it, without default values (they are not hashed)."""
    found: dict[str, type] = {}
    _referenced(msg_type, found)
    return {"type_description": _individual_description(msg_type),
            "referenced_type_descriptions": [_individual_description(found[name])
                                             for name in sorted(found)]}


@cache
def type_hash(msg_type: type) -> str:
    """``RIHS01_<sha256>``: what ROS 2 Iron and later put in each endpoint's USER_DATA
    (``typehash=...;``) and show in ``ros2 topic info --verbose``. SHA-256 of the type
    description's JSON, written as rosidl_generator_type_description writes it."""
    text = json.dumps(type_description(msg_type), ensure_ascii=True, allow_nan=False,
                      separators=(", ", ": "), sort_keys=False)
    return "RIHS01_" + hashlib.sha256(text.encode("utf-8")).hexdigest()


# --- fast (de)serialisation of uint8[] and numeric sequences -----------------------------
class _NumpySequenceMachine:
    """CDR ``sequence<primitive>`` through numpy: same bytes as cyclonedds' own machine.

    Serialises lists, tuples and arrays; deserialises to ``bytes`` for uint8 and to a list of
    Python numbers otherwise (so messages still compare with ``==``).
    """

    def __init__(self, inner: Any, dtype: str, as_bytes: bool) -> None:
        self._inner = inner  # cyclonedds' machine: key scans and defaults stay its business
        self.alignment = 4
        self._dtype = np.dtype(dtype)
        self._as_bytes = as_bytes

    def serialize(self, buffer: Any, value: Any, *args: Any, **kwargs: Any) -> None:
        if isinstance(value, (bytes, bytearray, memoryview)) and self._dtype.itemsize == 1:
            raw = bytes(value)
            count = len(raw)
        else:
            arr = np.asarray(value, dtype=self._dtype.newbyteorder(buffer._endian))
            raw, count = arr.tobytes(), arr.size
        buffer.align(4)
        buffer.write("I", 4, count)
        if count:
            buffer.align(self._dtype.itemsize)
            buffer.write_bytes(raw)

    def deserialize(self, buffer: Any, *args: Any, **kwargs: Any) -> Any:
        buffer.align(4)
        count = buffer.read("I", 4)
        if count == 0:
            return b"" if self._as_bytes else []
        buffer.align(self._dtype.itemsize)
        raw = buffer.read_bytes(count * self._dtype.itemsize)
        if self._as_bytes:
            return raw
        return np.frombuffer(raw, dtype=self._dtype.newbyteorder(buffer._endian)).tolist()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


_FAST_CODES = {"B": ("u1", True), "f": ("f4", False), "d": ("f8", False), "i": ("i4", False)}


def _install_fast_machines(msg_type: type) -> None:
    """Swap cyclonedds' per-element sequence machines for numpy ones (XCDR1 and XCDR2).

    Relies on cyclonedds 11 internals (``StructMachine.members_machines``); if they change,
    the stock machines stay in place: slower, same bytes.
    """
    idl = msg_type.__idl__
    idl.populate()
    for machine in (getattr(idl, "v1_machine", None), getattr(idl, "v2_machine", None)):
        members = getattr(machine, "members_machines", None)
        if not isinstance(members, dict):
            return
        for name, member in list(members.items()):
            if type(member).__name__ != "PlainCdrV2SequenceOfPrimitiveMachine":
                continue
            code = getattr(member, "code", None)
            if code in _FAST_CODES and getattr(member, "max_length", None) is None:
                dtype, as_bytes = _FAST_CODES[code]
                members[name] = _NumpySequenceMachine(member, dtype, as_bytes)


for _msg_type in MESSAGE_TYPES:
    _install_fast_machines(_msg_type)


# --- JointState in plain CDR (XCDR1), little endian ----------------------------------------
# Alignment counts from the end of the 4-byte encapsulation header; float64 aligns to 8 in XCDR1.
# Empty sequences write only their count (as _NumpySequenceMachine does).
_CDR_LE = b"\x00\x01\x00\x00"
_LITTLE_ENDIAN = sys.byteorder == "little"
_U32 = struct.Struct("<I")
_STAMP = struct.Struct("<iI")


def _pad(out: bytearray, alignment: int) -> None:
    out += bytes(-(len(out) - 4) % alignment)


def _put_strings(out: bytearray, values: Sequence[str]) -> None:
    for value in values:
        raw = value.encode("utf-8")
        out += bytes(-len(out) % 4)  # len(out) - 4 is aligned to 4 iff len(out) is
        out += _U32.pack(len(raw) + 1)
        out += raw
        out += b"\x00"


def _put_float64s(out: bytearray, values: Any) -> None:
    try:
        count, raw = len(values), struct.pack(f"<{len(values)}d", *values)
    except (TypeError, struct.error):  # arrays of any shape, strings of numbers: numpy's rules
        array = np.asarray(values, dtype="<f8")
        count, raw = array.size, array.tobytes()
    _pad(out, 4)
    out += _U32.pack(count)
    if count:
        _pad(out, 8)
        out += raw


def _encode_joint_state(msg: "JointState") -> bytes:
    out = bytearray(_CDR_LE)
    out += _STAMP.pack(msg.header.stamp.sec, msg.header.stamp.nanosec)
    _put_strings(out, (msg.header.frame_id,))
    _pad(out, 4)
    out += _U32.pack(len(msg.name))
    _put_strings(out, msg.name)
    for values in (msg.position, msg.velocity, msg.effort):
        _put_float64s(out, values)
    return bytes(out)


def _aligned(offset: int, alignment: int) -> int:
    return offset + (-(offset - 4) % alignment)


def _get_u32(data: bytes, offset: int) -> tuple[int, int]:
    offset = _aligned(offset, 4)
    return _U32.unpack_from(data, offset)[0], offset + 4


def _get_strings(data: bytes, offset: int, count: int) -> tuple[list[str], int]:
    out = []
    for _ in range(count):
        offset += -offset % 4  # offset - 4 is aligned to 4 iff offset is
        size = _U32.unpack_from(data, offset)[0]  # with the terminating NUL
        offset += 4
        end = offset + max(size - 1, 0)
        if end > len(data):
            raise ValueError(f"JointState CDR: a string of {size} bytes at offset {offset} runs "
                             f"past the end of the {len(data)}-byte sample")
        out.append(data[offset:end].decode("utf-8"))
        offset += size
    return out, offset


def _get_float64s(data: bytes, offset: int) -> tuple[list[float], int]:
    count, offset = _get_u32(data, offset)
    if not count:
        return [], offset
    offset = _aligned(offset, 8)
    end = offset + 8 * count
    if end > len(data):
        raise ValueError(f"JointState CDR: {count} float64 at offset {offset} run past the end "
                         f"of the {len(data)}-byte sample")
    return list(struct.unpack_from(f"<{count}d", data, offset)), end


def _decode_joint_state(data: bytes) -> "JointState":
    try:
        return _read_joint_state(data)
    except struct.error as err:
        raise ValueError(f"JointState CDR: the {len(data)}-byte sample ends early: {err}") from None


def _read_joint_state(data: bytes) -> "JointState":
    sec, nanosec = _STAMP.unpack_from(data, 4)
    (frame_id,), offset = _get_strings(data, 12, 1)
    count, offset = _get_u32(data, offset)
    names, offset = _get_strings(data, offset, count)
    position, offset = _get_float64s(data, offset)
    velocity, offset = _get_float64s(data, offset)
    effort, _ = _get_float64s(data, offset)
    return JointState(Header(Time(sec, nanosec), frame_id), names, position, velocity, effort)


# --- helpers ------------------------------------------------------------------------------
def stamp_to_s(stamp: Time | Duration) -> float:
    return stamp.sec + stamp.nanosec * 1e-9


def s_to_stamp(seconds: float) -> Time:
    if not math.isfinite(seconds):
        raise ValueError(f"s_to_stamp: time must be finite, got {seconds!r}")
    total_ns = int(round(seconds * 1e9))
    sec, nanosec = divmod(total_ns, 1_000_000_000)  # floor: nanosec stays in [0, 1e9)
    return Time(sec=sec, nanosec=nanosec)


def s_to_duration(seconds: float) -> Duration:
    stamp = s_to_stamp(seconds)
    return Duration(sec=stamp.sec, nanosec=stamp.nanosec)


def now_stamp() -> Time:
    sec, nanosec = divmod(time.time_ns(), 1_000_000_000)
    return Time(sec=sec, nanosec=nanosec)


def header(stamp_s: float | None = None, frame_id: str = "") -> Header:
    stamp = now_stamp() if stamp_s is None else s_to_stamp(stamp_s)
    return Header(stamp=stamp, frame_id=frame_id)


def _float_list(values: Sequence[float] | np.ndarray | None, what: str, n: int) -> list[float]:
    if values is None:
        return []
    out = np.asarray(values, dtype=np.float64).ravel()
    if out.size != n:
        raise ValueError(f"joint_state: {what} has {out.size} values, expected {n} (one per name)")
    return out.tolist()


def joint_state(
    names: Sequence[str],
    position: Sequence[float] | np.ndarray | None = None,
    velocity: Sequence[float] | np.ndarray | None = None,
    effort: Sequence[float] | np.ndarray | None = None,
    stamp_s: float | None = None,
    frame_id: str = "",
) -> JointState:
    """A JointState (rad, rad/s, N·m or A); empty arrays for omitted fields, as ROS 2 allows."""
    n = len(names)
    return JointState(
        header=header(stamp_s, frame_id),
        name=list(names),
        position=_float_list(position, "position", n),
        velocity=_float_list(velocity, "velocity", n),
        effort=_float_list(effort, "effort", n),
    )


# encoding -> (dtype, channels), as sensor_msgs/image_encodings.hpp defines them
IMAGE_ENCODINGS: dict[str, tuple[str, int]] = {
    "rgb8": ("u1", 3), "bgr8": ("u1", 3), "rgba8": ("u1", 4), "bgra8": ("u1", 4),
    "mono8": ("u1", 1), "8UC1": ("u1", 1), "8UC3": ("u1", 3),
    "mono16": ("u2", 1), "16UC1": ("u2", 1), "32FC1": ("f4", 1),
}


def image_from_numpy(
    arr: np.ndarray, encoding: str, stamp_s: float | None = None, frame_id: str = ""
) -> Image:
    """An Image from an (H, W) or (H, W, C) array whose dtype and channels match ``encoding``."""
    if encoding not in IMAGE_ENCODINGS:
        raise ValueError(f"image_from_numpy: unknown encoding {encoding!r}, "
                         f"expected one of {sorted(IMAGE_ENCODINGS)}")
    dtype, channels = IMAGE_ENCODINGS[encoding]
    arr = np.asarray(arr)
    shape_ok = arr.ndim == 3 and arr.shape[2] == channels or arr.ndim == 2 and channels == 1
    if not shape_ok or arr.dtype.kind + str(arr.dtype.itemsize) != dtype[0] + dtype[1]:
        raise ValueError(f"image_from_numpy: {encoding!r} needs dtype {np.dtype(dtype)} with "
                         f"{channels} channel(s), got {arr.dtype} of shape {arr.shape}")
    height, width = arr.shape[:2]
    little = np.ascontiguousarray(arr, dtype=np.dtype(dtype).newbyteorder("<"))
    return Image(
        header=header(stamp_s, frame_id), height=height, width=width, encoding=encoding,
        is_bigendian=0, step=width * channels * little.dtype.itemsize, data=little.tobytes(),
    )


def image_to_numpy(msg: Image) -> np.ndarray:
    """A read-only (H, W, C) view of the image data ((H, W) for one channel)."""
    if msg.encoding not in IMAGE_ENCODINGS:
        raise ValueError(f"image_to_numpy: unknown encoding {msg.encoding!r}, "
                         f"expected one of {sorted(IMAGE_ENCODINGS)}")
    dtype, channels = IMAGE_ENCODINGS[msg.encoding]
    dt = np.dtype(dtype).newbyteorder(">" if msg.is_bigendian else "<")
    row_bytes = msg.width * channels * dt.itemsize
    if msg.step < row_bytes or len(msg.data) < msg.step * msg.height:
        raise ValueError(f"image_to_numpy: {msg.width}x{msg.height} {msg.encoding} needs step >= "
                         f"{row_bytes} and {msg.step * msg.height} bytes, got step {msg.step} "
                         f"and {len(msg.data)} bytes")
    rows = np.frombuffer(bytes(msg.data), dtype=np.uint8)[: msg.step * msg.height]
    rows = rows.reshape(msg.height, msg.step)[:, :row_bytes]
    pixels = np.ascontiguousarray(rows).view(dt)
    shape = (msg.height, msg.width) if channels == 1 else (msg.height, msg.width, channels)
    return pixels.reshape(shape)
