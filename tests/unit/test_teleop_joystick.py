"""The Linux joystick reader: js_event bytes through a real FIFO into the same TeleopInput the Joy
path makes (the teleop node driven by it: tests/graph/test_graph_teleop_joystick.py)."""

from __future__ import annotations

import os
import struct

import numpy as np
import pytest
from helpers.joystick import LX, LY, RB, RY, A, Fifo, Y, axis, button

from robot_rl.robot_config import load_robot
from robot_rl.teleop.joy import GAMEPAD, JoyTeleop
from robot_rl.teleop.joystick import (
    JS_EVENT_AXIS,
    JoystickDevice,
    JoystickTeleop,
    JsEvent,
    axis_value,
    decode_events,
    pack_event,
)

NAMES = list(load_robot("dclaw").joint_names)


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
