"""The bytes on the wire are ROS 2's, as judged by an independent implementation (rosbags).

What our DDS backend publishes is captured as raw CDR by a plain cyclonedds reader and decoded
with rosbags' Humble and Jazzy type stores; bytes that rosbags serialises are written raw and
must arrive, decoded, at our subscribers.
"""

from __future__ import annotations

import time
from dataclasses import fields, is_dataclass
from typing import Any

import numpy as np
import pytest
from cyclonedds._clayer import ddspy_take, ddspy_write
from cyclonedds.core import InstanceState, SampleState, ViewState
from cyclonedds.pub import DataWriter
from cyclonedds.sub import DataReader
from cyclonedds.topic import Topic
from rosbags.typesys import Stores, get_typestore

from robot_rl.ros import messages as m
from robot_rl.ros.dds_backend import DdsNode, dds_qos, dds_topic_name
from robot_rl.ros.qos import QOS_DEFAULT

ANY_STATE = SampleState.Any | ViewState.Any | InstanceState.Any
STORES = {"humble": get_typestore(Stores.ROS2_HUMBLE), "jazzy": get_typestore(Stores.ROS2_JAZZY)}
RNG = np.random.default_rng(7)


def _samples() -> dict[type, Any]:
    layout = m.MultiArrayLayout(dim=[m.MultiArrayDimension("rows", 2, 6),
                                     m.MultiArrayDimension("cols", 3, 3)], data_offset=1)
    image = RNG.integers(0, 256, (4, 5, 3), dtype=np.uint8)
    return {
        m.Time: m.Time(sec=-3, nanosec=999_999_999),
        m.Header: m.header(1712345678.25, "hand_base"),
        m.String: m.String("ünïcode ✓ and 'quotes'"),
        m.Bool: m.Bool(True),
        m.Float32MultiArray: m.Float32MultiArray(layout, [0.5, -1.25, 3.0e6]),
        m.Float64MultiArray: m.Float64MultiArray(layout, [1e-300, -2.5, 0.0]),
        m.UInt8MultiArray: m.UInt8MultiArray(layout, bytes([0, 1, 127, 128, 255])),
        m.JointState: m.joint_state(["j0", "j1", "j2"], [0.1, -0.2, 3.14], [1.0, 2.0, 3.0],
                                    None, stamp_s=12.5, frame_id="hand"),
        m.Image: m.image_from_numpy(image, "rgb8", stamp_s=3.0, frame_id="camera"),
        m.CameraInfo: m.CameraInfo(
            header=m.header(2.0, "camera"), height=480, width=640,
            distortion_model="plumb_bob", d=[0.1, -0.2, 0.0, 0.0, 0.01],
            k=[600.0, 0.0, 320.0, 0.0, 600.0, 240.0, 0.0, 0.0, 1.0],
            r=[1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0], p=[float(i) for i in range(12)],
            binning_x=2, binning_y=1, roi=m.RegionOfInterest(1, 2, 3, 4, True)),
        m.Joy: m.Joy(m.header(5.0), axes=[0.5, -1.0], buttons=[0, 1, -1]),
        m.DiagnosticArray: m.DiagnosticArray(m.header(6.0), status=[
            m.DiagnosticStatus(level=m.DiagnosticStatus.ERROR, name="safety", message="e-stop",
                               hardware_id="claw", values=[m.KeyValue("rejected", "3")]),
            m.DiagnosticStatus(level=m.DiagnosticStatus.OK, name="driver")]),
        m.JointTrajectory: m.JointTrajectory(m.header(7.0), joint_names=["a", "b"], points=[
            m.JointTrajectoryPoint(positions=[0.1, 0.2], velocities=[0.0, 1.0],
                                   time_from_start=m.s_to_duration(0.5)),
            m.JointTrajectoryPoint(positions=[0.3, 0.4], effort=[1.5, 2.5],
                                   time_from_start=m.Duration(1, 5))]),
    }


SAMPLES = _samples()


def assert_same(ours: Any, theirs: Any, path: str = "msg") -> None:
    """Field-by-field equality between our dataclass and a rosbags message."""
    if is_dataclass(ours):
        for f in fields(ours):
            assert_same(getattr(ours, f.name), getattr(theirs, f.name), f"{path}.{f.name}")
    elif isinstance(ours, (bytes, bytearray)):
        assert bytes(np.asarray(theirs, dtype=np.uint8)) == bytes(ours), path
    elif isinstance(ours, list) and not ours:
        assert len(theirs) == 0, path
    elif isinstance(ours, list) and is_dataclass(ours[0]):
        assert len(ours) == len(theirs), path
        for i, (a, b) in enumerate(zip(ours, theirs)):
            assert_same(a, b, f"{path}[{i}]")
    elif isinstance(ours, list):
        if isinstance(ours[0], str):
            assert list(theirs) == ours, path
        else:  # float32 fields compare at float32 precision
            np.testing.assert_array_equal(np.asarray(theirs), np.asarray(ours, theirs.dtype),
                                          err_msg=path)
    else:
        assert theirs == ours, path


def _wait_for(condition: Any, timeout_s: float = 5.0, spin: Any = None) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        if spin is not None:
            spin(0.01)
        else:
            time.sleep(0.005)


@pytest.mark.parametrize("msg_type", list(SAMPLES), ids=lambda t: t.__name__)
def test_published_bytes_decode_with_rosbags(ros_domain: int, msg_type: type) -> None:
    node = DdsNode("wire_pub")
    try:
        publisher = node.create_publisher(msg_type, "/wire/out", QOS_DEFAULT)
        topic = Topic(node._participant, dds_topic_name("/wire/out"), msg_type)
        reader = DataReader(node._participant, topic, qos=dds_qos(QOS_DEFAULT))
        _wait_for(lambda: publisher.matched_count() > 0)
        publisher.publish(SAMPLES[msg_type])
        received: list[bytes] = []
        _wait_for(lambda: received.extend(d for d, _ in ddspy_take(reader._ref, ANY_STATE, 8))
                  or received)
        raw = received[0]
        assert raw[:4] == b"\x00\x01\x00\x00"  # CDR_LE, plain CDR (XCDR1) as rmw_cyclonedds
        assert topic.get_type_name() == msg_type.__idl_typename__.replace(".", "::")
        for store in STORES.values():
            decoded = store.deserialize_cdr(raw, m.ros_type_name(msg_type))
            assert_same(SAMPLES[msg_type], decoded)
        reader.__del__()
    finally:
        node.destroy()


@pytest.mark.parametrize("store_name", list(STORES))
@pytest.mark.parametrize("msg_type", list(SAMPLES), ids=lambda t: t.__name__)
def test_rosbags_bytes_reach_our_subscriber(ros_domain: int, msg_type: type,
                                            store_name: str) -> None:
    store = STORES[store_name]
    theirs = store.deserialize_cdr(SAMPLES[msg_type].serialize(), m.ros_type_name(msg_type))
    raw = bytes(store.serialize_cdr(theirs, m.ros_type_name(msg_type)))  # rosbags encodes
    node = DdsNode("wire_sub")
    try:
        got: list[Any] = []
        sub = node.create_subscription(msg_type, "/wire/in", got.append, QOS_DEFAULT)
        topic = Topic(node._participant, dds_topic_name("/wire/in"), msg_type)
        writer = DataWriter(node._participant, topic, qos=dds_qos(QOS_DEFAULT))
        _wait_for(lambda: sub.matched_count() > 0)
        assert ddspy_write(writer._ref, raw + b"\0" * (-len(raw) % 4)) >= 0
        _wait_for(lambda: got, spin=node.spin_once)
        assert got[0] == SAMPLES[msg_type]
        writer.__del__()
    finally:
        node.destroy()


def test_big_image_round_trips_through_rosbags(ros_domain: int) -> None:
    pixels = RNG.integers(0, 256, (480, 640, 3), dtype=np.uint8)
    image = m.image_from_numpy(pixels, "rgb8")
    decoded = STORES["jazzy"].deserialize_cdr(image.serialize(), "sensor_msgs/msg/Image")
    assert decoded.step == 640 * 3 and decoded.encoding == "rgb8"
    np.testing.assert_array_equal(decoded.data.reshape(480, 640, 3), pixels)
    back = m.Image.deserialize(STORES["jazzy"].serialize_cdr(decoded, "sensor_msgs/msg/Image"))
    np.testing.assert_array_equal(m.image_to_numpy(back), pixels)


def _random_joint_state(rng: np.random.Generator) -> m.JointState:
    """Names and frame ids of every length mod 4 (unicode too), empty and full sequences."""
    n = int(rng.integers(0, 12))
    letters = list("abz_0é✓")

    def text() -> str:
        return "".join(rng.choice(letters, int(rng.integers(0, 9))))

    def values() -> np.ndarray | None:
        return None if rng.random() < 0.3 else rng.normal(size=n) * 10.0 ** rng.integers(-30, 30)

    return m.joint_state([text() for _ in range(n)], values(), values(), values(),
                         stamp_s=float(rng.uniform(-1e9, 2e9)), frame_id=text())


def test_joint_state_codec_is_cyclonedds_and_rosbags_byte_for_byte() -> None:
    """JointState's own codec (every control-loop hop) against cyclonedds' generic machines and
    rosbags: the same bytes out, the same message in."""
    rng = np.random.default_rng(11)
    for _ in range(300):
        msg = _random_joint_state(rng)
        ours = msg.serialize()
        assert ours == m.JointState.__idl__.serialize(msg)  # cyclonedds' path, ours bypassed
        for store in STORES.values():
            theirs = store.deserialize_cdr(ours, "sensor_msgs/msg/JointState")
            assert_same(msg, theirs)
            raw = bytes(store.serialize_cdr(theirs, "sensor_msgs/msg/JointState"))
            assert raw == ours
            assert m.JointState.deserialize(raw) == msg == m.JointState.__idl__.deserialize(raw)
            big_endian = bytes(store.serialize_cdr(theirs, "sensor_msgs/msg/JointState",
                                                   little_endian=False))
            assert m.JointState.deserialize(big_endian) == msg  # cyclonedds' path


def test_joint_state_codec_takes_what_the_generic_path_took() -> None:
    names = ["a", "b", "c", "d"]
    for position in (np.arange(4.0).reshape(2, 2), (1, 2, 3, 4), [True, 2, np.float32(0.5), 4]):
        msg = m.JointState(m.header(1.0), names, position, [], [])
        assert msg.serialize() == m.JointState.__idl__.serialize(msg)
        assert m.JointState.deserialize(msg.serialize()).position == [
            float(v) for v in np.ravel(position)]
    whole = m.joint_state(names, effort=[1.0, 2.0, 3.0, 4.0]).serialize()
    with pytest.raises(ValueError, match=r"JointState CDR: 4 float64 at offset \d+ run past"):
        m.JointState.deserialize(whole[:-5])
    with pytest.raises(ValueError, match=r"JointState CDR: the 30-byte sample ends early"):
        m.JointState.deserialize(whole[:30])
