"""AWAC: the weight formula, the TD target, and behaviour on a one-step bandit."""

from __future__ import annotations

import dataclasses
import math
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch

from robot_rl.learning.awac import AWAC, LazyMetrics, awr_weights
from robot_rl.learning.checkpoint import load_checkpoint, restore_agent, save_checkpoint
from robot_rl.learning.config import AWACConfig, config_from_dict, config_to_dict
from robot_rl.learning.normalizer import Normalizer
from robot_rl.learning.replay import ReplayBuffer

pytestmark = pytest.mark.usefixtures("one_torch_thread")


SMALL = dict(actor_hidden_sizes=(32, 32), critic_hidden_sizes=(32, 32), batch_size=64)


def random_batch(n: int, obs_dim: int, act_dim: int, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {"obs": torch.randn(n, obs_dim, generator=g),
            "action": torch.rand(n, act_dim, generator=g) * 2 - 1,
            "reward": -torch.rand(n, generator=g),
            "next_obs": torch.randn(n, obs_dim, generator=g),
            "done": (torch.rand(n, generator=g) < 0.1).float()}


def test_awr_weights_hand_computed() -> None:
    beta = 0.5
    adv = torch.tensor([0.0, beta * math.log(2.0), beta * math.log(3.0)])  # exp(A/beta) = 1, 2, 3
    # softmax = (1, 2, 3) / 6; times B = 3 -> (0.5, 1.0, 1.5)
    torch.testing.assert_close(awr_weights(adv, beta, 100.0), torch.tensor([0.5, 1.0, 1.5]))
    torch.testing.assert_close(awr_weights(adv, beta, 1.2), torch.tensor([0.5, 1.0, 1.2]))
    torch.testing.assert_close(awr_weights(adv, beta, 2.5, normalize=False),
                               torch.tensor([1.0, 2.0, 2.5]))


@pytest.mark.parametrize("how, k, expected_next_q", [("min", 1.0, -3.0),
                                                    ("mean_minus_std", 0.5, -2.5)])
def test_td_target_hand_built(how: str, k: float, expected_next_q: float) -> None:
    config = AWACConfig(**SMALL, gamma=0.9, critic_aggregation=how, std_coef=k)
    agent = AWAC(3, 2, config)
    with torch.no_grad():  # target critics output constants: member 0 -> -1, member 1 -> -3
        for p in agent.critic_target.net.weights:
            p.zero_()
        agent.critic_target.net.biases[-1][0].fill_(-1.0)
        agent.critic_target.net.biases[-1][1].fill_(-3.0)
    reward, done = torch.tensor([1.0, 2.0]), torch.tensor([0.0, 1.0])
    y = agent.td_target(reward, torch.randn(2, 3), done)
    # y = r + gamma * (1 - done) * agg Q: (1 + 0.9 * q, 2 + 0)
    torch.testing.assert_close(y, torch.tensor([1.0 + 0.9 * expected_next_q, 2.0]))


def _bandit_buffer(n: int = 512) -> ReplayBuffer:
    """One step, one state; half the data takes a = +0.8 (reward 1), half a = -0.8 (reward 0)."""
    buffer = ReplayBuffer(obs_dim=2, act_dim=1, capacity=n)
    good = np.arange(n) % 2 == 0
    action = np.where(good, 0.8, -0.8).reshape(n, 1)
    obs = np.tile([0.3, -0.2], (n, 1))
    buffer.add(obs, action, good.astype(np.float32), obs, np.ones(n))
    return buffer


def _train_bandit(objective: str, updates: int = 200) -> float:
    config = AWACConfig(actor_hidden_sizes=(32, 32), critic_hidden_sizes=(32, 32),
                        batch_size=128, actor_lr=3e-3, critic_lr=3e-3, actor_objective=objective)
    agent = AWAC(2, 1, config, seed=3)
    buffer, rng = _bandit_buffer(), np.random.default_rng(0)
    for _ in range(updates):
        agent.update(buffer.sample(128, rng))
    return float(agent.act(np.array([0.3, -0.2]), deterministic=True)[0])


def test_awac_prefers_the_high_return_action_while_bc_averages() -> None:
    awac_mean, bc_mean = _train_bandit("awr"), _train_bandit("bc")
    # AWR: mean weighted by exp(A / 0.5); A(good) - A(bad) ~ 1 -> weighted mean ~ 0.6
    assert awac_mean > 0.4, awac_mean
    assert abs(bc_mean) < 0.15, bc_mean


def test_update_metrics_act_shapes_and_normaliser() -> None:
    agent = AWAC(6, 3, AWACConfig(**SMALL))
    agent.set_normalizer(Normalizer.from_data(np.random.default_rng(0).normal(5, 2, (100, 6))))
    metrics = agent.update(random_batch(64, 6, 3))
    assert isinstance(metrics, LazyMetrics)
    assert {"critic_loss", "actor_loss", "q_mean", "adv_weight_mean", "adv_weight_max",
            "adv_weight_ess_frac", "log_std_mean"} <= set(metrics)
    assert all(math.isfinite(v) for v in dict(metrics).values())
    assert metrics["adv_weight_mean"] == pytest.approx(1.0, abs=1e-5)  # softmax * B, no clip hit
    assert 0.0 < metrics["adv_weight_ess_frac"] <= 1.0 + 1e-6
    single = agent.act(np.zeros(6), deterministic=False)
    batch = agent.act(np.zeros((5, 6)), deterministic=True)
    assert single.shape == (3,) and batch.shape == (5, 3)
    assert np.all(np.abs(batch) <= 1.0) and np.all(np.abs(single) <= 1.0)
    assert agent.num_updates == 1


@pytest.mark.parametrize("overrides", [
    {"actor_objective": "sac"},
    {"actor_objective": "sac", "sac_learn_alpha": False},
    {"critic_aggregation": "mean_minus_std", "n_critics": 5, "q_clamp_max": 0.0},
    {"matmul_precision": "bf16"},
])
def test_variants_update_and_stay_finite(overrides: dict) -> None:
    agent = AWAC(6, 3, AWACConfig(**SMALL, **overrides))
    alpha0 = float(agent.log_alpha.detach().exp())
    for i in range(3):
        metrics = agent.update(random_batch(64, 6, 3, seed=i))
    assert all(math.isfinite(v) for v in dict(metrics).values())
    learned = overrides.get("actor_objective") == "sac" and overrides.get("sac_learn_alpha", True)
    assert (float(agent.log_alpha.detach().exp()) != alpha0) == learned
    if overrides.get("q_clamp_max") == 0.0:
        assert metrics["q_mean"] <= 0.0


def test_config_round_trips_through_a_plain_dict() -> None:
    config = AWACConfig(beta=0.3, critic_hidden_sizes=(64, 64, 64), replay="balanced")
    plain = config_to_dict(config)
    assert plain["critic_hidden_sizes"] == [64, 64, 64]
    assert config_from_dict(AWACConfig, plain) == config
    with pytest.raises(ValueError, match="log_std_range"):
        AWACConfig(log_std_range=(0.0, -6.0))


def _assert_same_update(got: dict[str, float], want: dict[str, float]) -> None:
    assert set(got) == set(want)
    for key in want:
        assert got[key] == pytest.approx(want[key], rel=1e-4, abs=1e-6), key


@pytest.mark.slow  # torch.compile: about 20-30 s of compilation on 2 cores
@pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated:DeprecationWarning")
def test_compiled_update_matches_eager_from_a_thread_and_checkpoints(tmp_path: Path) -> None:
    """compile=True computes what eager computes (rounding aside), also when its first update
    (the compilation) runs in a worker thread as in the background trainer; its checkpoint loads
    with weights_only=True into an eager agent, which continues identically."""
    config = AWACConfig(actor_hidden_sizes=(16,), critic_hidden_sizes=(16,), batch_size=32)
    eager = AWAC(6, 3, config, seed=5)
    compiled = AWAC(6, 3, dataclasses.replace(config, compile=True), seed=5)
    batches = [random_batch(32, 6, 3, seed=i) for i in range(4)]

    def train(agent: AWAC) -> list[dict[str, float]]:
        return [dict(agent.update(b)) for b in batches[:3]]

    with ThreadPoolExecutor(max_workers=1) as pool:
        compiled_metrics = pool.submit(train, compiled).result()
    for got, want in zip(compiled_metrics, train(eager)):
        _assert_same_update(got, want)
    for got, want in zip(compiled.state_dict()["actor"].values(),
                         eager.state_dict()["actor"].values()):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-6)

    path = save_checkpoint(tmp_path / "compiled.pt", compiled, None,
                           config_to_dict(compiled.config), {"updates": 3}, action_mode="velocity")
    restored = AWAC(6, 3, config, seed=0)
    restore_agent(load_checkpoint(path), restored)
    _assert_same_update(dict(restored.update(batches[3])), dict(compiled.update(batches[3])))


@pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated:DeprecationWarning")
def test_a_failed_compilation_warns_and_trains_on_uncompiled(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """No working C++ compiler (here: inductor pointed at one that does not exist, with no cached
    kernels to fall back on): the first update warns once, naming the cause, and every update
    computes what an uncompiled agent computes."""
    import torch._dynamo
    import torch._inductor.config as inductor

    torch._dynamo.reset()  # no graph compiled by an earlier test of this process
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "inductor"))
    monkeypatch.setattr(inductor, "fx_graph_cache", False)
    monkeypatch.setattr(inductor.cpp, "cxx", (None, str(tmp_path / "no-such-c++")))
    config = AWACConfig(actor_hidden_sizes=(8,), critic_hidden_sizes=(8,), batch_size=16)
    eager = AWAC(5, 2, config, seed=1)
    failing = AWAC(5, 2, dataclasses.replace(config, compile=True), seed=1)
    batches = [random_batch(16, 5, 2, seed=i) for i in range(3)]
    with caplog.at_level("WARNING", logger="robot_rl.learning.awac"):
        for batch in batches:
            _assert_same_update(dict(failing.update(batch)), dict(eager.update(batch)))
    warnings = [r.getMessage() for r in caplog.records if "awac.compile" in r.getMessage()]
    assert len(warnings) == 1 and "no-such-c++" in warnings[0], warnings
    torch._dynamo.reset()
