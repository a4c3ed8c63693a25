"""The Node API on Eclipse Cyclone DDS, speaking ROS 2's wire conventions (rmw_cyclonedds).

Topic ``rt/<resolved name without the leading slash>``, type ``<pkg>::msg::dds_::<Name>_``,
plain CDR (XCDR1) little endian, rclpy's QoS. A ROS 2 machine on the same domain sees these
topics. One participant per process and domain, shared by the nodes of the process; each node
has one WaitSet that its spinning thread waits on, so its callbacks run one at a time. The
participant publishes ``ros_discovery_info`` (robot_rl.ros.discovery), so ``ros2 node list`` on a
ROS 2 machine lists our nodes too.
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections.abc import Callable
from typing import Any

from cyclonedds.core import (
    GuardCondition,
    InstanceState,
    Policy,
    Qos,
    ReadCondition,
    SampleState,
    ViewState,
    WaitSet,
)
from cyclonedds.domain import DomainParticipant
from cyclonedds.pub import DataWriter
from cyclonedds.sub import DataReader, InvalidSample
from cyclonedds.topic import Topic
from cyclonedds.util import duration

from robot_rl.ros import messages
from robot_rl.ros.api import (
    CLOCK_TOPIC,
    QOS_CLOCK_READER,
    USE_SIM_TIME,
    Node,
    NodeOptions,
    SimClock,
    Timer,
    TimerQueue,
)
from robot_rl.ros.discovery import QOS as DISCOVERY_QOS
from robot_rl.ros.discovery import DiscoveryInfo
from robot_rl.ros.qos import QosProfile, qos_from_depth

# Works with Cyclone 0.10 (ROS 2 Humble/Jazzy) and 11; see PLATFORM.md.
LOOPBACK_CONFIG = (
    '<CycloneDDS xmlns="https://cdds.io/config"><Domain Id="any">'
    '<General><Interfaces><NetworkInterface name="lo"/></Interfaces>'
    "<AllowMulticast>false</AllowMulticast></General>"
    "<Discovery><ParticipantIndex>auto</ParticipantIndex>"
    "<MaxAutoParticipantIndex>32</MaxAutoParticipantIndex>"
    '<Peers><Peer address="127.0.0.1"/></Peers></Discovery>'
    "</Domain></CycloneDDS>"
)
_TAKE_BATCH = 32

_participants: dict[int, DomainParticipant] = {}
_discovery: dict[int, DiscoveryInfo] = {}
_participants_lock = threading.Lock()


def domain_id_from_env() -> int:
    raw = os.environ.get("ROS_DOMAIN_ID", "0").strip() or "0"
    try:
        domain_id = int(raw)
    except ValueError:
        raise ValueError(f"ROS_DOMAIN_ID: expected an integer 0-232, got {raw!r}") from None
    if not 0 <= domain_id <= 232:
        raise ValueError(f"ROS_DOMAIN_ID: expected an integer 0-232, got {domain_id}")
    return domain_id


def participant(domain_id: int | None = None) -> DomainParticipant:
    """The process's participant on ``domain_id`` (default: ``ROS_DOMAIN_ID``)."""
    domain_id = domain_id_from_env() if domain_id is None else domain_id
    with _participants_lock:
        if domain_id not in _participants:
            if os.environ.get("ROBOT_RL_DDS_LOOPBACK") == "1":
                # Cyclone reads its configuration when the domain is created, not later.
                os.environ["CYCLONEDDS_URI"] = LOOPBACK_CONFIG
            _participants[domain_id] = DomainParticipant(domain_id)
        return _participants[domain_id]


def discovery_info(domain_id: int | None = None) -> DiscoveryInfo:
    """The ``ros_discovery_info`` of the process's participant on ``domain_id``."""
    domain_id = domain_id_from_env() if domain_id is None else domain_id
    dp = participant(domain_id)
    with _participants_lock:
        if domain_id not in _discovery:
            _discovery[domain_id] = DiscoveryInfo(dp, dds_qos(DISCOVERY_QOS))
        return _discovery[domain_id]


def dds_qos(profile: QosProfile) -> Qos:
    """rclpy's QoS profile as Cyclone policies, and XCDR1 so Cyclone 0.10 and rosbags read it."""
    reliability = (Policy.Reliability.Reliable(max_blocking_time=duration(milliseconds=100))
                   if profile.reliability == "reliable" else Policy.Reliability.BestEffort)
    durability = (Policy.Durability.TransientLocal if profile.durability == "transient_local"
                  else Policy.Durability.Volatile)
    history = (Policy.History.KeepLast(depth=profile.depth) if profile.history == "keep_last"
               else Policy.History.KeepAll)
    return Qos(reliability, durability, history,
               Policy.DataRepresentation(use_cdrv0_representation=True))


def dds_topic_name(resolved: str) -> str:
    return "rt/" + resolved.lstrip("/")


class DdsPublisher:
    def __init__(self, writer: DataWriter, msg_type: type, topic: str) -> None:
        self._writer = writer
        self._msg_type = msg_type
        self.topic = topic

    def publish(self, msg: Any) -> None:
        """Thread-safe: a training thread may publish while the executor runs callbacks."""
        if not isinstance(msg, self._msg_type):
            raise TypeError(f"publisher on {self.topic}: expected {self._msg_type.__name__}, "
                            f"got {type(msg).__name__}")
        self._writer.write(msg)

    def matched_count(self) -> int:
        return len(self._writer.get_matched_subscriptions())

    def destroy(self) -> None:
        self._writer.__del__()  # dds_delete now, not whenever the GC gets to it


class DdsSubscription:
    def __init__(self, reader: DataReader, condition: ReadCondition,
                 callback: Callable[[Any], None], topic: str) -> None:
        self._reader = reader
        self.condition = condition
        self.callback = callback
        self.topic = topic

    def take(self) -> list[Any]:
        samples = self._reader.take(N=_TAKE_BATCH)
        # Disposed/unregistered instances come as InvalidSample: no message to deliver.
        return [s for s in samples if not isinstance(s, InvalidSample)]

    def matched_count(self) -> int:
        return len(self._reader.get_matched_publications())

    def destroy(self) -> None:
        self.condition.__del__()
        self._reader.__del__()


class DdsSimClock:
    """``use_sim_time`` on the dds backend: a ``/clock`` reader on the node's WaitSet.

    The executor takes the clock before any other message of a wake-up (``take``), so a callback
    sees the time its message was sent at: the twin publishes ``/clock`` before the state of that
    instant. Timers on the node's clock fire once it passes their due time, never before the
    first ``/clock`` (spin waits for it), and count from that first one.
    """

    def __init__(self, node: DdsNode) -> None:
        self.clock = SimClock()
        resolved = node.resolve(CLOCK_TOPIC)
        self._reader = DataReader(node._participant, node._topic(messages.Clock, resolved),
                                  qos=dds_qos(QOS_CLOCK_READER))
        self.condition = ReadCondition(self._reader,
                                       SampleState.Any | ViewState.Any | InstanceState.Any)
        node._discovery.add_entity(id(node), self._reader.guid, is_reader=True)
        self._warned = False
        self._logger = node.get_logger()

    def take(self) -> str | None:
        """Take what ``/clock`` sent; 'start' on the first time, else the last update's kind."""
        started = False
        for sample in self._reader.take(N=_TAKE_BATCH):
            if isinstance(sample, InvalidSample):
                continue
            outcome = self.clock.update(messages.stamp_to_s(sample.clock))
            started = started or outcome == "start"
            if outcome == "backward" and not self._warned:
                self._warned = True
                self._logger.warning(f"{CLOCK_TOPIC} went back to "
                                     f"{messages.stamp_to_s(sample.clock):.6f} s from "
                                     f"{self.clock.now_s:.6f} s: ignored (sim time never goes "
                                     "back within a run; restart the nodes for a new one)")
        return "start" if started else None

    def destroy(self) -> None:
        self.condition.__del__()
        self._reader.__del__()


class DdsNode(Node):
    """A node on Cyclone DDS; create it with ``runtime.make_node``."""

    def __init__(self, name: str, namespace: str | None = None,
                 options: NodeOptions | None = None, domain_id: int | None = None) -> None:
        super().__init__(name, namespace, options)
        self._participant = participant(domain_id)
        self._discovery = discovery_info(domain_id)
        self._discovery.add_node(id(self), self.namespace, self.name)
        self._waitset = WaitSet(self._participant)
        # _wake sets this to end a wait early (the waitset's own trigger does not). Attached, it
        # also keeps a node without subscriptions waiting: Cyclone's wait returns at once on a
        # waitset with nothing attached, and spin_once would be a busy loop.
        self._wakeup = GuardCondition(self._participant)
        self._waitset.attach(self._wakeup)
        self._topics: dict[str, Topic] = {}
        self._publishers: list[DdsPublisher] = []
        self._subscriptions: list[DdsSubscription] = []
        self._timers = TimerQueue()       # on the node's clock (ROS time)
        self._wall_timers = TimerQueue()  # on time.monotonic, whatever use_sim_time says
        self._destroyed = False
        self._sim: DdsSimClock | None = None
        self._start_sim_clock()

    def _topic(self, msg_type: type, resolved: str) -> Topic:
        key = f"{resolved}|{msg_type.__idl_typename__}"
        if key not in self._topics:
            self._topics[key] = Topic(self._participant, dds_topic_name(resolved), msg_type)
        return self._topics[key]

    def create_publisher(self, msg_type: type, topic: str,
                         qos: QosProfile | int | None = None) -> DdsPublisher:
        resolved = self.resolve(topic)
        writer = DataWriter(self._participant, self._topic(msg_type, resolved),
                            qos=dds_qos(qos_from_depth(qos)))
        publisher = DdsPublisher(writer, msg_type, resolved)
        self._publishers.append(publisher)
        self._discovery.add_entity(id(self), writer.guid, is_reader=False)
        return publisher

    def create_subscription(self, msg_type: type, topic: str, callback: Callable[[Any], None],
                            qos: QosProfile | int | None = None) -> DdsSubscription:
        resolved = self.resolve(topic)
        reader = DataReader(self._participant, self._topic(msg_type, resolved),
                            qos=dds_qos(qos_from_depth(qos)))
        condition = ReadCondition(reader, SampleState.Any | ViewState.Any | InstanceState.Any)
        self._waitset.attach(condition)
        subscription = DdsSubscription(reader, condition, callback, resolved)
        self._subscriptions.append(subscription)
        self._discovery.add_entity(id(self), reader.guid, is_reader=True)
        return subscription

    def create_timer(self, period_s: float, callback: Callable[[], None]) -> Timer:
        timer = Timer(period_s, callback, clock=self.steady_s)
        self._timers.add(timer)
        self._wake()  # a spinning executor must re-plan its wait
        return timer

    def create_wall_timer(self, period_s: float, callback: Callable[[], None]) -> Timer:
        timer = Timer(period_s, callback, clock=time.monotonic)
        self._wall_timers.add(timer)
        self._wake()
        return timer

    def spin_once(self, timeout_s: float = 0.0) -> None:
        if self._destroyed:
            raise RuntimeError(f"node {self.fully_qualified_name}: spin after destroy()")
        wait_s = min(timeout_s, self._seconds_to_next_timer())
        if wait_s > 0.0:
            self._waitset.wait(max(1, int(wait_s * 1e9)))
        self._wakeup.set(False)
        taken = [(s, s.take()) for s in list(self._subscriptions)]
        if self._take_clock():  # after the messages: see _take_clock
            self._run_due_timers()
        for subscription, msgs in taken:
            for msg in msgs:
                subscription.callback(msg)
        self._run_due_timers()

    # ---- clocks and timers ------------------------------------------------------------------
    def _start_sim_clock(self) -> None:
        """Declares ``use_sim_time`` (every ROS 2 node has it); when true, time is ``/clock``."""
        if self.declare_parameter(USE_SIM_TIME, False, "take time from /clock (the twin's "
                                  "simulated time) instead of the system clock"):
            self._sim = DdsSimClock(self)
            self._sim_clock = self._sim.clock
            self._waitset.attach(self._sim.condition)

    def _take_clock(self) -> bool:
        """Takes /clock after the wake-up's messages and before their callbacks; True when time
        moved. The simulator publishes /clock before the state of each instant, so once a state
        is taken its /clock has arrived too: taken after the messages, the clock is never behind
        a message it preceded (taken before, a state that came in between would be handled at
        the previous instant). Timers then due fire before the callbacks (ROS 2's executors run
        ready timers first), so a timer at sim time t sees what came before t, whether or not the
        messages stamped t came in the same wake-up: the orders a lockstep run needs to come out
        the same each time."""
        if self._sim is None:
            return False
        before = self._sim.clock.now_s
        if self._sim.take() == "start":
            self._timers.rebase(self._sim.clock.now_s)
        return self._sim.clock.now_s != before

    def _seconds_to_next_timer(self) -> float:
        """Wall seconds until a timer is due; sim-time timers become due when /clock arrives,
        which wakes the WaitSet, so they set no deadline."""
        now = time.monotonic()
        waits = [self._wall_timers.seconds_to_next(now)]
        if self._sim is None:
            waits.append(self._timers.seconds_to_next(now))
        return min((w for w in waits if w is not None), default=math.inf)

    def _run_due_timers(self) -> None:
        if self._sim is None or self._sim.clock.started:
            for timer in self._timers.pop_due(self.steady_s()):
                timer.callback()
        for timer in self._wall_timers.pop_due(time.monotonic()):
            timer.callback()

    def _wake(self) -> None:
        if not self._destroyed:
            self._wakeup.set(True)

    def destroy(self) -> None:
        if self._destroyed:
            return
        self._shutdown.set()
        self._destroyed = True
        self._discovery.remove_node(id(self))
        for subscription in self._subscriptions:
            self._waitset.detach(subscription.condition)
            subscription.destroy()
        for publisher in self._publishers:
            publisher.destroy()
        self._subscriptions.clear()
        self._publishers.clear()
        if self._sim is not None:
            self._waitset.detach(self._sim.condition)
            self._sim.destroy()
        for topic in self._topics.values():
            topic.__del__()
        self._topics.clear()
        self._waitset.detach(self._wakeup)
        self._wakeup.__del__()
        self._waitset.__del__()
