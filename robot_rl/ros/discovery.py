"""``ros_discovery_info``: what makes our DDS nodes visible to ``ros2 node list`` and ``ros2 node info``.

ROS 2 finds topics through DDS discovery alone, but nodes only through this topic: every rmw
participant publishes one ``rmw_dds_common/msg/ParticipantEntitiesInfo`` (its GUID, and per node the
namespace, name and the GUIDs of the node's readers and writers), reliable, transient local, depth 1,
republished whenever an entity is added or removed. The DDS topic name has no ``rt/`` prefix.

The GID is 24 bytes up to Humble and 16 from Iron on (Jazzy); the size follows ``ROS_DISTRO`` (the
distribution of the ROS 2 machines that should see us), and Jazzy when it is unset.
"""

# No `from __future__ import annotations`: cyclonedds resolves the field annotations at runtime.
import os
import threading
import uuid
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from cyclonedds.domain import DomainParticipant
from cyclonedds.idl import IdlStruct
from cyclonedds.idl.types import array, byte, sequence
from cyclonedds.pub import DataWriter
from cyclonedds.topic import Topic

from robot_rl.ros.qos import QosProfile

TOPIC = "ros_discovery_info"
QOS = QosProfile(depth=1, reliability="reliable", durability="transient_local")
# ROS 2 distributions whose rmw_dds_common Gid holds 24 bytes; later ones hold 16.
DISTROS_WITH_24_BYTE_GID = ("dashing", "eloquent", "foxy", "galactic", "humble")


def gid_size(distro: str | None = None) -> int:
    distro = (os.environ.get("ROS_DISTRO", "") if distro is None else distro).strip().lower()
    return 24 if distro in DISTROS_WITH_24_BYTE_GID else 16


@cache
def message_types(size: int) -> tuple[type, type, type]:
    """(Gid, NodeEntitiesInfo, ParticipantEntitiesInfo) for a GID of ``size`` bytes."""

    def _dds(name: str) -> str:
        return f"rmw_dds_common::msg::dds_::{name}_"

    @dataclass
    class Gid(IdlStruct, typename=_dds("Gid")):
        data: array[byte, size] = field(default_factory=lambda: [0] * size)  # type: ignore[valid-type]

    @dataclass
    class NodeEntitiesInfo(IdlStruct, typename=_dds("NodeEntitiesInfo")):
        node_namespace: str = "/"
        node_name: str = ""
        reader_gid_seq: sequence[Gid] = field(default_factory=list)  # type: ignore[valid-type]
        writer_gid_seq: sequence[Gid] = field(default_factory=list)  # type: ignore[valid-type]

    @dataclass
    class ParticipantEntitiesInfo(IdlStruct, typename=_dds("ParticipantEntitiesInfo")):
        gid: Gid = field(default_factory=Gid)
        node_entities_info_seq: sequence[NodeEntitiesInfo] = field(  # type: ignore[valid-type]
            default_factory=list)

    return Gid, NodeEntitiesInfo, ParticipantEntitiesInfo


def gid(guid: uuid.UUID, size: int) -> Any:
    """rmw_cyclonedds' GID: the 16 GUID bytes, zero-padded to ``size``."""
    raw = guid.bytes + bytes(size - 16)
    return message_types(size)[0](data=list(raw))


@dataclass
class _NodeEntities:
    namespace: str
    name: str
    readers: list[uuid.UUID] = field(default_factory=list)
    writers: list[uuid.UUID] = field(default_factory=list)


class DiscoveryInfo:
    """The participant's ParticipantEntitiesInfo, kept current as nodes add and drop entities."""

    def __init__(self, participant: DomainParticipant, qos: Any, size: int | None = None) -> None:
        self.size = gid_size() if size is None else size
        self._participant = participant
        self._types = message_types(self.size)
        self._topic = Topic(participant, TOPIC, self._types[2])
        self._writer = DataWriter(participant, self._topic, qos=qos)
        self._nodes: dict[int, _NodeEntities] = {}
        self._lock = threading.Lock()

    def add_node(self, key: int, namespace: str, name: str) -> None:
        with self._lock:
            self._nodes[key] = _NodeEntities(namespace, name)
            self._publish()

    def add_entity(self, key: int, guid: uuid.UUID, is_reader: bool) -> None:
        with self._lock:
            node = self._nodes[key]
            (node.readers if is_reader else node.writers).append(guid)
            self._publish()

    def remove_node(self, key: int) -> None:
        with self._lock:
            if self._nodes.pop(key, None) is not None:
                self._publish()

    def message(self) -> Any:
        _, node_info, participant_info = self._types
        return participant_info(
            gid=gid(self._participant.guid, self.size),
            node_entities_info_seq=[
                node_info(node_namespace=n.namespace, node_name=n.name,
                          reader_gid_seq=[gid(g, self.size) for g in n.readers],
                          writer_gid_seq=[gid(g, self.size) for g in n.writers])
                for n in self._nodes.values()])

    def _publish(self) -> None:
        self._writer.write(self.message())
