"""The teleop node: a person drives the robot through COMMAND_RAW, gated by the safety node.

Devices (parameter ``device``): ``keyboard`` (this terminal), ``gamepad`` and ``spacemouse``
(sensor_msgs/Joy on TELEOP_JOY; remap spacenav's ``/spacenav/joy`` onto it), ``leader`` (another
robot's JointState on ``leader_topic``, mirrored), ``joystick`` (a gamepad read directly from
``joystick_path``, /dev/input/js0, with the gamepad's mapping: no joy node needed). Targets are
published at ``control_rate_hz`` even when nothing moves, so the safety node's command watchdog
stays quiet while a person thinks. Keys and buttons also publish EPISODE events for the
recorder, and the e-stop. When stdin is a terminal its keys work with every device.

``role``: ``record`` (the default: the operator drives the robot on COMMAND_RAW, as above) or
``intervene`` (online learning: the learner drives it and runs the episodes; the operator takes
over with one input per device: the key ``t`` (toggle) on the keyboard and the leader arm, the right
trigger held on a gamepad, the left button (toggle) on a SpaceMouse). In that role the node
publishes TAKEOVER (Bool, every tick) and, while in control, its targets on COMMAND_OPERATOR,
never COMMAND_RAW: the learner forwards them through the safety node and records them as
interventions. While not in control its targets follow the supervisor's last COMMAND, so a
takeover starts from where the robot was sent. Episode keys and buttons do nothing in that role;
the e-stop works in both.
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
from robot_rl.teleop.takeover import TakeoverSwitch
from robot_rl.teleop.terminal import TerminalKeys

DEVICES = ("keyboard", "gamepad", "spacemouse", "leader", "joystick")
ROLES = ("record", "intervene")


class TeleopNode:
    def __init__(self, argv: list[str]) -> None:
        self.node: Node = make_node("teleop", argv=argv)
        p = self.node.declare_parameter
        robot = p("robot", "dclaw", "calibration name or YAML path")
        self.device = p("device", "keyboard", f"one of {DEVICES}")
        self.role = p("role", "record", "record: drive the robot (COMMAND_RAW); intervene: take "
                                        "over from the learner's policy (COMMAND_OPERATOR)")
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
        if self.role not in ROLES:
            raise ValueError(f"{where}: parameter 'role' {self.role!r}: expected one of {ROLES}")
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
        joy_mapping = PRESETS.get(self.device, GAMEPAD if self.device == "joystick" else None)
        self._switch = TakeoverSwitch(joy_mapping.takeover.mode
                                      if joy_mapping is not None and joy_mapping.takeover
                                      else "toggle")
        self._gated: np.ndarray | None = None  # the supervisor's last COMMAND
        self._leader_targets: tuple[float, np.ndarray] | None = None
        self._episodes = EpisodeControl(first_episode)
        self._measured: np.ndarray | None = None
        self._pending: list[TeleopInput] = []
        self._keys = TerminalKeys.open_if_tty()
        self._make_endpoints(leader_topic)
        self.node.create_timer(self._period_s, self._tick)
        log = self.node.get_logger()
        out = self._raw.topic if self.role == "record" else self._operator.topic
        log.info(f"teleop with {self.device} ({self.role}) -> {out} at {rate_hz:g} Hz")
        if self._keys is not None:
            log.info(KEY_HELP)
        elif self.device == "keyboard":
            log.warning("device keyboard, but stdin is not a terminal: no keys will be read")

    def _make_endpoints(self, leader_topic: str) -> None:
        node = self.node
        if self.role == "record":
            self._raw = node.create_publisher(m.JointState, topics.COMMAND_RAW, QOS_DEFAULT)
        else:
            self._operator = node.create_publisher(m.JointState, topics.COMMAND_OPERATOR,
                                                   QOS_DEFAULT)
            self._takeover = node.create_publisher(m.Bool, topics.TAKEOVER, QOS_DEFAULT)
            node.create_subscription(m.JointState, topics.COMMAND, self._on_command, QOS_DEFAULT)
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

    def _on_command(self, msg: m.JointState) -> None:
        if sorted(msg.name) == sorted(self._names) and len(msg.position) == len(msg.name):
            by_name = dict(zip(msg.name, msg.position))
            self._gated = np.array([by_name[n] for n in self._names])

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
        if self.role == "intervene":
            self._intervene(inputs, now)
            return
        targets = self._integrator.step(inputs, self._measured, self._period_s)
        if targets is not None:
            self._raw.publish(m.joint_state(self._names, targets, stamp_s=self.node.now_s()))

    def _intervene(self, inputs: list[TeleopInput], now: float) -> None:
        """Online learning: TAKEOVER every tick, the operator's targets while in control."""
        device = self._joy or self._joystick
        was = self._switch.active
        if device is not None:
            level = device.takeover_level(now)
            if level is None:
                self._switch.lost()
            else:
                self._switch.held(level)
        if self._switch.active != was:
            self.node.get_logger().info("takeover: the operator is in control" if
                                        self._switch.active else "handed back to the policy")
        self._takeover.publish(m.Bool(data=self._switch.active))
        if not self._switch.active:
            # follow what the robot was sent, so that a takeover starts there
            follow = self._gated if self._gated is not None else self._measured
            if follow is not None:
                self._integrator.sync(follow)
            return
        targets = self._integrator.step(inputs, self._measured, self._period_s)
        if targets is not None:
            self._operator.publish(m.joint_state(self._names, targets,
                                                 stamp_s=self.node.now_s()))

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
        elif action == "takeover":
            if self.role != "intervene":
                log.info("takeover: only during online learning (role intervene)")
            elif self._switch.mode == "hold":
                log.info(f"takeover: hold the {self.device}'s right trigger")
            else:
                self._switch.press()
        elif self.role == "intervene" and action in EPISODE_ACTIONS:
            log.debug(f"{action}: the learner runs the episodes during online learning")
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
