"""The valve task's pure functions on hand-built states."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from robot_rl.config import ConfigError, from_dict
from robot_rl.robot_config import load_robot
from robot_rl.safety import RobotState, Supervisor
from robot_rl.tasks import TaskState, ValveTask, ValveTaskConfig

TIPS = ("f0_tip_site", "f1_tip_site", "f2_tip_site")


def _tips_at(angles_rad: list[float], radius_m: float = 0.07) -> dict[str, np.ndarray]:
    """Fingertips at these angles about the valve's axis."""
    return {name: np.array([radius_m * math.cos(a), radius_m * math.sin(a), 0.05])
            for name, a in zip(TIPS, angles_rad)}


def _state(angle: float, joints: np.ndarray | None = None,
           tip_angles_rad: list[float] | None = None) -> TaskState:
    joints = np.zeros(9) if joints is None else joints
    tips = _tips_at(tip_angles_rad or [0.3, 2.4, -1.8])
    return TaskState(joints, np.zeros(9), angle, 0.0, sites_m=tips)


@pytest.fixture
def task() -> ValveTask:
    return ValveTask(load_robot("dclaw"))


def test_layout_and_observation(task: ValveTask) -> None:
    joints = np.arange(9) * 0.1
    obs = task.observation(_state(0.5, joints), goal=1.0, previous_action=np.full(9, 0.25))
    assert obs.dtype == np.float32 and obs.shape == (task.observation_size,) == (49,)
    np.testing.assert_allclose(task.field(obs, "joint_position_rad"), joints, rtol=1e-6)
    np.testing.assert_allclose(task.field(obs, "valve_cos_sin"), [math.cos(0.5), math.sin(0.5)],
                               rtol=1e-6)
    np.testing.assert_allclose(task.field(obs, "error_cos_sin"), [math.cos(0.5), math.sin(0.5)],
                               rtol=1e-6)
    np.testing.assert_allclose(task.field(obs, "previous_action"), 0.25)
    np.testing.assert_allclose(task.field(obs, "spoke_cos_sin"), [math.cos(1.5), math.sin(1.5)],
                               rtol=1e-6)
    assert task.required_sites == TIPS
    np.testing.assert_allclose(task.field(obs, "fingertip_position_m"),
                               np.concatenate(list(_tips_at([0.3, 2.4, -1.8]).values())),
                               rtol=1e-6)


def test_spoke_features_see_the_valve_up_to_its_symmetry(task: ValveTask) -> None:
    """A tip on a spoke reads (1, 0), a tip midway between two spokes (-1, 0); turning the valve
    and the tips together by a third of a turn changes nothing but the valve's own angle."""
    angle, third = 0.5, 2 * math.pi / 3
    obs = task.observation(_state(angle, tip_angles_rad=[angle + third, angle + third / 2, 0.0]),
                           goal=1.0, previous_action=np.zeros(9))
    tip_from_spoke = task.field(obs, "fingertip_spoke_cos_sin").reshape(3, 2)
    np.testing.assert_allclose(tip_from_spoke[0], [1.0, 0.0], atol=1e-6)
    np.testing.assert_allclose(tip_from_spoke[1], [-1.0, 0.0], atol=1e-6)
    np.testing.assert_allclose(tip_from_spoke[2], [math.cos(-1.5), math.sin(-1.5)], atol=1e-6)

    tips = [0.3, 2.4, -1.8]
    before = task.observation(_state(angle, tip_angles_rad=tips), 1.0, np.zeros(9))
    after = task.observation(_state(angle + third, tip_angles_rad=[a + third for a in tips]),
                             1.0 + third, np.zeros(9))
    for name in ("spoke_cos_sin", "fingertip_spoke_cos_sin", "error_cos_sin"):
        np.testing.assert_allclose(task.field(after, name), task.field(before, name), atol=1e-6)
    assert not np.allclose(task.field(after, "valve_cos_sin"), task.field(before, "valve_cos_sin"))


def test_a_state_without_the_fingertips_is_refused_by_name(task: ValveTask) -> None:
    state = TaskState(np.zeros(9), np.zeros(9), 0.0, 0.0, sites_m=_tips_at([0, 1]))
    with pytest.raises(KeyError, match="f2_tip_site"):
        task.observation(state, goal=1.0, previous_action=np.zeros(9))


def test_success_and_rewards_wrap_around(task: ValveTask) -> None:
    tol = task.config.success_tolerance_rad
    assert task.is_success(_state(math.pi - 0.01), goal=-math.pi + 0.01)
    assert task.reward(_state(1.0), goal=1.0 + 0.9 * tol) == 0.0
    assert task.reward(_state(1.0), goal=1.0 + 1.1 * tol) == -1.0
    dense = ValveTask(task.calibration, ValveTaskConfig(reward="dense"))
    assert dense.reward(_state(0.0), goal=math.pi / 2) == pytest.approx(-0.5)
    assert dense.reward(_state(0.0), goal=1.0) < dense.reward(_state(0.0), goal=0.5) < 0


def test_absolute_actions_span_the_calibration_limits(task: ValveTask) -> None:
    task = ValveTask(task.calibration, ValveTaskConfig(action_mode="absolute"))
    cal, margin = task.calibration, task.calibration.safety.position_margin_rad
    current = np.zeros(9)
    np.testing.assert_allclose(task.action_to_targets(-np.ones(9), current), cal.lower_rad + margin)
    np.testing.assert_allclose(task.action_to_targets(np.ones(9), current), cal.upper_rad - margin)
    targets = np.linspace(-0.5, 0.5, 9)
    roundtrip = task.action_to_targets(task.targets_to_action(targets, current), current)
    np.testing.assert_allclose(roundtrip, targets, atol=1e-6)


def test_relative_actions_step_at_most_max_step(task: ValveTask) -> None:
    rel = ValveTask(task.calibration, ValveTaskConfig(action_mode="relative"))
    step = task.calibration.safety.max_step_rad
    current = np.zeros(9)
    np.testing.assert_allclose(rel.action_to_targets(np.full(9, 5.0), current), step)
    near_limit = rel.actions.upper_rad - 0.01
    assert np.all(rel.action_to_targets(np.ones(9), near_limit) <= rel.actions.upper_rad)


def test_reset_distribution(task: ValveTask) -> None:
    rng = np.random.default_rng(0)
    lo, hi = task.config.goal_offset_range_rad
    for _ in range(200):
        sample = task.sample_reset(rng)
        offset = abs(math.remainder(sample.goal - sample.object_position, 2 * math.pi))
        assert lo - 1e-9 <= offset <= hi + 1e-9
        assert np.all(sample.joint_positions_rad >= task.actions.lower_rad)
        assert np.all(sample.joint_positions_rad <= task.actions.upper_rad)


def test_real_reset_procedure_is_ordered_and_in_limits(task: ValveTask) -> None:
    steps = task.real_reset_procedure()
    assert [s.name for s in steps][:3] == ["open_fingers", "wait_still", "home"]
    for step in steps:
        if step.joint_targets_rad is not None:
            targets = np.array(step.joint_targets_rad)
            assert np.all(targets >= task.calibration.lower_rad)
            assert np.all(targets <= task.calibration.upper_rad)


def test_config_validation_from_yaml_data() -> None:
    with pytest.raises(ConfigError, match="reward"):
        from_dict(ValveTaskConfig, {"reward": "shaped"})
    with pytest.raises(ConfigError, match="control_period_s"):
        from_dict(ValveTaskConfig, {"control_period_s": 5.0})


def test_velocity_actions_step_what_the_supervisors_velocity_limit_lets_through(
        task: ValveTask) -> None:
    """A saturated relative action asks 0.25 rad per step of joints the velocity limit holds to
    0.15 (3 rad/s at 20 Hz), so the supervisor clips it; a saturated velocity action passes."""
    cal = task.calibration
    tasks = {mode: ValveTask(cal, ValveTaskConfig(action_mode=mode))
             for mode in ("relative", "velocity")}
    period = tasks["velocity"].control_period_s
    expected = np.minimum(cal.velocity_limit_rad_s * period, cal.safety.max_step_rad)
    assert np.all(expected < cal.safety.max_step_rad)  # the case this mode exists for
    zeros = np.zeros(cal.n_joints)
    np.testing.assert_allclose(tasks["velocity"].action_to_targets(np.full(9, 5.0), zeros), expected)
    np.testing.assert_allclose(tasks["velocity"].targets_to_action(expected / 2, zeros), 0.5)
    assert all(t.actions.steps_from_command for t in tasks.values())
    assert not ValveTask(cal, ValveTaskConfig(action_mode="absolute")).actions.steps_from_command

    unbounded = dataclasses.replace(cal, safety=dataclasses.replace(cal.safety, workspace=None))
    for mode, clipped in (("velocity", False), ("relative", True)):
        supervisor = Supervisor(unbounded)
        supervisor.update_state(RobotState(10.0, zeros, zeros, zeros), 10.0)
        assert supervisor.filter(zeros, 10.0).status == "pass"
        supervisor.update_state(RobotState(10.0 + period, zeros, zeros, zeros), 10.0 + period)
        step = tasks[mode].action_to_targets(np.ones(9), zeros)
        verdict = supervisor.filter(step, 10.0 + period)
        limited = [r for r in verdict.reasons if r.startswith("velocity_limit")]
        assert (len(limited) == cal.n_joints) == clipped, (mode, verdict)
        assert (verdict.status == "pass") == (not clipped), (mode, verdict)
