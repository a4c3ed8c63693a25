"""Teleop's pure mappings: keys, Joy axes and buttons, leader mirroring, targets, episodes."""

from __future__ import annotations

import numpy as np
import pytest

from robot_rl.robot_config import load_robot
from robot_rl.teleop import (
    GAMEPAD,
    SPACEMOUSE,
    AxisBinding,
    EpisodeControl,
    JoyMapping,
    JoyTeleop,
    KeyboardTeleop,
    LeaderMirror,
    TargetIntegrator,
    TeleopInput,
    default_synergies,
)
from robot_rl.teleop.terminal import parse_keys

CAL = load_robot("dclaw")
NAMES = CAL.joint_names


def test_synergies_follow_the_dclaw_naming_and_skip_other_robots() -> None:
    syn = default_synergies(NAMES)
    assert [NAMES[j] for j in np.flatnonzero(syn["turn"])] == ["f0_base", "f1_base", "f2_base"]
    assert np.flatnonzero(syn["grasp"]).tolist() == [1, 2, 4, 5, 7, 8]
    assert default_synergies(("shoulder", "elbow", "wrist")) == {}


def test_keyboard_selects_moves_and_maps_actions() -> None:
    keys = KeyboardTeleop(NAMES, step_rad=0.05)
    assert keys.handle("2") is None and keys.selection.name == "f0_mid"
    delta = keys.handle("w").delta_rad
    assert delta[1] == pytest.approx(0.05) and np.count_nonzero(delta) == 1
    assert keys.handle("down").delta_rad[1] == pytest.approx(-0.05)
    keys.handle("]")
    assert keys.selection.name == "f0_tip"
    keys.handle("[")
    keys.handle("[")
    assert keys.selection.name == "f0_base"
    assert keys.handle("9") is None and keys.selection.name == "f2_tip"
    keys.handle("0")  # no tenth joint: selection unchanged
    assert keys.selection.name == "f2_tip"
    turn = keys.handle("d").delta_rad
    np.testing.assert_allclose(turn, default_synergies(NAMES)["turn"] * 0.05)
    np.testing.assert_allclose(keys.handle("q").delta_rad,
                               -default_synergies(NAMES)["grasp"] * 0.05)
    assert keys.handle("b").actions == ("start",)
    assert keys.handle(" ").actions == ("estop",)
    assert keys.handle("y").actions == ("end_success",)
    assert keys.handle("z") is None
    arm = KeyboardTeleop(("shoulder", "elbow"), step_rad=0.1)
    assert arm.handle("d") is None  # no synergy on an arm: the key does nothing


def test_terminal_escape_sequences_become_arrow_keys() -> None:
    assert parse_keys("w\x1b[A\x1b[Dx \x1bOB") == ["w", "up", "left", "x", " ", "down"]


def test_joy_axes_give_velocities_with_deadzone_and_timeout() -> None:
    joy = JoyTeleop(NAMES, GAMEPAD, speed_rad_s=2.0, timeout_s=0.5)
    axes = [0.0] * 6
    axes[4] = 1.0  # right stick fully up: the selected joint (f0_base) at full speed
    axes[1] = 0.05  # inside the deadzone: no grasp motion
    joy.handle(axes, [0] * 9, now_s=10.0)
    velocity = joy.velocity_rad_s(10.1)
    assert velocity[0] == pytest.approx(2.0) and np.count_nonzero(velocity) == 1
    axes[1] = -0.55  # half-way past the deadzone, stick down: open the grasp at 1 rad/s
    joy.handle(axes, [0] * 9, now_s=10.2)
    grasp = default_synergies(NAMES)["grasp"]
    np.testing.assert_allclose(joy.velocity_rad_s(10.2)[grasp > 0], -1.0)
    assert not joy.velocity_rad_s(10.71).any()  # the pad went quiet: stop


def test_joy_buttons_act_on_presses_not_while_held() -> None:
    joy = JoyTeleop(NAMES, GAMEPAD, speed_rad_s=1.0)
    buttons = [0] * 9
    buttons[0] = 1
    assert joy.handle([0.0] * 6, buttons, 0.0).actions == ("start",)
    assert joy.handle([0.0] * 6, buttons, 0.1) is None  # still held
    buttons[5] = 1  # RB: next joint, not an action to publish
    assert joy.handle([0.0] * 6, buttons, 0.2) is None
    assert joy.selection.name == "f0_mid"
    assert joy.handle([0.0] * 6, [0] * 9, 0.3) is None
    assert joy.handle([0.0] * 6, [0, 0, 1, 0, 0, 0, 0, 0, 1], 0.4).actions == (
        "end_success", "estop")


def test_spacemouse_twist_turns_and_push_closes() -> None:
    mouse = JoyTeleop(NAMES, SPACEMOUSE, speed_rad_s=1.0)
    mouse.handle([0.0, 0.0, -1.0, 0.0, 0.0, 1.0], [1, 0], 0.0)
    velocity = mouse.velocity_rad_s(0.0)
    syn = default_synergies(NAMES)
    np.testing.assert_allclose(velocity, syn["grasp"] + syn["turn"])
    assert mouse.handle([0.0] * 6, [0, 1], 0.1).actions == ("abort",)


def test_joy_mapping_errors_name_the_bad_entry() -> None:
    with pytest.raises(ValueError, match="unknown actions"):
        JoyMapping(axes=(), buttons=((0, "launch_rocket"),))
    bad = JoyMapping(axes=(AxisBinding(0, "synergy:wave"),), buttons=())
    with pytest.raises(ValueError, match="synergy:wave"):
        JoyTeleop(NAMES, bad, speed_rad_s=1.0)
    JoyTeleop(NAMES, JoyMapping(axes=(AxisBinding(0, "joint:f1_tip"),), buttons=()), 1.0)


def test_leader_mirrors_by_name_with_scale_and_offset() -> None:
    mirror = LeaderMirror(("a", "b"), ("lb", "la"), scale=(2.0, -1.0), offset_rad=(0.1, 0.0))
    targets, _ = mirror.targets(["la", "extra", "lb"], [0.5, 9.0, 0.25])
    np.testing.assert_allclose(targets, [2.0 * 0.25 + 0.1, -0.5])
    targets, why = mirror.targets(["la"], [0.5])
    assert targets is None and "lb" in why
    assert mirror.targets(["la", "lb"], [0.5, float("nan")])[0] is None
    same = LeaderMirror(NAMES)
    np.testing.assert_allclose(same.targets(list(NAMES), np.arange(9.0))[0], np.arange(9.0))
    with pytest.raises(ValueError, match="leader_scale has 1 entries, expected 2"):
        LeaderMirror(("a", "b"), scale=(1.0,))


def test_targets_start_at_the_measurement_stay_near_it_and_in_limits() -> None:
    integ = TargetIntegrator(CAL.lower_rad, CAL.upper_rad, max_lead_rad=0.3)
    assert integ.step([TeleopInput(delta_rad=np.ones(9))], None, 0.05) is None
    measured = np.zeros(9)
    assert np.array_equal(integ.step([], measured, 0.05), measured)  # no jump on start
    up = np.zeros(9)
    up[1] = 1.0
    t = integ.step([TeleopInput(velocity_rad_s=up)], measured, 0.05)
    assert t[1] == pytest.approx(0.05)
    for _ in range(50):  # the finger is blocked at 0: the target winds up only to the lead
        t = integ.step([TeleopInput(velocity_rad_s=up)], measured, 0.05)
    assert t[1] == pytest.approx(0.3)
    far = np.full(9, 5.0)
    t = integ.step([TeleopInput(targets_rad=far)], far, 0.05)
    np.testing.assert_allclose(t, CAL.upper_rad)


def test_episode_control_refuses_what_makes_no_sense() -> None:
    ep = EpisodeControl(first_episode=4)
    assert ep.handle("end_success")[0] is None
    assert ep.handle("reset")[0] == {"event": "reset", "episode": 4}
    assert ep.handle("start")[0] == {"event": "start", "episode": 4}
    assert ep.handle("start")[0] is None
    assert ep.handle("reset")[0] is None  # not while recording
    assert ep.handle("end_failure")[0] == {"event": "end", "episode": 4, "success": False}
    assert ep.handle("toggle")[0] == {"event": "start", "episode": 5}
    assert ep.handle("abort")[0] == {"event": "discard", "episode": 5}
    assert ep.handle("toggle")[0] == {"event": "start", "episode": 6}
    assert ep.handle("toggle")[0] == {"event": "end", "episode": 6, "success": True}
    with pytest.raises(ValueError, match="unknown action"):
        ep.handle("pause")
