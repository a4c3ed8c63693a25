"""The publishers of a robot's state, shared by everything that stands for the robot (drivers, twin).

One home for which message type and QoS each state topic has, so a driver and the twin publish
exactly alike and the safety node, learner and recorder match them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from robot_rl.nodes import topics
from robot_rl.ros import messages as m
from robot_rl.ros.api import Node
from robot_rl.ros.qos import QOS_SENSOR_DATA


@dataclass(frozen=True)
class RobotStatePublishers:
    joints: Any          # sensor_msgs/JointState: rad, rad/s, current A
    temperature: Any     # std_msgs/Float32MultiArray: deg C per joint
    hardware_error: Any  # std_msgs/UInt8MultiArray: error bits per joint

    @classmethod
    def create(cls, node: Node) -> RobotStatePublishers:
        return cls(
            joints=node.create_publisher(m.JointState, topics.JOINT_STATES, QOS_SENSOR_DATA),
            temperature=node.create_publisher(m.Float32MultiArray, topics.TEMPERATURE,
                                              QOS_SENSOR_DATA),
            hardware_error=node.create_publisher(m.UInt8MultiArray, topics.HARDWARE_ERROR,
                                                 QOS_SENSOR_DATA))
