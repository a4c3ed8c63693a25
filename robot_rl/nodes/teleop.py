"""The teleop node: a person drives the robot through COMMAND_RAW, gated by the safety node.

Devices (parameter ``device``): ``keyboard`` (this terminal), ``gamepad`` and ``spacemouse``
(sensor_msgs/Joy on TELEOP_JOY; remap spacenav's ``/spacenav/joy`` onto it), ``leader`` (another
robot's JointState on ``leader_topic``, mirrored), ``joystick`` (a gamepad read directly from
``joystick_path``, /dev/input/js0, with the gamepad's mapping: no joy node needed). Targets are
published at ``control_rate_hz`` even when nothing moves, so the safety node's command watchdog
stays quiet while a person thinks. Keys and buttons also publish EPISODE events for the
recorder, and the e-stop. When stdin is a terminal its keys work with every device.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import numpy as np

from robot_rl.nodes import topics
from robot_rl.robot_config import load_robot
from robot_rl.ros import messages as m
from robot_rl.ros.api import Node
from robot_rl.ros.qos import QOS_DEFAULT, QOS_SENSOR_DATA
from robot_rl.ros.runtime import make_node, run
from robot_rl.teleop import (
    EPISODE_ACTIONS,
    KEY_HELP,
    EpisodeControl,
    JoyTeleop,
    KeyboardTeleop,
    LeaderMirror,
    TargetIntegrator,
    TeleopInput,
)
from robot_rl.teleop.joy import GAMEPAD, PRESETS
from robot_rl.teleop.joystick import JoystickTeleop
from robot_rl.teleop.terminal import TerminalKeys

DEVICES = ("keyboard", "gamepad", "spacemouse", "leader", "joystick")


class TeleopNode:
    def __init__(self, argv: list[str]) -> None:
        self.node: Node = make_node("teleop", argv=argv)
        p = self.node.declare_parameter
        robot = p("robot", "dclaw", "calibration name or YAML path")
        self.device = p("device", "keyboard", f"one of {DEVICES}")
        rate_hz = p("control_rate_hz", 20.0, "command rate (Hz)")
        step_rad = p("key_step_rad", 0.05, "keyboard: target change per key press (rad)")
        speed = p("joint_speed_rad_s", 1.0, "joy: joint speed at full deflection (rad/s)")
        max_lead_rad = p("max_lead_rad", 0.3, "targets stay this close to the measured position")
        self._timeout_s = p("input_timeout_s", 0.5, "joy/leader input older than this is ignored")
        leader_topic = p("leader_topic", "/leader/joint_states", "leader: its JointState topic")
        leader_joints = p("leader_joints", [], "leader: its joint per follower joint (names)")
        leader_scale = p("leader_scale", [], "leader: scale per follower joint")
        leader_offset = p("leader_offset_rad", [], "leader: offset per follower joint (rad)")
        first_episode = p("first_episode", 0, "number of the first recorded episode")
        joystick_path = p("joystick_path", "/dev/input/js0", "joystick: the device file")
        where = f"node {self.node.fully_qualified_name}"
        if self.device not in DEVICES:
            raise ValueError(f"{where}: parameter 'device' {self.device!r}: expected one of "
                             f"{DEVICES}")
        if not rate_hz > 0:
            raise ValueError(f"{where}: parameter 'control_rate_hz' must be > 0, got {rate_hz}")
        cal = load_robot(robot)
        self._names = list(cal.joint_names)
        self._period_s = 1.0 / rate_hz
        self._integrator = TargetIntegrator(cal.lower_rad, cal.upper_rad, max_lead_rad)
        self._keyboard = KeyboardTeleop(self._names, step_rad)
        self._joy = (JoyTeleop(self._names, PRESETS[self.device], speed, self._timeout_s)
                     if self.device in PRESETS else None)
        self._leader = (LeaderMirror(self._names, leader_joints, leader_scale, leader_offset)
                        if self.device == "leader" else None)
        self._joystick = (JoystickTeleop(self._names, GAMEPAD, speed, self._timeout_s,
                                         joystick_path) if self.device == "joystick" else None)
        self._joystick_problem = ""
        self._leader_targets: tuple[float, np.ndarray] | None = None
        self._episodes = EpisodeControl(first_episode)
        self._measured: np.ndarray | None = None
        self._pending: list[TeleopInput] = []
        self._keys = TerminalKeys.open_if_tty()
        self._make_endpoints(leader_topic)
        self.node.create_timer(self._period_s, self._tick)
        log = self.node.get_logger()
        log.info(f"teleop with {self.device} -> {self._raw.topic} at {rate_hz:g} Hz")
        if self._keys is not None:
            log.info(KEY_HELP)
        elif self.device == "keyboard":
            log.warning("device keyboard, but stdin is not a terminal: no keys will be read")

    def _make_endpoints(self, leader_topic: str) -> None:
        node = self.node
        self._raw = node.create_publisher(m.JointState, topics.COMMAND_RAW, QOS_DEFAULT)
        self._episode = node.create_publisher(m.String, topics.EPISODE, QOS_DEFAULT)
        self._estop = node.create_publisher(m.Bool, topics.ESTOP, QOS_DEFAULT)
        self._estop_reset = node.create_publisher(m.Bool, topics.ESTOP_RESET, QOS_DEFAULT)
        node.create_subscription(m.JointState, topics.JOINT_STATES, self._on_joints,
                                 QOS_SENSOR_DATA)
        node.create_subscription(m.String, topics.EPISODE_STATUS, self._on_episode_status,
                                 QOS_DEFAULT)
        if self._joy is not None:
            node.create_subscription(m.Joy, topics.TELEOP_JOY, self._on_joy, QOS_SENSOR_DATA)
        if self._leader is not None:
            node.create_subscription(m.JointState, leader_topic, self._on_leader, QOS_SENSOR_DATA)

    # ---- inputs --------------------------------------------------------------------------------
    def _on_joints(self, msg: m.JointState) -> None:
        if sorted(msg.name) == sorted(self._names) and len(msg.position) == len(msg.name):
            by_name = dict(zip(msg.name, msg.position))
            self._measured = np.array([by_name[n] for n in self._names])

    def _on_episode_status(self, msg: m.String) -> None:
        try:
            event = json.loads(msg.data)
        except json.JSONDecodeError:
            return
        if isinstance(event, dict) and event.get("event") == "reset_done":
            self._integrator.targets_rad = None  # the scene moved: start again from where it is

    def _on_joy(self, msg: m.Joy) -> None:
        assert self._joy is not None
        item = self._joy.handle(msg.axes, msg.buttons, time.monotonic())
        if item is not None:
            self._pending.append(item)

    def _on_leader(self, msg: m.JointState) -> None:
        assert self._leader is not None
        targets, why = self._leader.targets(msg.name, msg.position)
        if targets is None:
            self.node.get_logger().debug(f"leader state ignored: {why}")
            return
        self._leader_targets = (time.monotonic(), targets)

    # ---- control -------------------------------------------------------------------------------
    def _tick(self) -> None:
        now = time.monotonic()
        inputs, self._pending = self._pending, []
        if self._keys is not None:
            for key in self._keys.read():
                item = self._keyboard.handle(key)
                if item is not None:
                    inputs.append(item)
        if self._joy is not None:
            inputs.append(TeleopInput(velocity_rad_s=self._joy.velocity_rad_s(now)))
        if self._joystick is not None:
            inputs += self._poll_joystick(now)
        if self._leader_targets is not None and now - self._leader_targets[0] <= self._timeout_s:
            inputs.append(TeleopInput(targets_rad=self._leader_targets[1]))
        for item in inputs:
            for action in item.actions:
                self._act(action)
        targets = self._integrator.step(inputs, self._measured, self._period_s)
        if targets is not None:
            self._raw.publish(m.joint_state(self._names, targets, stamp_s=self.node.now_s()))

    def _poll_joystick(self, now: float) -> list[TeleopInput]:
        assert self._joystick is not None
        item = self._joystick.poll(now)
        device = self._joystick.device
        assert device is not None
        if device.problem != self._joystick_problem:  # log changes, not every retry
            if device.problem:
                self.node.get_logger().warning(f"joystick: {device.problem}")
            else:
                self.node.get_logger().info(f"joystick: reading {device.path}")
            self._joystick_problem = device.problem
        velocity = TeleopInput(velocity_rad_s=self._joystick.velocity_rad_s(now))
        return [item, velocity] if item is not None else [velocity]

    def _act(self, action: str) -> None:
        log = self.node.get_logger()
        if action == "estop":
            self._estop.publish(m.Bool(data=True))
            log.warning("E-STOP requested")
        elif action == "estop_reset":
            self._estop_reset.publish(m.Bool(data=True))
            log.info("e-stop reset requested")
        elif action in EPISODE_ACTIONS:
            event, note = self._episodes.handle(action)
            if event is not None:
                self._publish_event(event)
            log.info(note)

    def _publish_event(self, event: dict[str, Any]) -> None:
        self._episode.publish(m.String(data=json.dumps(event)))

    def close(self) -> None:
        if self._keys is not None:
            self._keys.close()
        if self._joystick is not None:
            self._joystick.close()


def main(argv: list[str] | None = None) -> int:
    return run(TeleopNode, sys.argv[1:] if argv is None else argv)
