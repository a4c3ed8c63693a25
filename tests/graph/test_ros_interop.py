"""robot_rl's nodes and real ROS 2 on one graph: plain rclpy (Fast DDS) against both backends.

The ROS 2 side is plain rclpy (rclpy_peer.RosPeer), none of robot_rl's ROS layer: what a ROS 2
user's own nodes and ``ros2 node/topic/param`` see. Discovery for both stacks comes from one ROS 2
variable (``ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST``, set by ``ros_domain``); Fast DDS and the
dds backend in loopback mode never met before the dds backend read it. Skipped where rclpy
cannot be imported.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from graph_probe import Probe, node_cmd, params, stop
from helpers.backends import both_backends, needs_rclpy
from helpers.processes import child_env, python_cmd
from rclpy_peer import RosPeer, plain, ros_message_class
from test_ros_wire import SAMPLES

from robot_rl.nodes import topics
from robot_rl.robot_config import load_robot
from robot_rl.ros import messages as m
from robot_rl.ros.qos import QOS_DEFAULT, QOS_SENSOR_DATA
from robot_rl.ros.runtime import make_node

pytestmark = needs_rclpy
CAL = load_robot("dclaw")
NAMES = list(CAL.joint_names)
MID = NAMES.index("f0_mid")
# every message type robot_rl's nodes publish, and the rest of messages.MESSAGE_TYPES
ALL_SAMPLES = {**SAMPLES, m.Log: m.Log(stamp=m.Time(5, 6), level=m.Log.WARN, name="hand.twin",
                                       msg="hot ✓", file="twin.py", function="tick", line=42),
               m.Clock: m.Clock(clock=m.Time(1234, 500_000_000))}


@pytest.fixture
def peer(ros_domain: int) -> Iterator[RosPeer]:
    """A plain rclpy node on the test's domain."""
    ros2 = RosPeer()
    yield ros2
    ros2.close()


def test_rclpy_decodes_every_message_type_and_robot_rl_decodes_rclpys(peer: RosPeer) -> None:
    node = make_node("interop", argv=[], backend="dds")
    try:
        outgoing, incoming, got = {}, {}, {}
        for msg_type in ALL_SAMPLES:
            name = m.ros_type_name(msg_type)
            outgoing[msg_type] = node.create_publisher(msg_type, f"/to_ros/{msg_type.__name__}")
            peer.subscribe(name, f"/to_ros/{msg_type.__name__}")
            got[msg_type] = []
            node.create_subscription(msg_type, f"/from_ros/{msg_type.__name__}",
                                     got[msg_type].append)
            incoming[msg_type] = peer.publisher(name, f"/from_ros/{msg_type.__name__}")

        def publish_all() -> None:
            for msg_type, sample in ALL_SAMPLES.items():
                if not peer.got[f"/to_ros/{msg_type.__name__}"]:
                    outgoing[msg_type].publish(sample)
                if not got[msg_type]:
                    incoming[msg_type].publish(_rclpy_copy(sample))
            node.spin_once(0.0)

        peer.wait_until(lambda: all(peer.got.values()) and all(got.values()), 30, publish_all,
                        what="every type in both directions")
        for msg_type, sample in ALL_SAMPLES.items():
            assert plain(peer.got[f"/to_ros/{msg_type.__name__}"][0]) == plain(sample), msg_type
            assert got[msg_type][0] == sample, msg_type
    finally:
        node.destroy()


def _rclpy_copy(sample: Any) -> Any:
    """The rclpy message equal to ``sample``, built by the test from plain values."""
    out = ros_message_class(m.ros_type_name(type(sample)))()
    for name, kind in out.get_fields_and_field_types().items():
        value = getattr(sample, name)
        if hasattr(value, "__dataclass_fields__"):
            value = _rclpy_copy(value)
        elif isinstance(value, list) and value and hasattr(value[0], "__dataclass_fields__"):
            value = [_rclpy_copy(v) for v in value]
        elif kind in ("octet", "byte"):
            value = bytes([value])
        elif kind == "sequence<uint8>":
            value = list(value)
        setattr(out, name, value)
    return out


@both_backends
def test_ros2_sees_the_graph_and_its_commands_are_gated(peer: RosPeer, spawn: Any,
                                                        backend: str) -> None:
    """Twin and safety on ``backend``: ROS 2 lists them and their topics with type hashes, reads
    their logs on /rosout, and its raw commands reach the twin only through the safety node."""
    twin = spawn(node_cmd("robot_rl.sim_twin.node", "-r", "__ns:=/hand",
                          *params(robot="dclaw", publish_rate_hz=50.0)))
    safety = spawn(node_cmd("robot_rl.nodes.safety", "-r", "__ns:=/hand", *params(robot="dclaw")))
    states = peer.subscribe("sensor_msgs/msg/JointState", "/hand/joint_states", "sensor")
    commands = peer.subscribe("sensor_msgs/msg/JointState", "/hand/command")
    logs = peer.subscribe("rcl_interfaces/msg/Log", "/rosout", "rosout")
    raw = peer.publisher("sensor_msgs/msg/JointState", "/hand/command_raw")

    peer.wait_until(lambda: {"/hand/twin", "/hand/safety"} <= peer.nodes() and bool(states), 40,
                    what="twin and safety in ROS 2's node list, and joint states")
    graph = peer.topics()
    for topic in ("/hand/joint_states", "/hand/command", "/hand/command_raw"):
        assert graph[topic] == ["sensor_msgs/msg/JointState"], topic
    (writer,) = peer.node.get_publishers_info_by_topic("/hand/joint_states")
    assert writer.node_name == "twin" and writer.node_namespace == "/hand"
    hashed = writer.topic_type_hash
    assert hashed.version == 1
    assert f"RIHS01_{hashed.value.hex()}" == m.type_hash(m.JointState)
    peer.wait_until(lambda: any(log.name == "hand.twin" and log.msg.startswith(f"backend: {backend}")
                                for log in logs), 10, what="the twin's first log line on /rosout")

    start = np.asarray(states[-1].position)
    jump = start.copy()
    jump[MID] = CAL.upper_rad[MID]

    def send() -> None:
        msg = ros_message_class("sensor_msgs/msg/JointState")(name=NAMES, position=list(jump))
        msg.header.stamp = peer.node.get_clock().now().to_msg()
        raw.publish(msg)

    peer.wait_until(lambda: len(commands) >= 5, 15, send, what="gated commands")
    sent = np.array([c.position for c in commands])
    max_step = CAL.safety.max_step_rad
    assert abs(sent[0][MID] - start[MID]) <= max_step + 1e-9
    assert np.all(np.abs(np.diff(sent, axis=0)) <= max_step + 1e-9)
    peer.wait_until(lambda: states[-1].position[MID] > start[MID] + 0.05, 15, send,
                    what="the twin moving through the safety node")
    assert stop(safety) == 0 and stop(twin) == 0


def test_parameters_through_rclpy_on_rclpy_nodes(peer: RosPeer, spawn: Any) -> None:
    """`ros2 param get/describe/set` on an rclpy-backend node (teleop, whose empty-list defaults
    once became byte arrays): the values launch gave, typed as ROS 2 types them, described, and
    read-only (they are read once at start: a set is refused, not silently ignored)."""
    from rcl_interfaces.msg import ParameterType
    from rclpy.parameter import Parameter
    from rclpy.parameter_client import AsyncParameterClient

    teleop = spawn(node_cmd("robot_rl.nodes.teleop", "-r", "__ns:=/hand", "-p", "device:=leader",
                            "-p", "control_rate_hz:=25", "-p", f"leader_joints:=[{', '.join(NAMES)}]",
                            "-p", f"leader_scale:=[{', '.join(['-1.0'] * len(NAMES))}]"),
                   env=child_env(ROBOT_RL_BACKEND="rclpy"))
    client = AsyncParameterClient(peer.node, "/hand/teleop")
    peer.wait_until(lambda: client.services_are_ready(), 30, what="teleop's parameter services")
    names = ["control_rate_hz", "leader_joints", "leader_scale", "leader_offset_rad", "device",
             "first_episode"]
    values = peer.call(client.get_parameters(names)).values
    assert [v.type for v in values] == [
        ParameterType.PARAMETER_DOUBLE, ParameterType.PARAMETER_STRING_ARRAY,
        ParameterType.PARAMETER_DOUBLE_ARRAY, ParameterType.PARAMETER_DOUBLE_ARRAY,
        ParameterType.PARAMETER_STRING, ParameterType.PARAMETER_INTEGER]
    assert values[0].double_value == 25.0
    assert list(values[1].string_array_value) == NAMES
    assert list(values[2].double_array_value) == [-1.0] * len(NAMES)
    assert list(values[3].double_array_value) == []
    (described,) = peer.call(client.describe_parameters(["leader_scale"])).descriptors
    assert described.read_only and described.description == "leader: scale per follower joint"
    listed = peer.call(client.list_parameters()).result.names
    assert set(names) | {"use_sim_time"} <= set(listed)
    (result,) = peer.call(client.set_parameters([Parameter("control_rate_hz", value=5.0)])).results
    assert not result.successful and "read-only" in result.reason
    assert stop(teleop) == 0


@pytest.mark.parametrize("twin_backend, safety_backend", [("dds", "rclpy"), ("rclpy", "dds")])
def test_mixed_graph_in_both_directions(ros_domain: int, spawn: Any, twin_backend: str,
                                        safety_backend: str) -> None:
    """Twin on one backend, safety on the other, the probe (as the learner) on the twin's: a raw
    command crosses from one stack to the other and back before it moves the twin."""
    twin = spawn(node_cmd("robot_rl.sim_twin.node", "-r", "__ns:=/hand", *params(publish_rate_hz=50.0)),
                 env=child_env(ROBOT_RL_BACKEND=twin_backend))
    safety = spawn(node_cmd("robot_rl.nodes.safety", "-r", "__ns:=/hand"),
                   env=child_env(ROBOT_RL_BACKEND=safety_backend))
    probe = Probe(backend=twin_backend)
    try:
        states = probe.listen("joints", m.JointState, topics.JOINT_STATES, QOS_SENSOR_DATA)
        status = probe.listen("status", m.String, topics.SAFETY_STATUS, QOS_DEFAULT)
        raw = probe.node.create_publisher(m.JointState, topics.COMMAND_RAW, QOS_DEFAULT)
        probe.wait_until(lambda: bool(states), 40, what="joint states")
        target = np.asarray(states[-1].position).copy()
        target[MID] += 0.2
        probe.wait_until(lambda: states[-1].position[MID] > target[MID] - 0.05, 20,
                         lambda: raw.publish(m.joint_state(NAMES, target)), 0.05,
                         what="the twin following a raw command through the other stack")
        probe.wait_until(lambda: bool(status) and status[-1].data in ("pass", "clipped"), 5,
                         lambda: raw.publish(m.joint_state(NAMES, target)), 0.05,
                         what="the safety node passing the command")
    finally:
        probe.destroy()
    assert stop(safety) == 0 and stop(twin) == 0


def test_ros_localhost_only_alone_joins_both_stacks(ros_domain: int, spawn: Any,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """Humble's switch, still honoured by Jazzy's rcl: set alone, it keeps both stacks on this
    host and they find each other (the dds backend once ignored every ROS 2 variable)."""
    monkeypatch.delenv("ROS_AUTOMATIC_DISCOVERY_RANGE")
    monkeypatch.setenv("ROS_LOCALHOST_ONLY", "1")
    talker = spawn(python_cmd("import sys, robot_rl.ros.examples as e; sys.exit(e.talker_main())",
                              "--ros-args", "-r", "__ns:=/lo"), env=child_env())
    peer = RosPeer()
    try:
        heard = peer.subscribe("std_msgs/msg/String", "/lo/chatter")
        peer.wait_until(lambda: bool(heard), 20, what="the dds talker, heard by rclpy")
    finally:
        peer.close()
    assert stop(talker) == 0
