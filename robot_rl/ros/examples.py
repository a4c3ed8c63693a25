"""Demo nodes like rclpy's demo_nodes_py talker/listener, used by the launch runner's tests.

Run them with ``robot-rl launch`` (executables ``demo_talker``, ``demo_listener``) or directly:
``python -c 'import robot_rl.ros.examples as e; e.talker_main()' --ros-args -r chatter:=chat``.
"""

from __future__ import annotations

import sys
from typing import Any

from robot_rl.ros.api import Node
from robot_rl.ros.messages import String
from robot_rl.ros.qos import QOS_DEFAULT
from robot_rl.ros.runtime import make_node, run


class Talker:
    """Publishes ``'<message>: <n>'`` on ``chatter`` every ``period_s``; exits after
    ``max_count`` messages when that is positive."""

    def __init__(self, argv: list[str]) -> None:
        self.node: Node = make_node("talker", argv=argv)
        self._period_s = self.node.declare_parameter("period_s", 0.1, "publish period (s)")
        self._max_count = self.node.declare_parameter("max_count", 0, "0: publish forever")
        self._message = self.node.declare_parameter("message", "Hello World", "text to send")
        self._publisher = self.node.create_publisher(String, "chatter", QOS_DEFAULT)
        self._count = 0
        self.node.create_timer(self._period_s, self._tick)
        self.node.get_logger().info(f"publishing on {self._publisher.topic}")

    def _tick(self) -> None:
        self._count += 1
        text = f"{self._message}: {self._count}"
        self.node.get_logger().info(f"Publishing: '{text}'")
        self._publisher.publish(String(data=text))
        if 0 < self._max_count <= self._count:
            raise SystemExit(0)


class Listener:
    """Logs every String received on ``chatter``."""

    def __init__(self, argv: list[str]) -> None:
        self.node: Node = make_node("listener", argv=argv)
        sub = self.node.create_subscription(String, "chatter", self._on_message, QOS_DEFAULT)
        self.node.get_logger().info(f"listening on {sub.topic}")

    def _on_message(self, msg: Any) -> None:
        self.node.get_logger().info(f"I heard: [{msg.data}]")


def talker_main(argv: list[str] | None = None) -> int:
    return run(Talker, sys.argv[1:] if argv is None else argv)


def listener_main(argv: list[str] | None = None) -> int:
    return run(Listener, sys.argv[1:] if argv is None else argv)
