"""What ROS 2 tooling gets from dds nodes: type hashes, /rosout, and discovery set by ROS 2's
own variables. Judged by independent code: rosbags (Jazzy's type store hashes and decodes) and
plain cyclonedds readers; no rclpy needed (test_ros_interop.py checks the same with rclpy)."""

from __future__ import annotations

import time
from typing import Any

import pytest
from cyclonedds._clayer import ddspy_take
from cyclonedds.core import InstanceState, Policy, SampleState, ViewState
from cyclonedds.sub import DataReader
from cyclonedds.topic import Topic
from rosbags.typesys import Stores, get_typestore

from robot_rl.ros import messages as m
from robot_rl.ros.dds_backend import (
    ROSOUT_QOS,
    Discovery,
    _domain_config,
    cyclone_config,
    dds_qos,
    discovery_from_env,
    participant,
)
from robot_rl.ros.qos import QOS_DEFAULT, QOS_SENSOR_DATA
from robot_rl.ros.runtime import make_node

JAZZY = get_typestore(Stores.ROS2_JAZZY)
ANY_STATE = SampleState.Any | ViewState.Any | InstanceState.Any


@pytest.mark.parametrize("msg_type", m.MESSAGE_TYPES, ids=lambda t: t.__name__)
def test_type_hashes_are_jazzys(msg_type: type) -> None:
    """REP 2011's RIHS01 from our own field declarations equals rosbags' hash of Jazzy's .msg
    definitions: a field of the wrong type, order or name would change it."""
    assert m.type_hash(msg_type) == JAZZY.hash_rihs01(m.ros_type_name(msg_type))


def _wait(condition: Any, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def test_every_endpoint_carries_its_type_hash(ros_domain: int) -> None:
    """Jazzy showed `Topic type hash: INVALID` for dds endpoints; rclpy's carry RIHS01_..."""
    node = make_node("hashed", argv=[])
    try:
        node.create_publisher(m.JointState, "/hashed/states", QOS_SENSOR_DATA)
        node.create_subscription(m.Image, "/hashed/images", lambda msg: None, QOS_DEFAULT)
        dp = participant()
        states = DataReader(dp, Topic(dp, "rt/hashed/states", m.JointState),
                            qos=dds_qos(QOS_SENSOR_DATA))
        from cyclonedds.pub import DataWriter
        images = DataWriter(dp, Topic(dp, "rt/hashed/images", m.Image), qos=dds_qos(QOS_DEFAULT))
        _wait(lambda: states.get_matched_publications() and images.get_matched_subscriptions(),
              10, "the node's endpoints")
        (writer,) = [states.get_matched_publication_data(h)
                     for h in states.get_matched_publications()]
        (reader,) = [images.get_matched_subscription_data(h)
                     for h in images.get_matched_subscriptions()]
        assert writer.qos[Policy.Userdata].data == \
            f"typehash={JAZZY.hash_rihs01('sensor_msgs/msg/JointState')};".encode()
        assert reader.qos[Policy.Userdata].data == \
            f"typehash={JAZZY.hash_rihs01('sensor_msgs/msg/Image')};".encode()
    finally:
        node.destroy()


def test_log_lines_go_to_rosout_too(ros_domain: int) -> None:
    """`ros2 topic echo /rosout` (and rqt_console) read rcl_interfaces/msg/Log there; a late
    subscriber still gets earlier lines (transient local, as rcl's)."""
    node = make_node("chatty", "/lab", argv=["--ros-args", "--log-level", "info"])
    try:
        node.get_logger().debug("not at this level")
        node.get_logger().warning("motor 3 is warm")
        dp = participant()
        reader = DataReader(dp, Topic(dp, "rt/rosout", m.Log), qos=dds_qos(ROSOUT_QOS))
        logs: list[Any] = []

        def arrived() -> bool:
            logs.extend(JAZZY.deserialize_cdr(data, "rcl_interfaces/msg/Log")
                        for data, _ in ddspy_take(reader._ref, ANY_STATE, 16))
            return any(log.msg == "motor 3 is warm" for log in logs)

        _wait(arrived, 10, "the warning on /rosout")
        mine = [log for log in logs if log.name == "lab.chatty"]
        assert [log.msg.split(" (")[0] for log in mine] == ["backend: dds", "motor 3 is warm"]
        assert [log.level for log in mine] == [m.Log.INFO, m.Log.WARN]
        assert abs(mine[-1].stamp.sec - time.time()) < 5
    finally:
        node.destroy()


@pytest.mark.parametrize("env, expected", [
    ({}, Discovery("SUBNET")),
    ({"ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST"},
     Discovery("LOCALHOST", (), "ROS_AUTOMATIC_DISCOVERY_RANGE")),
    ({"ROS_AUTOMATIC_DISCOVERY_RANGE": "OFF", "ROS_STATIC_PEERS": "10.0.0.2"},
     Discovery("OFF", ("10.0.0.2",), "ROS_AUTOMATIC_DISCOVERY_RANGE")),
    ({"ROS_STATIC_PEERS": "127.0.0.1; 10.0.0.2;"}, Discovery("SUBNET", ("127.0.0.1", "10.0.0.2"))),
    # Humble's variable wins and drops static peers, as Jazzy's rcl does
    ({"ROS_LOCALHOST_ONLY": "1", "ROS_AUTOMATIC_DISCOVERY_RANGE": "SUBNET",
      "ROS_STATIC_PEERS": "10.0.0.2"}, Discovery("LOCALHOST", (), "ROS_LOCALHOST_ONLY")),
    ({"ROS_LOCALHOST_ONLY": "0"}, Discovery("SUBNET")),
    ({"ROBOT_RL_DDS_LOOPBACK": "1"}, Discovery("LOCALHOST", (), "ROBOT_RL_DDS_LOOPBACK")),
    ({"ROBOT_RL_DDS_LOOPBACK": "1", "ROS_AUTOMATIC_DISCOVERY_RANGE": "SYSTEM_DEFAULT"},
     Discovery("SYSTEM_DEFAULT", (), "ROS_AUTOMATIC_DISCOVERY_RANGE")),
])
def test_discovery_follows_ros2_variables(env: dict[str, str], expected: Discovery) -> None:
    assert discovery_from_env(env) == expected


def test_an_unknown_discovery_range_is_named() -> None:
    with pytest.raises(ValueError, match=r"ROS_AUTOMATIC_DISCOVERY_RANGE='localhost': expected "
                                         "one of SUBNET, LOCALHOST, OFF, SYSTEM_DEFAULT"):
        discovery_from_env({"ROS_AUTOMATIC_DISCOVERY_RANGE": "localhost"})


def test_cyclone_configuration_per_range(monkeypatch: pytest.MonkeyPatch) -> None:
    """rmw_cyclonedds' mapping: LOCALHOST no multicast and 127.0.0.1 as a peer (on the loopback
    interface unless a peer lies elsewhere); OFF no multicast and a tag of this process only;
    SUBNET multicast plus the static peers; defaults untouched otherwise."""
    assert cyclone_config(Discovery("SUBNET")) is None
    assert cyclone_config(Discovery("SYSTEM_DEFAULT", ("10.0.0.2",))) is None
    local = cyclone_config(Discovery("LOCALHOST"))
    assert local is not None
    for part in ('<NetworkInterface name="lo"/>', "<AllowMulticast>false</AllowMulticast>",
                 "<ParticipantIndex>auto</ParticipantIndex>", '<Peer address="127.0.0.1"/>'):
        assert part in local
    remote = cyclone_config(Discovery("LOCALHOST", ("10.0.0.2",)))
    assert remote is not None and "NetworkInterface" not in remote
    assert '<Peer address="127.0.0.1"/><Peer address="10.0.0.2"/>' in remote
    subnet = cyclone_config(Discovery("SUBNET", ("10.0.0.2",)))
    assert subnet is not None and "AllowMulticast" not in subnet
    assert '<Peers><Peer address="10.0.0.2"/></Peers>' in subnet
    off = cyclone_config(Discovery("OFF", ("10.0.0.2",)), pid=4242)
    assert off is not None and "<Tag>ros_discovery_off_4242</Tag>" in off and "Peer" not in off
    # the user's own CYCLONEDDS_URI comes after ours, so it can refine it
    monkeypatch.setenv("CYCLONEDDS_URI", "file:///etc/my_cyclone.xml")
    assert _domain_config(Discovery("LOCALHOST")) == f"{local},file:///etc/my_cyclone.xml"
    assert _domain_config(Discovery("SUBNET")) is None  # Cyclone reads CYCLONEDDS_URI itself
