"""The Node API on rclpy: nodes become ordinary ROS 2 nodes (``ros2 node``, ``ros2 topic``, ...).

Chosen with ``ROBOT_RL_BACKEND=rclpy`` (see ``runtime.backend_name``). Messages stay robot_rl's
dataclasses in node code; they are copied field by field to and from the rclpy classes of the same
ROS type (``sensor_msgs/msg/JointState`` -> ``sensor_msgs.msg.JointState``), guided by rclpy's
``get_fields_and_field_types()``.

What this backend does that plain rclpy would not, and why:
- The robot_rl nodes of a process on one ``ROS_DOMAIN_ID`` share an rclpy context of robot_rl's
  own (``_Context``), made with the first and shut down with the last, so test processes can make
  and drop nodes and change ``ROS_DOMAIN_ID`` between them, and a user's own ``rclpy.init()`` is
  left alone.
  rclpy installs no signal handlers for it: ``Node.spin`` handles SIGINT/SIGTERM as on dds.
- Each node's ``--ros-args`` apply to that node only (``cli_args``), not to the whole process.
- ``spin_once`` runs every callback that is ready after one wait, as the Node API promises (rclpy's
  own ``spin_once`` runs one), on an executor of the node's own.
- A ``-p`` value the Node API reads as its text (an empty value, a YAML mapping such as
  robot_driver_node's JSON ``driver_options``, text that is not YAML: ``runtime.parse_param_value``)
  is handed to rcl quoted, as the string it is on dds: rcl refuses the rule outright, and the node
  died before it declared anything.
- Parameters are typed by their default exactly as on dds (``api.Node.declare_parameter``): an
  integer given for a float parameter is widened, an empty-list default takes its element type
  from the value given. rclpy would refuse the first and type the second as a byte array. They are
  read once at start, so they are declared read-only: ``ros2 param set`` is refused, not ignored.
"""

from __future__ import annotations

import array
import importlib
import os
import threading
import time
from collections.abc import Callable
from dataclasses import fields, is_dataclass
from typing import Any

import yaml

from robot_rl.ros import messages
from robot_rl.ros.api import Node, NodeOptions, ParameterError, ParameterValue
from robot_rl.ros.qos import QosProfile, qos_from_depth
from robot_rl.ros.runtime import parse_param_value

_OURS_BY_ROS_NAME = {messages.ros_type_name(cls): cls for cls in messages.MESSAGE_TYPES}
_BYTE_TYPES = ("byte", "octet")
_UINT8_SEQUENCES = ("sequence<uint8>", "sequence<byte>", "sequence<octet>")
# --ros-args that rcl applies to the whole process (logging), not to one node
_GLOBAL_FLAGS = ("--enable-rosout-logs", "--disable-rosout-logs", "--enable-stdout-logs",
                 "--disable-stdout-logs", "--enable-external-lib-logs",
                 "--disable-external-lib-logs")
_GLOBAL_OPTIONS = ("--log-level", "--log-file-name", "--log-config-file")
# Parameters every rclpy node declares itself; a node may still declare them through the Node API.
_RCLPY_PARAMETERS = ("use_sim_time", "start_type_description_service")
_MAX_ROUNDS = 32  # waits per spin_once, as the dds backend takes up to 32 samples per reader


def ros_class(msg_type: type, import_module: Callable[[str], Any] = importlib.import_module
              ) -> type:
    """The rclpy message class for one of our message classes."""
    pkg, _, name = messages.ros_type_name(msg_type).split("/")
    return getattr(import_module(f"{pkg}.msg"), name)


def _our_class(ros_field_type: str) -> type | None:
    inner = ros_field_type.removeprefix("sequence<").rstrip(">")
    pkg, _, name = inner.rpartition("/")
    return _OURS_BY_ROS_NAME.get(f"{pkg.split('/')[0]}/msg/{name}") if pkg else None


def to_ros(msg: Any, import_module: Callable[[str], Any] = importlib.import_module) -> Any:
    """Copy one of our messages into a fresh instance of the rclpy class."""
    out = ros_class(type(msg), import_module)()
    ros_types = out.get_fields_and_field_types()
    for f in fields(msg):
        value = getattr(msg, f.name)
        ros_type = ros_types[f.name]
        if is_dataclass(value):
            value = to_ros(value, import_module)
        elif ros_type in _UINT8_SEQUENCES:
            value = array.array("B", bytes(value))  # rclpy's fast path: no per-element checks
        elif ros_type in _BYTE_TYPES:
            value = bytes([value])
        elif isinstance(value, list) and value and is_dataclass(value[0]):
            value = [to_ros(item, import_module) for item in value]
        elif isinstance(value, list):
            value = list(value)
        setattr(out, f.name, value)
    return out


def from_ros(ros_msg: Any, msg_type: type) -> Any:
    """Copy an rclpy message into our class ``msg_type``."""
    ros_types = ros_msg.get_fields_and_field_types()
    values: dict[str, Any] = {}
    for f in fields(msg_type):
        value = getattr(ros_msg, f.name)
        ros_type = ros_types[f.name]
        nested = _our_class(ros_type)
        if nested is not None and ros_type.startswith("sequence<"):
            value = [from_ros(item, nested) for item in value]
        elif nested is not None:
            value = from_ros(value, nested)
        elif ros_type in _UINT8_SEQUENCES:
            value = bytes(value)
        elif ros_type in _BYTE_TYPES:
            value = value[0] if isinstance(value, (bytes, bytearray)) else int(value)
        elif hasattr(value, "tolist"):
            value = value.tolist()  # numpy arrays (fixed-size) and array.array (sequences)
        elif isinstance(value, (list, tuple)):
            value = list(value)
        values[f.name] = value
    return msg_type(**values)


def rclpy_qos(profile: QosProfile) -> Any:
    from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
    return QoSProfile(
        depth=profile.depth,
        history=HistoryPolicy.KEEP_LAST if profile.history == "keep_last"
        else HistoryPolicy.KEEP_ALL,
        reliability=ReliabilityPolicy.RELIABLE if profile.reliability == "reliable"
        else ReliabilityPolicy.BEST_EFFORT,
        durability=DurabilityPolicy.TRANSIENT_LOCAL if profile.durability == "transient_local"
        else DurabilityPolicy.VOLATILE,
    )


def global_ros_args(argv: list[str]) -> list[str]:
    """The process-wide part of ``argv``'s ``--ros-args`` (logging), for ``rclpy.init``."""
    out: list[str] = []
    in_ros, i = False, 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--ros-args":
            in_ros = True
        elif arg == "--":
            in_ros = False
        elif in_ros and arg in _GLOBAL_FLAGS:
            out.append(arg)
        elif in_ros and arg in _GLOBAL_OPTIONS and i + 1 < len(argv):
            out += [arg, argv[i + 1]]
            i += 1
        i += 1
    return ["--ros-args", *out] if out else []


def rcl_cli_args(argv: list[str]) -> list[str]:
    """``argv`` with each ``-p name:=value`` inside ``--ros-args`` whose value the Node API takes
    as its text, but rcl cannot parse (empty, a YAML mapping, not YAML), given as a single-quoted
    YAML string: rcl then reads the same string the dds backend does."""
    out = list(argv)
    in_ros = False
    for i, arg in enumerate(out):
        if arg == "--ros-args":
            in_ros = True
        elif arg == "--":
            in_ros = False
        elif in_ros and arg in ("-p", "--param") and i + 1 < len(out):
            name, sep, text = out[i + 1].partition(":=")
            if sep and _rcl_refuses(text):
                out[i + 1] = f"{name}:='{text.replace(chr(39), chr(39) * 2)}'"
    return out


def _rcl_refuses(text: str) -> bool:
    """Whether ``text`` is a value the Node API reads as a string that plain YAML does not give
    (rcl parses ``-p`` values as YAML scalars or lists: anything else fails the whole node)."""
    value = parse_param_value(text)
    if not isinstance(value, str):
        return False
    try:
        return yaml.safe_load(text) != value
    except yaml.YAMLError:
        return True


def loopback_discovery_env() -> None:
    """``ROBOT_RL_DDS_LOOPBACK=1`` (robot_rl's loopback switch) means to rcl what it means to the
    dds backend: ``ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST``, unless a ROS variable says otherwise.
    One setting then keeps both stacks on this host and lets them find each other."""
    ros_set = any(os.environ.get(v) for v in ("ROS_AUTOMATIC_DISCOVERY_RANGE",
                                                "ROS_LOCALHOST_ONLY", "ROS_STATIC_PEERS"))
    if os.environ.get("ROBOT_RL_DDS_LOOPBACK") == "1" and not ros_set:
        os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"


class _Context:
    """The rclpy contexts of this process's robot_rl nodes: one per ROS_DOMAIN_ID (rcl fixes a
    context's domain when it is made), each shut down with its last node. A node made after
    ROS_DOMAIN_ID changed joins the new domain even while a node of the old one lives on, as on
    the dds backend (a participant per domain)."""

    _lock = threading.Lock()
    _contexts: dict[int, tuple[Any, int]] = {}  # domain id -> (context, nodes using it)

    @classmethod
    def acquire(cls, argv: list[str]) -> tuple[int, Any]:
        import rclpy
        from rclpy.signals import SignalHandlerOptions
        domain_id = domain_id_from_env()
        with cls._lock:
            context, users = cls._contexts.get(domain_id, (None, 0))
            if context is None:
                loopback_discovery_env()
                context = rclpy.Context()
                rclpy.init(args=global_ros_args(argv), context=context, domain_id=domain_id,
                           signal_handler_options=SignalHandlerOptions.NO)
            cls._contexts[domain_id] = (context, users + 1)
            return domain_id, context

    @classmethod
    def release(cls, domain_id: int) -> None:
        with cls._lock:
            context, users = cls._contexts[domain_id]
            if users > 1:
                cls._contexts[domain_id] = (context, users - 1)
            else:
                del cls._contexts[domain_id]
                context.try_shutdown()


def domain_id_from_env() -> int:
    """``ROS_DOMAIN_ID`` (0 when unset), checked as the dds backend checks it."""
    raw = os.environ.get("ROS_DOMAIN_ID", "").strip() or "0"
    try:
        domain_id = int(raw)
    except ValueError:
        raise ValueError(f"ROS_DOMAIN_ID: expected an integer 0-232, got {raw!r}") from None
    if not 0 <= domain_id <= 232:
        raise ValueError(f"ROS_DOMAIN_ID: expected an integer 0-232, got {domain_id}")
    return domain_id


class RclpyPublisher:
    def __init__(self, publisher: Any, msg_type: type, topic: str) -> None:
        self._publisher = publisher
        self._msg_type = msg_type
        self.topic = topic

    def publish(self, msg: Any) -> None:
        """Thread-safe (rclpy's publish is): a training thread may publish while callbacks run."""
        if not isinstance(msg, self._msg_type):
            raise TypeError(f"publisher on {self.topic}: expected {self._msg_type.__name__}, "
                            f"got {type(msg).__name__}")
        self._publisher.publish(to_ros(msg))

    def matched_count(self) -> int:
        """Subscriptions matched with this publisher (QoS-compatible ones only)."""
        return int(self._publisher.get_subscription_count())

    def wait_for_all_acked(self, timeout_s: float) -> bool:
        """Reliable: True once every matched subscription has every message published so far."""
        from rclpy.duration import Duration
        return bool(self._publisher.wait_for_all_acked(Duration(nanoseconds=int(timeout_s * 1e9))))


class RclpySubscription:
    def __init__(self, subscription: Any, topic: str) -> None:
        self._subscription = subscription
        self.topic = topic

    def matched_count(self) -> int:
        """Publishers matched with this subscription (QoS-compatible ones only)."""
        return int(self._subscription.get_publisher_count())


class RclpyNode(Node):
    # spin_once through rclpy's one-wait generator (Executor._wait_for_ready_callbacks, there from
    # Humble to Jazzy at least); False, or an rclpy without it: through its public spin_once
    private_wait = True

    def __init__(self, name: str, namespace: str | None, argv: list[str]) -> None:
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.node import Node as _RclpyNode

        self._domain_id, self._context = _Context.acquire(argv)
        try:
            self._node = _RclpyNode(name, namespace=namespace or "", context=self._context,
                                    cli_args=rcl_cli_args(argv),
                                    use_global_arguments=False)
        except Exception:
            _Context.release(self._domain_id)
            raise
        # rcl applied __node/__ns remaps: take name and namespace from it. The overrides rcl
        # parsed (-p, --params-file) feed api.Node's typing rules in declare_parameter (rclpy
        # keeps them in Node._parameter_overrides, from Foxy to Rolling; its own declare reads
        # them there too).
        overrides = {key: _plain(p.value) for key, p in self._node._parameter_overrides.items()}
        super().__init__(self._node.get_name(), self._node.get_namespace(),
                         NodeOptions(parameter_overrides=overrides))
        self._logger = self._node.get_logger()  # type: ignore[assignment]
        self._executor = SingleThreadedExecutor(context=self._context)
        self._executor.add_node(self._node)
        self._callbacks_run = 0  # for _spin_public
        self._destroyed = False

    def resolve(self, topic: str) -> str:
        return self._node.resolve_topic_name(topic)

    def backend_description(self) -> str:
        """What the node's first log line says about its backend."""
        from rclpy.utilities import get_rmw_implementation_identifier
        ranges = {v: os.environ[v] for v in ("ROS_AUTOMATIC_DISCOVERY_RANGE", "ROS_STATIC_PEERS",
                                             "ROS_LOCALHOST_ONLY") if os.environ.get(v)}
        discovery = ", ".join(f"{k}={v}" for k, v in ranges.items()) or "rcl's defaults"
        return (f"rclpy ({get_rmw_implementation_identifier()}, ROS_DOMAIN_ID "
                f"{self._context.get_domain_id()}, discovery {discovery})")

    def declare_parameter(self, name: str, default: ParameterValue,
                          description: str = "") -> ParameterValue:
        """Typed by ``default`` as on dds (``api.Node``), then declared read-only in rclpy."""
        from rcl_interfaces.msg import ParameterDescriptor
        from rclpy.parameter import Parameter

        if name in _RCLPY_PARAMETERS and self._node.has_parameter(name):
            self.options.parameter_overrides[name] = _plain(self._node.get_parameter(name).value)
            return super().declare_parameter(name, default, description)
        value = super().declare_parameter(name, default, description)
        kind = {"bool": Parameter.Type.BOOL, "int": Parameter.Type.INTEGER,
                "float": Parameter.Type.DOUBLE, "str": Parameter.Type.STRING,
                "list[float]": Parameter.Type.DOUBLE_ARRAY,
                "list[str]": Parameter.Type.STRING_ARRAY}[self._parameter_types[name]]
        descriptor = ParameterDescriptor(description=description, read_only=True,
                                         type=kind.value)
        try:
            if value == []:  # rclpy would type an empty list as a byte array: declare the
                # type, give it the value, then make it read-only (a read-only one takes none)
                self._node.declare_parameter(name, kind, ParameterDescriptor(
                    description=description), ignore_override=True)
                self._node.set_parameters([Parameter(name, kind, [])])
                self._node.set_descriptor(name, descriptor)
            else:
                self._node.declare_parameter(name, value, descriptor, ignore_override=True)
        except Exception as exc:  # rclpy's ParameterAlreadyDeclaredException and friends
            raise ParameterError(f"node {self.fully_qualified_name}: parameter {name!r}: "
                                 f"{exc}") from exc
        return value

    @property
    def uses_sim_time(self) -> bool:
        """rclpy's own ``use_sim_time`` (every rclpy node declares it, ``-p use_sim_time:=true``
        sets it, and rclpy's time source follows it), whether or not the node declared it
        through the Node API."""
        return bool(self._node.get_parameter("use_sim_time").value)

    def now_s(self) -> float:
        """ROS time: the system clock, or ``/clock`` when ``use_sim_time`` is true (rclpy's)."""
        return self._node.get_clock().now().nanoseconds * 1e-9

    def steady_s(self) -> float:
        """Never goes back: ``time.monotonic()``, or ROS time while simulated time is active."""
        clock = self._node.get_clock()
        if clock.ros_time_is_active:
            return clock.now().nanoseconds * 1e-9
        return time.monotonic()

    def create_publisher(self, msg_type: type, topic: str,
                         qos: QosProfile | int | None = None) -> RclpyPublisher:
        publisher = self._node.create_publisher(
            ros_class(msg_type), topic, rclpy_qos(qos_from_depth(qos)))
        return RclpyPublisher(publisher, msg_type, publisher.topic_name)

    def create_subscription(self, msg_type: type, topic: str, callback: Callable[[Any], None],
                            qos: QosProfile | int | None = None) -> RclpySubscription:
        subscription = self._node.create_subscription(
            ros_class(msg_type), topic,
            self._counted(lambda ros_msg: callback(from_ros(ros_msg, msg_type))),
            rclpy_qos(qos_from_depth(qos)))
        return RclpySubscription(subscription, subscription.topic_name)

    def create_timer(self, period_s: float, callback: Callable[[], None]) -> Any:
        """An rclpy timer on the node's clock (ROS time: simulated under ``use_sim_time``)."""
        if not period_s > 0.0:
            raise ValueError(f"timer period_s must be > 0, got {period_s!r}")
        return self._node.create_timer(period_s, self._counted(callback))

    def create_wall_timer(self, period_s: float, callback: Callable[[], None]) -> Any:
        """An rclpy timer on the steady clock, whatever ``use_sim_time`` says (rclcpp's
        ``create_wall_timer``)."""
        from rclpy.clock import Clock, ClockType
        if not period_s > 0.0:
            raise ValueError(f"timer period_s must be > 0, got {period_s!r}")
        return self._node.create_timer(period_s, self._counted(callback),
                                       clock=Clock(clock_type=ClockType.STEADY_TIME))

    def spin_once(self, timeout_s: float = 0.0) -> None:
        """Wait up to ``timeout_s`` for work, then run every callback that is ready."""
        if self._destroyed:
            raise RuntimeError(f"node {self.fully_qualified_name}: spin after destroy()")
        from rclpy.executors import ExternalShutdownException, ShutdownException
        ready = getattr(self._executor, "_wait_for_ready_callbacks", None) \
            if self.private_wait else None
        try:
            if ready is None:  # an rclpy without it: the same through the public API
                self._spin_public(timeout_s)
                return
            # rclpy's spin_once runs one handler of one wait, and a subscription's handler takes
            # one message. Here: every handler of a wait, then, while subscriptions had messages
            # (a queue may hold more), waits that do not block, at most _MAX_ROUNDS in all (the
            # dds backend's take batch: a publisher faster than the node cannot keep spin_once
            # from returning). A round of timers alone needs no second look.
            timeout = timeout_s
            for _ in range(_MAX_ROUNDS):
                if not self._run_ready(ready, timeout):
                    break
                timeout = 0.0
        except (ShutdownException, ExternalShutdownException):
            self._shutdown.set()

    @staticmethod
    def _run_ready(ready: Callable[..., Any], timeout_s: float) -> bool:
        """One wait of rclpy's executor, then every handler it found; whether a subscription's
        was among them. Each handler must run once it is made: rclpy keeps its entity out of
        later waits until it has."""
        from rclpy.executors import TimeoutException
        from rclpy.subscription import Subscription
        took_messages = False
        try:
            for handler, entity, _node in ready(timeout_sec=timeout_s):
                handler()
                took_messages = took_messages or isinstance(entity, Subscription)
                if handler.exception() is not None:
                    raise handler.exception()
        except TimeoutException:
            pass
        return took_messages

    def _spin_public(self, timeout_s: float) -> None:
        """The same with rclpy's public API: spin_once runs one handler, and the call after a
        wait's last handler only ends that wait's batch, so spin again (without waiting) until
        two calls in a row ran none of this node's callbacks."""
        ran = self._callbacks_run
        self._executor.spin_once(timeout_sec=timeout_s)
        idle = 0 if self._callbacks_run != ran else 1
        for _ in range(_MAX_ROUNDS * 8):
            if idle >= 2:
                break
            ran = self._callbacks_run
            self._executor.spin_once(timeout_sec=0.0)
            idle = 0 if self._callbacks_run != ran else idle + 1

    def _counted(self, callback: Callable[..., None]) -> Callable[..., None]:
        def run(*args: Any) -> None:
            self._callbacks_run += 1
            callback(*args)
        return run

    def _wake(self) -> None:
        if not self._destroyed:
            self._executor.wake()

    def destroy(self) -> None:
        if self._destroyed:
            return
        self._shutdown.set()
        self._destroyed = True
        self._executor.shutdown(timeout_sec=1.0)
        self._node.destroy_node()
        _Context.release(self._domain_id)


def _plain(value: Any) -> Any:
    """rclpy parameter values as the Node API's: lists, not array.array or tuples."""
    if isinstance(value, (array.array, tuple)):
        return list(value)
    return value
