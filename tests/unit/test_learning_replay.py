"""Replay: the uniform ring buffer, the sum tree, and balanced replay's priorities."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from robot_rl.learning.config import BalancedReplayConfig
from robot_rl.learning.replay import BalancedReplay, ReplayBuffer, SumTree

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _transitions(n: int, obs_dim: int, act_dim: int, start: float = 0.0) -> dict[str, np.ndarray]:
    obs = start + np.arange(n * obs_dim, dtype=np.float32).reshape(n, obs_dim)
    return {"obs": obs, "action": np.full((n, act_dim), 0.5, np.float32),
            "reward": np.arange(n, dtype=np.float32), "next_obs": obs + 1.0,
            "done": (np.arange(n) == n - 1).astype(np.float32)}


def test_buffer_single_batch_episode_and_wraparound() -> None:
    buffer = ReplayBuffer(obs_dim=2, act_dim=1, capacity=5)
    buffer.add(np.array([1.0, 2.0]), np.array([0.1]), 1.5, np.array([3.0, 4.0]), 0.0)
    assert len(buffer) == 1 and buffer.data["reward"][0] == np.float32(1.5)
    buffer.add_episode(_transitions(6, 2, 1, start=100.0))  # 7 transitions in 5 slots
    assert len(buffer) == 5 and buffer.position == 2
    # the newest five survive: rewards 1..5 of the episode
    assert sorted(buffer.data["reward"].tolist()) == [1.0, 2.0, 3.0, 4.0, 5.0]
    with pytest.raises(KeyError, match="missing keys"):
        buffer.add_episode({"obs": np.zeros((1, 2))})


@pytest.mark.parametrize("generator", [np.random.default_rng(0), torch.Generator().manual_seed(0)])
def test_buffer_sample_is_vectorised_float32_and_consistent(generator) -> None:
    buffer = ReplayBuffer(obs_dim=3, act_dim=2, capacity=100)
    buffer.add_episode(_transitions(40, 3, 2))
    batch = buffer.sample(64, generator)
    assert batch["obs"].shape == (64, 3) and batch["action"].shape == (64, 2)
    assert batch["reward"].shape == (64,) and batch["done"].shape == (64,)
    assert all(v.dtype == torch.float32 for v in batch.values())
    # rows stay aligned: next_obs = obs + 1 and reward = obs[0] / 3 for these transitions
    torch.testing.assert_close(batch["next_obs"], batch["obs"] + 1.0)
    torch.testing.assert_close(batch["reward"], batch["obs"][:, 0] / 3.0)


def test_buffer_state_dict_round_trip() -> None:
    buffer = ReplayBuffer(obs_dim=2, act_dim=1, capacity=8)
    buffer.add_episode(_transitions(11, 2, 1))
    other = ReplayBuffer(obs_dim=2, act_dim=1, capacity=8)
    other.load_state_dict(buffer.state_dict())
    assert (other.size, other.position) == (buffer.size, buffer.position)
    for key in buffer.data:
        np.testing.assert_array_equal(other.data[key], buffer.data[key])


def test_sum_tree_samples_in_proportion_to_priority() -> None:
    tree = SumTree(5)  # not a power of two
    tree.set(np.arange(5), np.array([1.0, 2.0, 3.0, 4.0, 0.0]))
    assert tree.total == pytest.approx(10.0)
    rng = np.random.default_rng(1)
    idx = tree.find(rng.random(200_000) * tree.total)
    share = np.bincount(idx, minlength=5) / idx.size
    np.testing.assert_allclose(share, [0.1, 0.2, 0.3, 0.4, 0.0], atol=0.01)
    tree.set(np.array([4, 4]), np.array([5.0, 10.0]))  # repeated index: last write wins
    assert tree.total == pytest.approx(20.0)


def _two_region_data(n: int, centre: float, rng: np.random.Generator) -> dict[str, np.ndarray]:
    obs = rng.normal(0.0, 0.3, (n, 2)).astype(np.float32)
    obs[:, 0] += centre
    return {"obs": obs, "action": np.zeros((n, 1), np.float32), "reward": np.zeros(n, np.float32),
            "next_obs": obs, "done": np.zeros(n, np.float32)}


def test_new_online_samples_get_a_high_share_at_first() -> None:
    rng = np.random.default_rng(0)
    replay = BalancedReplay(2, 1, offline_capacity=4000, online_capacity=1000,
                            config=BalancedReplayConfig(hidden_sizes=(16,)))
    replay.add_offline_episode(_two_region_data(4000, -2.0, rng))
    replay.add_episode(_two_region_data(8, +2.0, rng))  # 8 online vs 4000 offline transitions
    assert replay.online_share() > 0.5
    batch = replay.sample(256, rng)
    assert float(batch["is_online"].mean()) > 0.5
    online_rows = batch["obs"][batch["is_online"] > 0]
    assert torch.all(online_rows[:, 0] > 0.5)  # the online rows really come from the online set


def test_priorities_follow_the_density_ratio() -> None:
    """Offline data: 90% in region A (x ~ -2), 10% in region B (x ~ +2); online data in B only.
    The learned ratio d_online/d_offline is high in B, so offline B samples get replayed more."""
    rng = np.random.default_rng(0)
    config = BalancedReplayConfig(hidden_sizes=(32, 32), lr=3e-3, batch_size=128)
    replay = BalancedReplay(2, 1, offline_capacity=2000, online_capacity=500, config=config)
    offline = {k: np.concatenate([a, b]) for (k, a), b in zip(
        _two_region_data(1800, -2.0, rng).items(), _two_region_data(200, +2.0, rng).values())}
    replay.add_offline_episode(offline)
    replay.add_episode(_two_region_data(500, +2.0, rng))
    for _ in range(150):
        replay.sample(128, rng)
        metrics = replay.update_density(rng)
    assert metrics["density_w_online"] > metrics["density_w_offline"]
    replay.refresh_all()
    offline_p = replay.tree.leaves()[:2000]
    in_b = offline["obs"][:, 0] > 0
    assert offline_p[in_b].mean() > 3.0 * offline_p[~in_b].mean()
    cfg = replay.config
    assert offline_p.min() >= cfg.priority_min and offline_p.max() <= cfg.priority_max
    # sampling follows: offline B rows are 10% of the offline data but much more of its samples
    batch = replay.sample(2048, rng)
    offline_rows = batch["obs"][batch["is_online"] == 0]
    assert float((offline_rows[:, 0] > 0).float().mean()) > 0.3


def test_balanced_replay_state_dict_round_trip() -> None:
    rng = np.random.default_rng(0)
    cfg = BalancedReplayConfig(hidden_sizes=(8,))
    replay = BalancedReplay(2, 1, 100, 50, cfg)
    replay.add_offline_episode(_two_region_data(60, -2.0, rng))
    replay.add_episode(_two_region_data(10, 2.0, rng))
    replay.sample(16, rng)
    replay.update_density(rng)
    other = BalancedReplay(2, 1, 100, 50, cfg, seed=5)
    other.load_state_dict(replay.state_dict())
    np.testing.assert_array_equal(other.tree.leaves(), replay.tree.leaves())
    assert other.tree.total == pytest.approx(replay.tree.total)
    assert len(other) == len(replay) == 70
