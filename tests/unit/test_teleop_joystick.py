"""The Linux joystick reader: js_event bytes through a real FIFO into the same TeleopInput the Joy
path makes, and the teleop node driven by it (its own process, real DDS)."""

from __future__ import annotations

import errno
import json
import os
import struct
import subprocess
import sys
import time
from typing import Any

import numpy as np
import pytest

from robot_rl.nodes import topics
from robot_rl.robot_config import load_robot
from robot_rl.ros import messages as m
from robot_rl.ros.qos import QOS_DEFAULT, QOS_SENSOR_DATA
from robot_rl.ros.runtime import make_node
from robot_rl.teleop.joy import GAMEPAD, JoyTeleop
from robot_rl.teleop.joystick import (
    JS_EVENT_AXIS,
    JS_EVENT_BUTTON,
    JoystickDevice,
    JoystickTeleop,
    JsEvent,
    axis_value,
    decode_events,
    pack_event,
)

NAMES = list(load_robot("dclaw").joint_names)
A, Y, RB = 0, 3, 5           # buttons: start, end_failure, select_next
LX, LY, RY = 0, 1, 4         # axes: turn, grasp, selected joint


def axis(raw: int, number: int, **kw: Any) -> bytes:
    return pack_event(raw, JS_EVENT_AXIS, number, **kw)


def button(pressed: int, number: int, **kw: Any) -> bytes:
    return pack_event(pressed, JS_EVENT_BUTTON, number, **kw)


def events(*chunks: bytes) -> list[JsEvent]:
    decoded, rest = decode_events(b"".join(chunks))
    assert rest == b""
    return decoded


def test_event_layout_is_the_kernels() -> None:
    raw = pack_event(-1234, JS_EVENT_AXIS, 3, time_ms=77, init=True)
    assert len(raw) == 8
    assert struct.unpack("=IhBB", raw) == (77, -1234, 0x82, 3)   # time, value, type, number
    decoded, rest = decode_events(raw + raw[:5])
    assert rest == raw[:5] and decoded == [JsEvent(77, -1234, 0x82, 3)]
    assert decoded[0].is_init and decoded[0].kind == JS_EVENT_AXIS


def test_axes_are_scaled_like_the_joy_node() -> None:
    assert axis_value(0) == 0.0
    assert axis_value(-32767) == 1.0 and axis_value(32767) == -1.0   # stick up/left is +1
    assert axis_value(-32768) == 1.0                                  # clipped into [-1, 1]
    assert axis_value(16384) == pytest.approx(-0.50002, abs=1e-5)


def test_same_input_as_the_joy_path() -> None:
    stick = JoystickTeleop(NAMES, GAMEPAD, speed_rad_s=1.0)
    joy = JoyTeleop(NAMES, GAMEPAD, speed_rad_s=1.0)
    t = 10.0
    got = stick.feed(events(axis(-20000, LY), axis(9000, LX), button(1, RB), button(0, RB),
                            axis(-32767, RY), button(1, A)), t)
    # what joy_node would publish after the same events: axes -raw/32767, buttons 0/1
    axes = [0.0] * 5
    axes[LY], axes[LX], axes[RY] = 20000 / 32767, -9000 / 32767, 1.0
    joy.handle(axes, [0] * 6, t - 0.01)
    joy.handle(axes, [0, 0, 0, 0, 0, 1], t - 0.01)              # RB: select the next joint
    joy.handle(axes, [0] * 6, t - 0.01)
    expected = joy.handle(axes, [1, 0, 0, 0, 0, 0], t)
    assert got == expected and got is not None and got.actions == ("start",)
    np.testing.assert_allclose(stick.velocity_rad_s(t), joy.velocity_rad_s(t))
    assert stick.joy.selection.name == NAMES[1] == "f0_mid"     # RB selected the next joint
    assert np.count_nonzero(stick.velocity_rad_s(t)) == 9         # grasp and turn synergies too


def test_state_at_open_moves_nothing_and_quick_presses_count() -> None:
    stick = JoystickTeleop(NAMES, GAMEPAD, speed_rad_s=1.0)
    opened = events(axis(-30000, RY, init=True), button(1, A, init=True),
                    button(0, Y, init=True))
    assert stick.feed(opened, 1.0) is None
    assert not stick.velocity_rad_s(1.0).any()       # a deflected stick at open reads 0
    assert stick.feed(events(button(0, A)), 1.1) is None   # releasing A is no action
    pressed = stick.feed(events(button(1, A), button(0, A), button(1, Y), button(0, Y)), 1.2)
    assert pressed is not None and pressed.actions == ("start", "end_failure")


class Fifo:
    """The writer's end of a FIFO standing in for /dev/input/js0 (reopened if the reader left)."""

    def __init__(self, path: str) -> None:
        self.path, self.fd = path, None

    def write(self, data: bytes, timeout_s: float = 10.0) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                if self.fd is None:
                    self.fd = os.open(self.path, os.O_WRONLY | os.O_NONBLOCK)
                os.write(self.fd, data)
                return
            except OSError as err:          # ENXIO: no reader yet; EPIPE: the reader left
                if err.errno not in (errno.ENXIO, errno.EPIPE) or time.monotonic() > deadline:
                    raise
                self.close()
                time.sleep(0.02)

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def test_fifo_device_partial_writes_hold_and_disconnect(tmp_path) -> None:
    path = str(tmp_path / "js0")
    os.mkfifo(path)
    device = JoystickDevice(path, reopen_period_s=0.0)
    stick = JoystickTeleop(NAMES, GAMEPAD, speed_rad_s=2.0, timeout_s=0.2, device=device)
    assert stick.poll(0.0) is None                     # opens; no writer yet: end of file
    writer = Fifo(path)
    data = axis(-32767, RY) + button(1, A)
    writer.write(data[:5])                             # half an event, then the rest
    assert stick.poll(1.0) is None and device.connected
    writer.write(data[5:])
    item = stick.poll(1.1)
    assert item is not None and item.actions == ("start",)
    assert stick.velocity_rad_s(1.1)[0] == pytest.approx(2.0)
    # no events for a while: the device is there, so the held stick still counts
    assert stick.poll(5.0) is None and stick.velocity_rad_s(5.0)[0] == pytest.approx(2.0)
    writer.close()                                     # the pad goes away
    stick.poll(5.1)
    assert not device.connected and "end of file" in device.problem
    assert not stick.velocity_rad_s(5.4).any()         # JoyTeleop's timeout stops the motion
    writer.write(axis(32767, RY))                      # back, stick pulled down
    stick.poll(6.0)
    assert device.connected and stick.velocity_rad_s(6.0)[0] == pytest.approx(-2.0)
    stick.close()
    writer.close()


def test_missing_device_is_named(tmp_path) -> None:
    device = JoystickDevice(tmp_path / "js7", reopen_period_s=1.0)
    assert device.read(0.0) == [] and not device.connected
    assert device.problem == f"cannot open {tmp_path / 'js7'}: No such file or directory"


@pytest.mark.graph
def test_teleop_node_with_a_joystick(ros_domain: int, spawn: Any, tmp_path) -> None:
    path = str(tmp_path / "js0")
    os.mkfifo(path)
    code = "import sys, robot_rl.nodes.teleop as n; sys.exit(n.main())"
    teleop = spawn([sys.executable, "-c", code, "--ros-args", "-r", "__ns:=/hand",
                    "-p", "device:=joystick", "-p", f"joystick_path:={path}",
                    "-p", "joint_speed_rad_s:=1.0", "-p", "control_rate_hz:=50.0"],
                   stdin=subprocess.DEVNULL)
    probe = make_node("probe", "/hand", argv=[])
    writer = Fifo(path)
    try:
        joints = probe.create_publisher(m.JointState, topics.JOINT_STATES, QOS_SENSOR_DATA)
        raw: list[m.JointState] = []
        episodes: list[m.String] = []
        probe.create_subscription(m.JointState, topics.COMMAND_RAW, raw.append, QOS_DEFAULT)
        probe.create_subscription(m.String, topics.EPISODE, episodes.append, QOS_DEFAULT)

        def wait(condition: Any, what: str, timeout_s: float = 20.0) -> None:
            deadline = time.monotonic() + timeout_s
            while not condition():
                assert time.monotonic() < deadline, f"timed out waiting for {what}"
                joints.publish(m.joint_state(NAMES, np.zeros(len(NAMES))))
                probe.spin_once(0.02)

        wait(lambda: bool(raw), "teleop commands")
        writer.write(axis(-32767, RY))                 # right stick up: f0_base at 1 rad/s
        wait(lambda: raw[-1].position[0] > 0.1, "f0_base moving")
        writer.write(button(1, A) + button(0, A))
        wait(lambda: bool(episodes), "the start event")
        assert json.loads(episodes[0].data) == {"event": "start", "episode": 0}
        assert teleop.poll() is None
    finally:
        writer.close()
        probe.destroy()
        if teleop.poll() is None:
            teleop.send_signal(2)
            teleop.wait(timeout=10)
