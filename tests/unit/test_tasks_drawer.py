"""The drawer task's pure functions on hand-built states."""

from __future__ import annotations

import numpy as np
import pytest

from robot_rl.robot_config import load_robot
from robot_rl.tasks import DrawerTask, DrawerTaskConfig, TaskState


def _state(opening: float, ee=(0.3, 0.0, 0.3), handle=(0.41, 0.0, 0.2)) -> TaskState:
    return TaskState(np.zeros(6), np.zeros(6), opening, 0.0,
                     {"ee_site": np.array(ee), "handle_site": np.array(handle)})


@pytest.fixture
def task() -> DrawerTask:
    return DrawerTask(load_robot("arm6"))


def test_observation_layout(task: DrawerTask) -> None:
    obs = task.observation(_state(0.05), goal=0.15, previous_action=np.zeros(6))
    assert obs.shape == (task.observation_size,) == (27,) and obs.dtype == np.float32
    assert task.field(obs, "goal_error_m")[0] == pytest.approx(0.10)
    np.testing.assert_allclose(task.field(obs, "handle_from_ee_m"), [0.11, 0.0, -0.1], atol=1e-6)


def test_success_and_rewards(task: DrawerTask) -> None:
    assert task.reward(_state(0.16), 0.15) == 0.0 and task.is_success(_state(0.15), 0.15)
    assert task.reward(_state(0.14), 0.15) == -1.0
    dense = DrawerTask(task.calibration, {"reward": "dense"})  # over the robot's settings
    far, near = dense.reward(_state(0.0), 0.15), dense.reward(_state(0.0, ee=(0.41, 0, 0.2)), 0.15)
    half = dense.reward(_state(0.075, ee=(0.41, 0, 0.2)), 0.15)
    assert -1.0 <= far < near < half < 0.0


def test_reset_is_closed_drawer_near_home(task: DrawerTask) -> None:
    rng = np.random.default_rng(0)
    for _ in range(50):
        sample = task.sample_reset(rng)
        assert sample.object_position == 0.0 and sample.goal == task.config.goal_opening_m
        offset = sample.joint_positions_rad - np.array(task.config.home_rad)
        assert np.all(np.abs(offset) <= task.config.start_noise_rad + 1e-12)
    names = [step.name for step in task.real_reset_procedure()]
    assert names.index("unhook") < names.index("push_closed") < names.index("check_closed")


def test_home_pose_length_is_checked() -> None:
    with pytest.raises(ValueError, match="home_rad"):
        DrawerTask(load_robot("arm6"), DrawerTaskConfig(home_rad=(0.0, 0.0)))
