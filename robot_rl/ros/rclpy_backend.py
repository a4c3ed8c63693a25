"""The Node API on rclpy, used where ROS 2 is sourced: nodes become ordinary ROS 2 nodes.

Messages stay robot_rl's dataclasses in node code; they are copied field by field to and from
the rclpy classes of the same ROS type (``sensor_msgs/msg/JointState`` ->
``sensor_msgs.msg.JointState``), guided by rclpy's ``get_fields_and_field_types()``.
rclpy handles ``--ros-args`` (remaps, parameters, params files) itself.
"""

from __future__ import annotations

import array
import importlib
from collections.abc import Callable
from dataclasses import fields, is_dataclass
from typing import Any

from robot_rl.ros import messages
from robot_rl.ros.api import Node, NodeOptions, ParameterError, ParameterValue
from robot_rl.ros.qos import QosProfile, qos_from_depth

_OURS_BY_ROS_NAME = {messages.ros_type_name(cls): cls for cls in messages.MESSAGE_TYPES}
_BYTE_TYPES = ("byte", "octet")
_UINT8_SEQUENCES = ("sequence<uint8>", "sequence<byte>", "sequence<octet>")


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


class RclpyPublisher:
    def __init__(self, publisher: Any, topic: str) -> None:
        self._publisher = publisher
        self.topic = topic

    def publish(self, msg: Any) -> None:
        self._publisher.publish(to_ros(msg))


class RclpySubscription:
    def __init__(self, subscription: Any, topic: str) -> None:
        self._subscription = subscription
        self.topic = topic


class RclpyNode(Node):
    def __init__(self, name: str, namespace: str | None, argv: list[str]) -> None:
        import rclpy
        from rclpy.node import Node as _RclpyNode

        if not rclpy.ok():
            rclpy.init(args=argv)
        self._rclpy = rclpy
        self._node = _RclpyNode(name, namespace=namespace or "")
        # rcl applied __node/__ns remaps: take name and namespace from it.
        super().__init__(self._node.get_name(), self._node.get_namespace(), NodeOptions())
        self._logger = self._node.get_logger()  # type: ignore[assignment]

    def resolve(self, topic: str) -> str:
        return self._node.resolve_topic_name(topic)

    def declare_parameter(self, name: str, default: ParameterValue,
                          description: str = "") -> ParameterValue:
        from rcl_interfaces.msg import ParameterDescriptor
        try:
            param = self._node.declare_parameter(
                name, default, ParameterDescriptor(description=description))
        except Exception as exc:  # rclpy's InvalidParameterTypeException and friends
            raise ParameterError(f"node {self.fully_qualified_name}: parameter {name!r}: "
                                 f"{exc}") from exc
        return param.value

    def get_parameter(self, name: str) -> ParameterValue:
        if not self._node.has_parameter(name):
            raise ParameterError(f"node {self.fully_qualified_name}: parameter {name!r} is not "
                                 "declared")
        return self._node.get_parameter(name).value

    def now_s(self) -> float:
        return self._node.get_clock().now().nanoseconds * 1e-9

    def create_publisher(self, msg_type: type, topic: str,
                         qos: QosProfile | int | None = None) -> RclpyPublisher:
        publisher = self._node.create_publisher(
            ros_class(msg_type), topic, rclpy_qos(qos_from_depth(qos)))
        return RclpyPublisher(publisher, publisher.topic_name)

    def create_subscription(self, msg_type: type, topic: str, callback: Callable[[Any], None],
                            qos: QosProfile | int | None = None) -> RclpySubscription:
        subscription = self._node.create_subscription(
            ros_class(msg_type), topic, lambda ros_msg: callback(from_ros(ros_msg, msg_type)),
            rclpy_qos(qos_from_depth(qos)))
        return RclpySubscription(subscription, subscription.topic_name)

    def create_timer(self, period_s: float, callback: Callable[[], None]) -> Any:
        return self._node.create_timer(period_s, callback)

    def create_wall_timer(self, period_s: float, callback: Callable[[], None]) -> Any:
        from rclpy.clock import Clock, ClockType
        return self._node.create_timer(period_s, callback,
                                       clock=Clock(clock_type=ClockType.STEADY_TIME))

    def spin_once(self, timeout_s: float = 0.0) -> None:
        self._rclpy.spin_once(self._node, timeout_sec=timeout_s)

    def destroy(self) -> None:
        self._shutdown.set()
        self._node.destroy_node()
        self._rclpy.try_shutdown()
