"""``ros_discovery_info``, what ``ros2 node list`` reads: judged by rosbags and by DDS discovery.

A node runs in its own process. This process reads the topic raw, decodes it with rosbags' Humble
and Jazzy type stores, and checks the GIDs against the GUIDs that DDS discovery itself reports for
the endpoints this process matches with the node's (an independent account of who is who).
(The builtin-topic readers of cyclonedds-python 11.0.1 crash on take, so matched-endpoint data is
the discovery source used here.)
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from cyclonedds._clayer import ddspy_take
from cyclonedds.core import InstanceState, SampleState, ViewState
from cyclonedds.pub import DataWriter
from cyclonedds.sub import DataReader
from cyclonedds.topic import Topic
from helpers.processes import child_env, python_cmd
from rosbags.typesys import Stores, get_typestore

from robot_rl.ros import discovery
from robot_rl.ros import messages as m
from robot_rl.ros.dds_backend import ROSOUT_QOS, dds_qos, participant
from robot_rl.ros.qos import QOS_DEFAULT

ANY_STATE = SampleState.Any | ViewState.Any | InstanceState.Any
STORES = {"humble": Stores.ROS2_HUMBLE, "jazzy": Stores.ROS2_JAZZY}
NODE_CODE = """
import time
from robot_rl.ros import messages as m
from robot_rl.ros.runtime import make_node
node = make_node("probe", "/lab/hand", argv=[])
node.create_publisher(m.JointState, "joint_states")
node.create_subscription(m.JointState, "command", lambda msg: None)
time.sleep(60)
"""


@pytest.mark.parametrize("distro", list(STORES))
def test_node_and_its_endpoints_are_announced(distro: str, ros_domain: int, spawn: Any) -> None:
    size = discovery.gid_size(distro)
    dp = participant()
    raw_reader = DataReader(dp, Topic(dp, discovery.TOPIC, discovery.message_types(size)[2]),
                            qos=dds_qos(discovery.QOS))
    # our own endpoints on the node's topics: DDS tells us the GUIDs of those they match
    states = DataReader(dp, Topic(dp, "rt/lab/hand/joint_states", m.JointState),
                        qos=dds_qos(QOS_DEFAULT))
    commands = DataWriter(dp, Topic(dp, "rt/lab/hand/command", m.JointState),
                          qos=dds_qos(QOS_DEFAULT))
    logs = DataReader(dp, Topic(dp, "rt/rosout", m.Log), qos=dds_qos(ROSOUT_QOS))
    proc = spawn(python_cmd(NODE_CODE), env=child_env(ROS_DISTRO=distro))
    store = get_typestore(STORES[distro])
    decoded: list[Any] = []
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        for data, _ in ddspy_take(raw_reader._ref, ANY_STATE, 16):
            msg = store.deserialize_cdr(data, "rmw_dds_common/msg/ParticipantEntitiesInfo")
            if bytes(msg.gid.data[:16]) != dp.guid.bytes:
                decoded.append(msg)
        nodes = decoded[-1].node_entities_info_seq if decoded else []
        complete = nodes and len(nodes[0].writer_gid_seq) == 2 and len(nodes[0].reader_gid_seq)
        if complete and states.get_matched_publications() and \
                commands.get_matched_subscriptions() and logs.get_matched_publications():
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the node process died"
    assert decoded, "no ros_discovery_info from the node's process"
    info = decoded[-1]
    assert len(info.gid.data) == size and not any(info.gid.data[16:])
    (node,) = info.node_entities_info_seq
    assert (node.node_namespace, node.node_name) == ("/lab/hand", "probe")

    (writer,) = [states.get_matched_publication_data(h)
                 for h in states.get_matched_publications()]
    (reader,) = [commands.get_matched_subscription_data(h)
                 for h in commands.get_matched_subscriptions()]
    (rosout,) = [logs.get_matched_publication_data(h) for h in logs.get_matched_publications()]
    assert bytes(info.gid.data[:16]) == writer.participant_key.bytes == reader.participant_key.bytes
    # the node's /rosout writer, made with the node, then its joint_states writer
    assert [bytes(g.data[:16]) for g in node.writer_gid_seq] == [rosout.key.bytes,
                                                                  writer.key.bytes]
    assert [bytes(g.data[:16]) for g in node.reader_gid_seq] == [reader.key.bytes]
