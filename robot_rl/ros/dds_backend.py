"""The Node API on Eclipse Cyclone DDS, speaking ROS 2's wire conventions (rmw_cyclonedds).

Topic ``rt/<resolved name without the leading slash>``, type ``<pkg>::msg::dds_::<Name>_``,
plain CDR (XCDR1) little endian, rclpy's QoS. A ROS 2 machine on the same domain sees these
topics. One participant per process and domain, shared by the nodes of the process; each node
has one WaitSet that its spinning thread waits on, so its callbacks run one at a time. The
participant publishes ``ros_discovery_info`` (robot_rl.ros.discovery), so ``ros2 node list`` on a
ROS 2 machine lists our nodes too; every endpoint carries its type hash (``typehash=RIHS01_...;``
in USER_DATA, as Iron and later do), and each node's log lines also go to ``/rosout``.

Discovery follows ROS 2's own variables (``discovery_from_env``): ``ROS_AUTOMATIC_DISCOVERY_RANGE``,
``ROS_STATIC_PEERS`` and ``ROS_LOCALHOST_ONLY`` configure this backend as they configure rcl, so one
setting serves both stacks. What cannot be had here: parameter services (``ros2 param`` on a dds
node), see docs/ros2.md.
"""

from __future__ import annotations

import importlib.metadata
import ipaddress
import math
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
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
from cyclonedds.domain import Domain, DomainParticipant
from cyclonedds.pub import DataWriter
from cyclonedds.sub import DataReader, InvalidSample
from cyclonedds.topic import Topic
from cyclonedds.util import duration

from robot_rl.ros import messages
from robot_rl.ros.api import (
    CLOCK_TOPIC,
    LOG_LEVELS,
    QOS_CLOCK_READER,
    USE_SIM_TIME,
    Logger,
    Node,
    NodeOptions,
    ParameterValue,
    SimClock,
    Timer,
    TimerQueue,
)
from robot_rl.ros.discovery import QOS as DISCOVERY_QOS
from robot_rl.ros.discovery import DiscoveryInfo
from robot_rl.ros.qos import QosProfile, qos_from_depth

_TAKE_BATCH = 32
_MAX_TAKE_PASSES = 8  # a wake-up's takes end even under a stream that never pauses

_participants: dict[int, DomainParticipant] = {}
_domains: dict[int, Domain] = {}  # the configured domains: a participant lives only while they do
_discovery: dict[int, DiscoveryInfo] = {}
_participants_lock = threading.Lock()


# --- discovery: ROS 2's variables, read as rcl reads them ---------------------------------
DISCOVERY_RANGES = ("SUBNET", "LOCALHOST", "OFF", "SYSTEM_DEFAULT")
LOOPBACK_ENV = "ROBOT_RL_DDS_LOOPBACK"


@dataclass(frozen=True)
class Discovery:
    """How this process finds other DDS participants (ROS 2's discovery options)."""

    range: str = "SUBNET"
    static_peers: tuple[str, ...] = ()
    source: str = "default"  # the variable that decided the range, for the backend's log line


def discovery_from_env(env: Mapping[str, str] | None = None) -> Discovery:
    """The discovery options rcl (Jazzy) would take from ``env``, so both stacks agree.

    ``ROS_LOCALHOST_ONLY=1`` (Humble's; Jazzy still honours it) means LOCALHOST and ignores static
    peers; otherwise ``ROS_AUTOMATIC_DISCOVERY_RANGE`` (default SUBNET) and ``ROS_STATIC_PEERS``
    (``;``-separated). ``ROBOT_RL_DDS_LOOPBACK=1``, robot_rl's older switch, means LOCALHOST when
    no ROS variable sets the range. A range rcl does not know is an error here (rcl warns and
    assumes LOCALHOST).
    """
    env = os.environ if env is None else env
    if env.get("ROS_LOCALHOST_ONLY", "").strip() == "1":
        return Discovery("LOCALHOST", (), "ROS_LOCALHOST_ONLY")
    peers = tuple(p.strip() for p in env.get("ROS_STATIC_PEERS", "").split(";") if p.strip())
    raw = env.get("ROS_AUTOMATIC_DISCOVERY_RANGE", "").strip()
    if raw:
        if raw not in DISCOVERY_RANGES:
            raise ValueError(f"ROS_AUTOMATIC_DISCOVERY_RANGE={raw!r}: expected one of "
                             f"{', '.join(DISCOVERY_RANGES)}")
        return Discovery(raw, peers, "ROS_AUTOMATIC_DISCOVERY_RANGE")
    if env.get(LOOPBACK_ENV) == "1":
        return Discovery("LOCALHOST", peers, LOOPBACK_ENV)
    return Discovery("SUBNET", peers)


def _is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return address == "localhost"


def cyclone_config(discovery: Discovery, pid: int | None = None) -> str | None:
    """The Cyclone XML that gives ``discovery`` (rmw_cyclonedds' mapping), or None for Cyclone's
    own defaults (and ``CYCLONEDDS_URI``).

    LOCALHOST: no multicast, unicast discovery to 127.0.0.1 and the static peers, and traffic on
    the loopback interface unless a static peer lies elsewhere (with no peers: the loopback
    configuration of PLATFORM.md, which works with Cyclone 0.10 and 11). OFF: no multicast, no peers, and a
    discovery tag of this process's own, so nothing outside it matches. SUBNET: multicast, plus
    unicast to the static peers if any.
    """
    if discovery.range == "SYSTEM_DEFAULT" or discovery.range == "SUBNET" \
            and not discovery.static_peers:
        return None
    if discovery.range == "OFF":
        tag = f"ros_discovery_off_{os.getpid() if pid is None else pid}"
        return ('<CycloneDDS xmlns="https://cdds.io/config"><Domain Id="any">'
                "<General><AllowMulticast>false</AllowMulticast></General>"
                f"<Discovery><ParticipantIndex>none</ParticipantIndex><Tag>{tag}</Tag>"
                "</Discovery></Domain></CycloneDDS>")
    peers = list(discovery.static_peers)
    general = ""
    if discovery.range == "LOCALHOST":
        peers = ["127.0.0.1", *[p for p in peers if p != "127.0.0.1"]]
        interfaces = ('<Interfaces><NetworkInterface name="lo"/></Interfaces>'
                      if all(_is_loopback(p) for p in peers) else "")
        general = f"<General>{interfaces}<AllowMulticast>false</AllowMulticast></General>"
    listed = "".join(f'<Peer address="{p}"/>' for p in peers)
    return ('<CycloneDDS xmlns="https://cdds.io/config"><Domain Id="any">'
            f"{general}<Discovery><ParticipantIndex>auto</ParticipantIndex>"
            "<MaxAutoParticipantIndex>32</MaxAutoParticipantIndex>"
            f"<Peers>{listed}</Peers></Discovery></Domain></CycloneDDS>")


def _domain_config(discovery: Discovery) -> str | None:
    """Our fragment first, then the user's ``CYCLONEDDS_URI`` (which may refine it), as
    rmw_cyclonedds combines them."""
    ours = cyclone_config(discovery)
    if ours is None:
        return None
    user = os.environ.get("CYCLONEDDS_URI", "").strip()
    return f"{ours},{user}" if user else ours


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
            # Cyclone reads its configuration when the domain is created, not later.
            config = _domain_config(discovery_from_env())
            if config is not None:
                _domains[domain_id] = Domain(domain_id, config)
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


def dds_qos(profile: QosProfile, msg_type: type | None = None) -> Qos:
    """rclpy's QoS profile as Cyclone policies, and XCDR1 so Cyclone 0.10 and rosbags read it.

    With ``msg_type``, USER_DATA carries its type hash (``typehash=RIHS01_...;``) as rmw does from
    Iron on; Humble ignores it.
    """
    reliability = (Policy.Reliability.Reliable(max_blocking_time=duration(milliseconds=100))
                   if profile.reliability == "reliable" else Policy.Reliability.BestEffort)
    durability = (Policy.Durability.TransientLocal if profile.durability == "transient_local"
                  else Policy.Durability.Volatile)
    history = (Policy.History.KeepLast(depth=profile.depth) if profile.history == "keep_last"
               else Policy.History.KeepAll)
    policies = [reliability, durability, history,
                Policy.DataRepresentation(use_cdrv0_representation=True)]
    if profile.durability == "transient_local":
        # what a late reader gets: Cyclone keeps DURABILITY_SERVICE's history for it (default
        # keep last 1), so it is set to the profile's own, as rmw_cyclonedds does
        policies.append(Policy.DurabilityService(cleanup_delay=0, history=history,
                                                 max_samples=-1, max_instances=-1,
                                                 max_samples_per_instance=-1))
    if msg_type is not None:
        policies.append(Policy.Userdata(
            f"typehash={messages.type_hash(msg_type)};".encode("ascii")))
    return Qos(*policies)


# --- /rosout ------------------------------------------------------------------------------
ROSOUT_TOPIC = "/rosout"
# rcl's rosout profile: reliable, transient local, keep last 1000, lifespan 10 s
ROSOUT_QOS = QosProfile(depth=1000, durability="transient_local")
ROSOUT_LIFESPAN_S = 10.0


class RosoutLogger(Logger):
    """The Node API's logger (stderr lines), also publishing each line it prints on /rosout as
    rcl_interfaces/msg/Log, so ``ros2 topic echo /rosout`` and rqt_console see dds nodes' logs."""

    def __init__(self, name: str, level: str, writer: DataWriter) -> None:
        super().__init__(name, level)
        self._writer = writer

    def _log(self, level: str, msg: str) -> None:
        super()._log(level, msg)
        severity = LOG_LEVELS[level.lower()]
        if severity >= self._threshold:
            self._writer.write(messages.Log(stamp=messages.now_stamp(), level=severity,
                                            name=self.name, msg=msg))


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

    def wait_for_all_acked(self, timeout_s: float) -> bool:
        """Reliable: True once every matched reader has every sample written so far."""
        return bool(self._writer.wait_for_acks(duration(seconds=timeout_s)))

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
                 options: NodeOptions | None = None, domain_id: int | None = None,
                 rosout: bool = True) -> None:
        super().__init__(name, namespace, options)
        self._domain_id = domain_id_from_env() if domain_id is None else domain_id
        self._participant = participant(self._domain_id)
        self._discovery = discovery_info(self._domain_id)
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
        if rosout:
            self._logger = RosoutLogger(self._logger.name, self.options.log_level,
                                        self._rosout_writer())

    def _rosout_writer(self) -> DataWriter:
        resolved = self.resolve(ROSOUT_TOPIC)
        qos = dds_qos(ROSOUT_QOS, messages.Log) + Qos(
            Policy.Lifespan(duration(seconds=ROSOUT_LIFESPAN_S)))
        writer = DataWriter(self._participant, self._topic(messages.Log, resolved), qos=qos)
        self._publishers.append(DdsPublisher(writer, messages.Log, resolved))
        self._discovery.add_entity(id(self), writer.guid, is_reader=False)
        return writer

    def backend_description(self) -> str:
        """What the node's first log line says about its backend."""
        found = discovery_from_env()
        peers = f", static peers {';'.join(found.static_peers)}" if found.static_peers else ""
        return (f"dds (Cyclone DDS {importlib.metadata.version('cyclonedds')}, ROS_DOMAIN_ID "
                f"{self._domain_id}, discovery {found.range} from {found.source}{peers})")

    def _topic(self, msg_type: type, resolved: str) -> Topic:
        key = f"{resolved}|{msg_type.__idl_typename__}"
        if key not in self._topics:
            self._topics[key] = Topic(self._participant, dds_topic_name(resolved), msg_type)
        return self._topics[key]

    def create_publisher(self, msg_type: type, topic: str,
                         qos: QosProfile | int | None = None) -> DdsPublisher:
        resolved = self.resolve(topic)
        writer = DataWriter(self._participant, self._topic(msg_type, resolved),
                            qos=dds_qos(qos_from_depth(qos), msg_type))
        publisher = DdsPublisher(writer, msg_type, resolved)
        self._publishers.append(publisher)
        self._discovery.add_entity(id(self), writer.guid, is_reader=False)
        return publisher

    def create_subscription(self, msg_type: type, topic: str, callback: Callable[[Any], None],
                            qos: QosProfile | int | None = None) -> DdsSubscription:
        resolved = self.resolve(topic)
        reader = DataReader(self._participant, self._topic(msg_type, resolved),
                            qos=dds_qos(qos_from_depth(qos), msg_type))
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
        taken = self._take_messages()
        if self._take_clock():  # after the messages: see _take_clock
            self._run_due_timers()
        for subscription, msgs in taken:
            for msg in msgs:
                subscription.callback(msg)
        self._run_due_timers()

    def _take_messages(self) -> list[tuple[DdsSubscription, list[Any]]]:
        """Every subscription's messages, in the order the subscriptions were created, taken
        pass after pass until one takes nothing (at most ``_MAX_TAKE_PASSES``).

        One pass is not atomic: messages keep arriving while it runs. A message that arrived
        after its reader was taken but before a later reader's message, published after it, was
        taken would wait for the next wake-up and be handled after that message: the lockstep
        twin would see the supervisor's COMMAND before the COMMAND_RAW it gates, and wait out a
        grace period. Taking again until a pass is empty brings in every message that arrived
        before the last one taken, so a wake-up's callbacks keep subscription order."""
        subscriptions = list(self._subscriptions)
        taken: list[list[Any]] = [[] for _ in subscriptions]
        for _ in range(_MAX_TAKE_PASSES):
            got = False
            for msgs, subscription in zip(taken, subscriptions):
                new = subscription.take()
                msgs.extend(new)
                got = got or bool(new)
            if not got:
                break
        return list(zip(subscriptions, taken))

    # ---- clocks and timers ------------------------------------------------------------------
    def declare_parameter(self, name: str, default: ParameterValue,
                          description: str = "") -> ParameterValue:
        """As ``Node.declare_parameter``; ``use_sim_time`` is every node's own (declared when the
        node starts, as rclpy does), so declaring it again returns its value."""
        if name == USE_SIM_TIME and name in self._parameters:
            return self._parameters[name]
        return super().declare_parameter(name, default, description)

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
