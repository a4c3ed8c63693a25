"""The rclpy backend's field copying, against FAKE rclpy message classes, so that it is tested
on every machine, rclpy or not.

``_FakeRosMessage`` imitates what rosidl generates for Python (field types from
``get_fields_and_field_types()``, ``byte`` as a 1-byte ``bytes``, ``uint8[]`` and ``float64[]``
as ``array.array``, fixed arrays as numpy). Only the copy logic is tested here; where rclpy can be
imported, test_ros_interop.py checks every message type both ways against the real classes and
the graph tests run every node on the rclpy backend.
"""

from __future__ import annotations

import array
import types
from typing import Any

import numpy as np

from robot_rl.ros import messages as m
from robot_rl.ros.rclpy_backend import from_ros, to_ros

# rclpy's field type strings for the classes this test uses
_FIELD_TYPES = {
    "builtin_interfaces.msg.Time": {"sec": "int32", "nanosec": "uint32"},
    "std_msgs.msg.Header": {"stamp": "builtin_interfaces/Time", "frame_id": "string"},
    "sensor_msgs.msg.Image": {
        "header": "std_msgs/Header", "height": "uint32", "width": "uint32",
        "encoding": "string", "is_bigendian": "uint8", "step": "uint32",
        "data": "sequence<uint8>"},
    "sensor_msgs.msg.CameraInfo": {
        "header": "std_msgs/Header", "height": "uint32", "width": "uint32",
        "distortion_model": "string", "d": "sequence<double>", "k": "double[9]",
        "r": "double[9]", "p": "double[12]", "binning_x": "uint32", "binning_y": "uint32",
        "roi": "sensor_msgs/RegionOfInterest"},
    "sensor_msgs.msg.RegionOfInterest": {
        "x_offset": "uint32", "y_offset": "uint32", "height": "uint32", "width": "uint32",
        "do_rectify": "boolean"},
    "diagnostic_msgs.msg.DiagnosticArray": {
        "header": "std_msgs/Header", "status": "sequence<diagnostic_msgs/DiagnosticStatus>"},
    "diagnostic_msgs.msg.DiagnosticStatus": {
        "level": "octet", "name": "string", "message": "string", "hardware_id": "string",
        "values": "sequence<diagnostic_msgs/KeyValue>"},
    "diagnostic_msgs.msg.KeyValue": {"key": "string", "value": "string"},
}


def _convert(field_type: str, value: Any) -> Any:
    """What rosidl's generated setters store."""
    if field_type == "sequence<uint8>":
        assert isinstance(value, array.array) and value.typecode == "B", "slow path taken"
        return value
    if field_type == "sequence<double>":
        return array.array("d", value)
    if field_type.startswith("double["):
        return np.asarray(value, dtype=np.float64)
    if field_type == "octet":
        assert isinstance(value, bytes) and len(value) == 1, f"byte must be bytes, got {value!r}"
    return value


def _fake_class(module: str, name: str) -> type:
    field_types = _FIELD_TYPES[f"{module}.{name}"]

    class _FakeRosMessage:
        def __init__(self) -> None:
            object.__setattr__(self, "_values", {})

        @classmethod
        def get_fields_and_field_types(cls) -> dict[str, str]:
            return dict(field_types)

        def __setattr__(self, key: str, value: Any) -> None:
            assert key in field_types, f"{name} has no field {key}"
            self._values[key] = _convert(field_types[key], value)

        def __getattr__(self, key: str) -> Any:
            return self._values[key]

    _FakeRosMessage.__name__ = name
    return _FakeRosMessage


def _fake_import(module_name: str) -> types.ModuleType:
    module = types.ModuleType(module_name)
    for key in _FIELD_TYPES:
        mod, _, name = key.rpartition(".")
        if mod == module_name:
            setattr(module, name, _fake_class(mod, name))
    return module


def test_image_copies_both_ways_with_fast_uint8_path() -> None:
    pixels = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    ours = m.image_from_numpy(pixels, "rgb8", stamp_s=4.5, frame_id="cam")
    ros = to_ros(ours, _fake_import)
    assert type(ros).__name__ == "Image" and ros.header.stamp.nanosec == 500_000_000
    back = from_ros(ros, m.Image)
    assert back == ours and isinstance(back.data, bytes)


def test_nested_sequences_fixed_arrays_and_byte_fields() -> None:
    info = m.CameraInfo(header=m.header(1.0, "cam"), height=2, width=3, d=[0.1, 0.2],
                        k=[float(i) for i in range(9)], roi=m.RegionOfInterest(1, 2, 3, 4, True))
    assert from_ros(to_ros(info, _fake_import), m.CameraInfo) == info
    diagnostics = m.DiagnosticArray(m.header(2.0), [
        m.DiagnosticStatus(level=2, name="safety", values=[m.KeyValue("a", "1")]),
        m.DiagnosticStatus(level=0, name="driver")])
    ros = to_ros(diagnostics, _fake_import)
    assert ros.status[0].level == b"\x02" and ros.status[0].values[0].key == "a"
    assert from_ros(ros, m.DiagnosticArray) == diagnostics
