"""A plain rclpy node in the test process: ROS 2's own view of a graph.

What ``ros2 node list``, ``ros2 topic list / echo / info --verbose`` and ``ros2 param`` would show,
through rclpy's graph, subscription and parameter-client APIs (the ``ros2`` CLI is not on PyPI).
It uses none of robot_rl's ROS layer. Tests that use it are skipped where rclpy cannot be imported
(``helpers.backends.needs_rclpy``).
"""

from __future__ import annotations

import array
import importlib
import time
from collections.abc import Callable
from dataclasses import fields, is_dataclass
from typing import Any

import numpy as np


def ros_message_class(type_name: str) -> type:
    """``sensor_msgs/msg/JointState`` -> rclpy's ``sensor_msgs.msg.JointState``."""
    pkg, _, name = type_name.split("/")
    return getattr(importlib.import_module(f"{pkg}.msg"), name)


def qos(kind: str) -> Any:
    """rclpy's own profiles: ``default`` (reliable, depth 10), ``sensor`` (best effort, 5),
    ``latched`` (transient local, depth 1), ``rosout`` (rcl's: transient local, depth 1000)."""
    from rclpy.qos import DurabilityPolicy, QoSProfile, qos_profile_sensor_data
    return {"default": QoSProfile(depth=10), "sensor": qos_profile_sensor_data,
            "latched": QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL),
            "rosout": QoSProfile(depth=1000, durability=DurabilityPolicy.TRANSIENT_LOCAL)}[kind]


class RosPeer:
    """A plain rclpy node with a context and executor of its own."""

    def __init__(self, name: str = "ros2_peer", namespace: str = "") -> None:
        import rclpy
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.node import Node
        from rclpy.signals import SignalHandlerOptions

        self.context = rclpy.Context()
        rclpy.init(args=[], context=self.context, signal_handler_options=SignalHandlerOptions.NO)
        self.node = Node(name, namespace=namespace, context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.got: dict[str, list[Any]] = {}

    def subscribe(self, type_name: str, topic: str, qos_kind: str = "default") -> list[Any]:
        """rclpy messages arriving on ``topic``, appended to the list returned."""
        store = self.got.setdefault(topic, [])
        self.node.create_subscription(ros_message_class(type_name), topic, store.append,
                                      qos(qos_kind))
        return store

    def publisher(self, type_name: str, topic: str, qos_kind: str = "default") -> Any:
        return self.node.create_publisher(ros_message_class(type_name), topic, qos(qos_kind))

    def nodes(self) -> set[str]:
        """Fully qualified names of every node in the graph, as ``ros2 node list``."""
        return {f"{ns.rstrip('/')}/{name}"
                for name, ns in self.node.get_node_names_and_namespaces()}

    def topics(self) -> dict[str, list[str]]:
        """Topic -> type names, as ``ros2 topic list -t``."""
        return dict(self.node.get_topic_names_and_types())

    def wait_until(self, condition: Callable[[], bool], timeout_s: float,
                   every: Callable[[], None] | None = None, period_s: float = 0.05,
                   what: str = "condition") -> float:
        """Spin until ``condition()``; call ``every`` each ``period_s``; the seconds it took."""
        start = time.monotonic()
        next_call = start
        while not condition():
            now = time.monotonic()
            assert now - start < timeout_s, f"rclpy peer: timed out after {timeout_s} s " \
                                            f"waiting for {what}"
            if every is not None and now >= next_call:
                every()
                next_call = now + period_s
            self.executor.spin_once(timeout_sec=0.01)
        return time.monotonic() - start

    def call(self, future: Any, timeout_s: float = 10.0) -> Any:
        """The result of a service call's future, spinning until it is done."""
        self.wait_until(future.done, timeout_s, what="a service reply")
        return future.result()

    def close(self) -> None:
        self.executor.shutdown(timeout_sec=1.0)
        self.node.destroy_node()
        self.context.try_shutdown()


def plain(value: Any) -> Any:
    """An rclpy message, or one of robot_rl's dataclasses, as plain Python (dicts, lists, ints,
    floats, bytes), so the two compare with ``==`` without robot_rl's copying code."""
    if is_dataclass(value):
        return {f.name: plain(getattr(value, f.name)) for f in fields(value)}
    if hasattr(value, "get_fields_and_field_types"):
        types = value.get_fields_and_field_types()
        return {name: _plain_field(getattr(value, name), kind) for name, kind in types.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    return value


def _plain_field(value: Any, kind: str) -> Any:
    if kind in ("octet", "byte"):
        return value[0] if isinstance(value, (bytes, bytearray)) else int(value)
    if kind in ("sequence<uint8>", "sequence<octet>"):
        return bytes(value)
    if isinstance(value, (array.array, np.ndarray)):
        return [v.item() if hasattr(v, "item") else v for v in value]
    return plain(value)
