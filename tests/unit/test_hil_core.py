"""Interventions' pure parts: the takeover switch, the handover rule, the operator's triggers, where
operator transitions go in the replay, and the intervention rate's metrics."""

from __future__ import annotations

import numpy as np
import pytest

from robot_rl.hil import (
    DemoRegion,
    InterventionTrend,
    ProgressWatch,
    add_online_episode,
    intervention_metrics,
)
from robot_rl.learning.config import AWACConfig
from robot_rl.learning.factory import make_replay
from robot_rl.learning.replay import BalancedReplay, ReplayBuffer
from robot_rl.teleop.takeover import OPERATOR, POLICY, Handover, TakeoverSwitch


def test_hold_switch_follows_the_button_and_toggle_switch_its_presses() -> None:
    hold = TakeoverSwitch("hold")
    assert hold.press() and not hold.release()
    assert hold.held(True) and hold.held(True) and not hold.held(False)
    assert hold.takeovers == 2
    toggle = TakeoverSwitch("toggle")
    assert toggle.press() and toggle.release()        # a release changes nothing
    assert not toggle.press()                         # the second press hands back
    assert toggle.held(True) and toggle.held(True)    # a held level is one press
    assert toggle.held(False) and not toggle.held(True)    # the next press hands back
    assert toggle.takeovers == 2
    toggle.press()
    assert toggle.active and toggle.lost()            # a silent device: still the operator
    assert hold.press() and not hold.lost()           # but a deadman lets go
    with pytest.raises(ValueError, match="mode 'deadman'"):
        TakeoverSwitch("deadman")


def test_every_change_of_hands_is_one_step_from_the_last_gated_command() -> None:
    step = np.array([0.1, 0.2])
    handover = Handover(step)
    gated = np.zeros(2)
    first = handover.command(np.array([1.0, -1.0]), None, gated)
    assert first.actor == POLICY and not first.limited
    np.testing.assert_array_equal(first.targets_rad, [1.0, -1.0])  # the policy alone: untouched
    gated = np.array([0.5, 0.5])                   # what the supervisor let through
    taken = handover.command(np.array([0.0, 0.0]), np.array([2.0, 0.55]), gated)
    assert taken.actor == OPERATOR and taken.limited
    np.testing.assert_allclose(taken.targets_rad, [0.6, 0.55])     # one step at most
    gated = taken.targets_rad
    back = handover.command(np.array([-3.0, 3.0]), None, gated)    # hand back: policy far away
    assert back.actor == POLICY and back.limited
    np.testing.assert_allclose(back.targets_rad, [0.5, 0.75])
    after = handover.command(np.array([-3.0, 3.0]), None, back.targets_rad)
    assert not after.limited                                       # only the first is held
    assert (handover.takeovers, handover.handbacks, handover.operator_steps) == (1, 1, 1)
    assert handover.command(None, None, gated) is None
    with pytest.raises(ValueError, match="step_rad"):
        Handover(np.array([0.1, 0.0]))


def test_progress_watch_waits_one_window_then_flags_a_stall() -> None:
    watch = ProgressWatch(window_steps=3, min_progress=0.08)
    assert not any(watch.stuck(-1.0) for _ in range(3))            # the first window never
    assert watch.stuck(-1.0)                                       # 3 steps without progress
    watch.reset()
    values = [-1.0, -0.95, -0.9, -0.85, -0.8]                      # 0.15 per window of 3
    assert not any(watch.stuck(v) for v in values)
    assert watch.stuck(-0.8) is False                              # -0.9 -> -0.8 in the window
    assert watch.stuck(-0.8) and watch.stuck(-0.8)                 # -0.85 -> -0.8: too little


def test_demo_region_radius_comes_from_distances_between_episodes() -> None:
    t = np.linspace(0.0, 1.0, 50)
    demos = np.concatenate([np.stack([t, 0.01 * k + 0 * t], axis=1) for k in range(3)])
    ids = np.repeat(np.arange(3), 50)
    region = DemoRegion(demos, ids, quantile=1.0)
    # every frame's nearest frame of another episode is 0.01 away in y, in units of y's std
    assert region.radius == pytest.approx(0.01 / demos[:, 1].std())
    assert not region.outside(np.array([0.5, 0.015]))
    assert region.outside(np.array([0.5, 0.05]))                   # 3 episode gaps beyond
    cols = DemoRegion(np.c_[demos, 100 * np.random.default_rng(0).normal(size=150)], ids,
                      columns=[0, 1], quantile=1.0)
    assert not cols.outside(np.array([0.5, 0.01, 1e6]))           # unlisted columns ignored
    with pytest.raises(ValueError, match="two demonstration episodes"):
        DemoRegion(demos[:50], ids[:50])


def _episode(n: int, intervened: list[int]) -> dict[str, np.ndarray]:
    flags = np.zeros(n, bool)
    flags[intervened] = True
    rng = np.random.default_rng(n)
    return {"observation": rng.normal(size=(n, 3)).astype(np.float32),
            "action": rng.uniform(-1, 1, (n, 2)).astype(np.float32),
            "reward": -np.ones(n, np.float32), "next_observation": np.zeros((n, 3), np.float32),
            "terminated": np.zeros(n, bool), "intervention": flags}


def _offline(n: int) -> dict[str, np.ndarray]:
    steps = _episode(n, [])
    steps.pop("intervention")
    return steps


@pytest.mark.parametrize("replay_kind", ["uniform", "balanced"])
def test_operator_transitions_go_to_both_sides_without_touching_the_dataset(
        replay_kind: str) -> None:
    offline = _offline(10)
    config = AWACConfig(replay=replay_kind)
    replay = make_replay(config, offline, online_capacity=20, seed=0, extra_offline_capacity=20)
    episode = _episode(8, [2, 3, 4])
    assert add_online_episode(replay, episode) == 3
    if isinstance(replay, BalancedReplay):
        assert (len(replay.offline), len(replay.online)) == (13, 8)
        stored = replay.offline.data["obs"]
        np.testing.assert_array_equal(stored[:10], offline["observation"])  # dataset intact
        np.testing.assert_array_equal(stored[10:13], episode["observation"][2:5])
    else:
        assert isinstance(replay, ReplayBuffer) and len(replay) == 10 + 8 + 3  # stored twice
        np.testing.assert_array_equal(replay.data["obs"][18:21], episode["observation"][2:5])
    assert add_online_episode(replay, _episode(4, [1]), to_offline=False) == 0
    assert add_online_episode(replay, _offline(4)) == 0           # no flag: nothing extra


def test_without_reserved_room_corrections_would_overwrite_the_dataset() -> None:
    """The reason for ``extra_offline_capacity``: the offline ring is exactly the dataset."""
    offline = _offline(10)
    replay = make_replay(AWACConfig(replay="balanced"), offline, online_capacity=20, seed=0)
    add_online_episode(replay, _episode(8, [0, 1]))
    assert len(replay.offline) == 10                               # full ring: wrapped
    assert not np.array_equal(replay.offline.data["obs"][:2], offline["observation"][:2])


def test_intervention_rate_per_episode_and_its_trend() -> None:
    assert intervention_metrics(np.array([1, 1, 0, 0]), 1) == {"intervention_rate": 0.5,
                                                                "interventions": 1.0}
    assert intervention_metrics(None, 0)["intervention_rate"] == 0.0
    trend = InterventionTrend(window=2)
    logged = [trend.add(steps, rate, k) for steps, rate, k in
              ((60, 0.6, 2), (120, 0.4, 1), (180, 0.2, 1), (240, 0.0, 0))]
    assert [round(x["intervention_rate_mean"], 6) for x in logged] == [0.6, 0.5, 0.3, 0.1]
    assert trend.slope_per_1000_steps() == pytest.approx(-0.2 / 60 * 1000)
    summary = trend.summary()
    assert summary["takeovers"] == 4 and summary["episodes_with_takeover"] == 3
    assert (summary["rate_first_window"], summary["rate_last_window"]) == pytest.approx((0.5, 0.1))


def test_each_device_has_one_takeover_input() -> None:
    from robot_rl.teleop import GAMEPAD, SPACEMOUSE, JoyTeleop, KeyboardTeleop
    from robot_rl.teleop.joy import TakeoverBinding
    from robot_rl.teleop.joystick import JS_EVENT_AXIS, JoystickTeleop, decode_events, pack_event

    names = [f"f{i}_{j}" for i in range(3) for j in ("base", "mid", "tip")]
    assert KeyboardTeleop(names, 0.05).handle("t").actions == ("takeover",)
    pad = JoyTeleop(names, GAMEPAD, speed_rad_s=1.0, timeout_s=0.5)
    assert pad.takeover_level(0.0) is None                         # nothing heard yet
    axes = [0.0, 0.0, 1.0, 0.0, 0.0, 1.0]                           # triggers at rest: +1
    pad.handle(axes, [0] * 9, now_s=1.0)
    assert pad.takeover_level(1.0) is False
    pad.handle(axes[:5] + [-0.9], [0] * 9, now_s=1.1)               # right trigger pulled
    assert pad.takeover_level(1.2) is True
    assert pad.takeover_level(1.7) is None                          # silent: presses nothing
    mouse = JoyTeleop(names, SPACEMOUSE, speed_rad_s=1.0)
    mouse.handle([0.0] * 6, [1, 0], now_s=0.0)
    assert mouse.takeover_level(0.1) is True and SPACEMOUSE.takeover.mode == "toggle"
    # the joystick device: the same mapping from raw events; the trigger's state at open ignored
    stick = JoystickTeleop(names, GAMEPAD, speed_rad_s=1.0)
    events, _ = decode_events(pack_event(32767, JS_EVENT_AXIS, 5, init=True))
    stick.feed(events, now_s=0.0)
    assert stick.takeover_level(0.0) is False
    events, _ = decode_events(pack_event(32767, JS_EVENT_AXIS, 5))  # pulled: -32767/32767 = -1
    stick.feed(events, now_s=0.1)
    assert stick.takeover_level(0.1) is True
    with pytest.raises(ValueError, match="a button or an axis"):
        TakeoverBinding(button=1, axis=2)
