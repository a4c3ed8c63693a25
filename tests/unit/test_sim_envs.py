"""The twin's gymnasium environments: API conformance, determinism, the gate hook, the expert."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import robot_rl.sim_twin  # noqa: F401  (registers robot_rl/*)
from robot_rl.config import ConfigError
from robot_rl.robot_config import load_robot
from robot_rl.safety.gate import SupervisorGate
from robot_rl.sim_twin.experts import collect, make_expert, run_episode

VALVE = "robot_rl/ValveTurn-v0"
DRAWER = "robot_rl/DrawerOpen-v0"


def _rollout(env_id: str, seed: int, steps: int) -> list[np.ndarray]:
    env = gym.make(env_id)
    obs, _ = env.reset(seed=seed)
    env.action_space.seed(seed)
    trace = [obs]
    for _ in range(steps):
        obs, reward, terminated, truncated, _ = env.step(env.action_space.sample())
        trace.append(np.append(obs, reward))
        if terminated or truncated:
            obs, _ = env.reset()
    env.close()
    return trace


@pytest.mark.parametrize("env_id", [VALVE, DRAWER])
def test_check_env(env_id: str) -> None:
    env = gym.make(env_id)
    check_env(env.unwrapped, skip_render_check=True)
    env.close()


@pytest.mark.parametrize("env_id", [VALVE, DRAWER])
def test_same_seed_same_trajectory(env_id: str) -> None:
    first, second = _rollout(env_id, 3, 40), _rollout(env_id, 3, 40)
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a, b)
    other = _rollout(env_id, 4, 40)
    assert not np.array_equal(first[0], other[0])


def test_episode_ends_and_info() -> None:
    env = gym.make(VALVE)
    _, info = env.reset(seed=0)
    assert set(info) >= {"success", "joint_targets_rad"}
    length = env.unwrapped.task.episode_length_steps
    hold = env.unwrapped.task.targets_to_action(info["joint_targets_rad"],
                                                info["joint_targets_rad"])
    for step in range(1, length + 1):
        _, reward, terminated, truncated, info = env.step(hold)
        assert reward == -1.0 and not terminated and not info["success"]
        assert truncated == (step == length)


def test_gate_decides_what_the_actuators_get() -> None:
    """A gate that holds the first measured pose keeps fingers and valve still, whatever the
    policy asks for."""
    calls = []

    def hold(targets: np.ndarray, state: dict[str, np.ndarray], time_s: float) -> np.ndarray:
        assert set(state) == {"position_rad", "velocity_rad_s", "effort_a"}
        calls.append((targets.copy(), time_s, state["position_rad"].copy()))
        return calls[0][2]

    env = gym.make(VALVE, command_gate=hold)
    obs, info = env.reset(seed=1)
    expert = make_expert(env)
    start_angle, joints0 = info["object_position"], env.unwrapped.twin.joint_positions_rad()
    for _ in range(20):
        obs, *_ , info = env.step(expert.act(obs))
    assert len(calls) == 20 and calls[1][1] > calls[0][1]
    assert abs(info["object_position"] - start_angle) < 1e-3
    np.testing.assert_allclose(env.unwrapped.twin.joint_positions_rad(), joints0, atol=0.02)
    # the ungated expert does move them
    env = gym.make(VALVE)
    obs, info = env.reset(seed=1)
    expert = make_expert(env)
    for _ in range(20):
        obs, *_, info = env.step(expert.act(obs))
    assert abs(info["object_position"] - start_angle) > 0.1


def test_valve_expert_success_rates() -> None:
    env = gym.make(VALVE)
    # noise 1.7 of the velocity step (0.15 rad): the 1.0 of a relative step of 0.25 rad
    clean, noisy = make_expert(env, 0.0, seed=0), make_expert(env, 1.7, seed=0)
    clean_runs = [run_episode(env, clean, seed) for seed in range(20)]
    noisy_runs = [run_episode(env, noisy, seed) for seed in range(12)]
    clean_rate = np.mean([e["info"]["success"] for e in clean_runs])
    noisy_rate = np.mean([e["info"]["success"] for e in noisy_runs])
    assert clean_rate >= 0.9
    assert noisy_rate < clean_rate - 0.2
    assert max(len(e["reward"]) for e in clean_runs) <= 80


def test_collect_format() -> None:
    episodes = collect(VALVE, 2, noise_std=0.1, seed=5)
    assert len(episodes) == 2 and episodes[1]["info"]["seed"] == 6
    ep = episodes[0]
    n = len(ep["reward"])
    assert ep["observation"].shape == ep["next_observation"].shape == (n, 49)
    assert ep["action"].shape == (n, 9) and ep["action"].dtype == np.float32
    assert ep["terminated"].dtype == bool and ep["truncated"].dtype == bool
    assert np.all(np.abs(ep["action"]) <= 1.0)
    np.testing.assert_array_equal(ep["observation"][1:], ep["next_observation"][:-1])
    assert ep["terminated"][-1] or ep["truncated"][-1]
    assert ep["info"]["success"] == bool(ep["terminated"][-1])


def test_drawer_expert_success_rates() -> None:
    env = gym.make(DRAWER)
    clean, noisy = make_expert(env, 0.0, seed=0), make_expert(env, 0.1, seed=0)
    clean_rate = np.mean([run_episode(env, clean, s)["info"]["success"] for s in range(10)])
    noisy_rate = np.mean([run_episode(env, noisy, s)["info"]["success"] for s in range(6)])
    assert clean_rate >= 0.9 and noisy_rate < clean_rate - 0.2


@pytest.mark.parametrize("env_id", [VALVE, DRAWER])
def test_image_observations(env_id: str) -> None:
    env = gym.make(env_id, obs_type="state+rgb", image_size=(96, 72), render_mode="rgb_array")
    try:
        obs, _ = env.reset(seed=0)
    except Exception as err:  # no EGL/OSMesa on this machine
        pytest.skip(f"no headless GL backend: {err}")
    assert env.observation_space.contains(obs)
    assert obs["rgb"].shape == (72, 96, 3) and obs["rgb"].std() > 5
    obs, *_ = env.step(env.action_space.sample())
    assert env.observation_space.contains(obs)
    assert env.render().shape == (480, 640, 3)
    env.close()


@pytest.mark.parametrize("env_id", [VALVE, DRAWER])
@pytest.mark.parametrize("mode", ["relative", "velocity"])
def test_expert_in_the_action_modes_that_step_from_the_command(env_id: str, mode: str) -> None:
    """Relative actions move the env's commanded targets; an expert that planned from its own
    idea of them (the measured pose at reset) failed most valve episodes through the gate."""
    robot = "dclaw" if env_id == VALVE else "arm6"
    gate = SupervisorGate(load_robot(robot))
    env = gym.make(env_id, config={"action_mode": mode}, command_gate=gate)
    assert env.unwrapped.task.actions.mode == mode
    expert = make_expert(env, 0.0, seed=0)
    successes = []
    for seed in range(8):
        gate.reset()
        successes.append(run_episode(env, expert, seed)["info"]["success"])
    assert np.mean(successes) >= 0.85


def test_task_config_as_mapping_is_validated() -> None:
    with pytest.raises(ConfigError, match=r"env_kwargs: config\.action_mod: unknown key"):
        gym.make(VALVE, config={"action_mod": "relative"})
    with pytest.raises(ConfigError, match=r"config\.action_mode"):
        gym.make(VALVE, config={"action_mode": "sideways"})
