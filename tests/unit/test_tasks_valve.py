"""The valve task's pure functions on hand-built states."""

from __future__ import annotations

import math

import numpy as np
import pytest

from robot_rl.config import ConfigError, from_dict
from robot_rl.robot_config import load_robot
from robot_rl.tasks import TaskState, ValveTask, ValveTaskConfig


def _state(angle: float, joints: np.ndarray | None = None) -> TaskState:
    joints = np.zeros(9) if joints is None else joints
    return TaskState(joints, np.zeros(9), angle, 0.0)


@pytest.fixture
def task() -> ValveTask:
    return ValveTask(load_robot("dclaw"))


def test_layout_and_observation(task: ValveTask) -> None:
    joints = np.arange(9) * 0.1
    obs = task.observation(_state(0.5, joints), goal=1.0, previous_action=np.full(9, 0.25))
    assert obs.dtype == np.float32 and obs.shape == (task.observation_size,) == (32,)
    np.testing.assert_allclose(task.field(obs, "joint_position_rad"), joints, rtol=1e-6)
    np.testing.assert_allclose(task.field(obs, "valve_cos_sin"), [math.cos(0.5), math.sin(0.5)],
                               rtol=1e-6)
    np.testing.assert_allclose(task.field(obs, "error_cos_sin"), [math.cos(0.5), math.sin(0.5)],
                               rtol=1e-6)
    np.testing.assert_allclose(task.field(obs, "previous_action"), 0.25)


def test_success_and_rewards_wrap_around(task: ValveTask) -> None:
    tol = task.config.success_tolerance_rad
    assert task.is_success(_state(math.pi - 0.01), goal=-math.pi + 0.01)
    assert task.reward(_state(1.0), goal=1.0 + 0.9 * tol) == 0.0
    assert task.reward(_state(1.0), goal=1.0 + 1.1 * tol) == -1.0
    dense = ValveTask(task.calibration, ValveTaskConfig(reward="dense"))
    assert dense.reward(_state(0.0), goal=math.pi / 2) == pytest.approx(-0.5)
    assert dense.reward(_state(0.0), goal=1.0) < dense.reward(_state(0.0), goal=0.5) < 0


def test_absolute_actions_span_the_calibration_limits(task: ValveTask) -> None:
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
