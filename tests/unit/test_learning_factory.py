"""The factory builds the config's replay from recorded data; one train step serves both replays."""

from __future__ import annotations

import numpy as np
import pytest

from robot_rl.learning import AWACConfig, BalancedReplay, ReplayBuffer
from robot_rl.learning.factory import batch_from_steps, make_replay, new_agent, train_step

pytestmark = pytest.mark.usefixtures("one_torch_thread")
SMALL = dict(actor_hidden_sizes=(16, 16), critic_hidden_sizes=(16, 16), batch_size=32)


def steps(n: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    obs = rng.normal(size=(n, 4)).astype(np.float32)
    return {"observation": obs, "action": rng.uniform(-1, 1, (n, 2)).astype(np.float32),
            "reward": -np.ones(n, np.float32), "next_observation": obs + 0.1,
            "terminated": np.arange(n) == n - 1, "truncated": np.zeros(n, bool)}


def test_done_is_termination_never_truncation() -> None:
    data = steps(5, 0)
    data["truncated"][2] = True
    assert batch_from_steps(data)["done"].tolist() == [0, 0, 0, 0, 1]


def test_uniform_replay_holds_the_dataset_and_room_for_online_data() -> None:
    replay = make_replay(AWACConfig(**SMALL), steps(50, 0), online_capacity=20, seed=0)
    assert isinstance(replay, ReplayBuffer) and len(replay) == 50 and replay.capacity == 70


def test_balanced_replay_learns_its_density_ratio_in_the_train_step() -> None:
    config = AWACConfig(**SMALL, replay="balanced")
    offline = steps(200, 0)
    replay = make_replay(config, offline, online_capacity=100, seed=0)
    assert isinstance(replay, BalancedReplay)
    replay.add_episode(batch_from_steps(steps(50, 1)))
    agent = new_agent(config, offline, seed=0)
    rng = np.random.default_rng(0)
    before = [p.detach().clone() for p in replay.ratio_net.parameters()]
    metrics = train_step(agent, replay, config.batch_size, rng)
    after = list(replay.ratio_net.parameters())
    assert agent.num_updates == 1 and "critic_loss" in dict(metrics)
    assert any(not np.allclose(b.numpy(), a.detach().numpy()) for b, a in zip(before, after))
