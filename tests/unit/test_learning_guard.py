"""Collapse guard: the fallback rule falls back and recovers; the conservative term decays."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from robot_rl.learning.awac import AWAC
from robot_rl.learning.config import AWACConfig, CollapseGuardConfig
from robot_rl.learning.guard import CollapseGuard
from robot_rl.learning.networks import GaussianPolicy

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_fallback_rule_falls_back_and_recovers() -> None:
    guard = CollapseGuard(CollapseGuardConfig(fallback=True, fallback_margin=0.1,
                                              fallback_window=3))
    online = GaussianPolicy(4, 2, (8,))
    guard.record_offline_success(0.8)
    assert guard.acting_policy(online) is online  # not armed yet
    guard.arm(online)
    assert guard.acting_policy(online) is online  # no online evidence yet
    guard.record_online_success(0.2)  # collapse
    assert guard.use_snapshot() and guard.acting_policy(online) is guard.snapshot
    guard.record_online_success(0.9)
    guard.record_online_success(0.9)  # mean(0.2, 0.9, 0.9) = 0.67 < 0.8 - 0.1
    assert guard.use_snapshot()
    guard.record_online_success(0.9)  # window of 3: mean 0.9
    assert not guard.use_snapshot() and guard.acting_policy(online) is online
    off = CollapseGuard(CollapseGuardConfig(fallback=False))
    off.arm(online)
    off.record_offline_success(1.0)
    off.record_online_success(0.0)
    assert off.acting_policy(online) is online


def _bc_batch() -> dict[str, torch.Tensor]:
    obs = torch.randn(64, 3, generator=torch.Generator().manual_seed(0))
    return {"obs": obs, "action": torch.full((64, 1), 0.9), "reward": torch.zeros(64),
            "next_obs": obs, "done": torch.ones(64)}


def test_agent_acts_with_the_snapshot_while_fallen_back() -> None:
    config = AWACConfig(actor_hidden_sizes=(16,), critic_hidden_sizes=(16,), actor_lr=1e-2,
                        actor_objective="bc", collapse_guard=CollapseGuardConfig(fallback=True))
    agent = AWAC(3, 1, config)
    obs = np.zeros((2, 3))
    offline_action = agent.act(obs, deterministic=True)
    agent.start_online()
    for _ in range(30):
        agent.update(_bc_batch())
    online_action = agent.act(obs, deterministic=True)
    assert not np.allclose(online_action, offline_action, atol=1e-3)
    agent.guard.record_offline_success(1.0)
    agent.guard.record_online_success(0.0)
    np.testing.assert_allclose(agent.act(obs, deterministic=True), offline_action, atol=1e-6)
    # Evaluations that feed the rule see the policy being fine-tuned, not its stand-in.
    np.testing.assert_allclose(agent.act(obs, deterministic=True, fallback=False), online_action,
                               atol=1e-6)


def test_conservative_weight_decays_linearly() -> None:
    guard = CollapseGuard(CollapseGuardConfig(conservative=True, conservative_weight=2.0,
                                              conservative_decay_updates=10))
    assert guard.conservative_weight() == 0.0  # not armed: offline updates are untouched
    guard.arm(GaussianPolicy(3, 1, (8,)))
    weights = []
    for _ in range(12):
        weights.append(guard.conservative_weight())
        guard.step()
    assert weights[0] == pytest.approx(2.0) and weights[5] == pytest.approx(1.0)
    assert weights[10] == 0.0 and weights[11] == 0.0


@pytest.mark.parametrize("term", ["kl", "logp"])
def test_conservative_term_holds_the_actor_near_the_snapshot(term: str) -> None:
    def train(conservative: bool) -> float:
        guard = CollapseGuardConfig(conservative=conservative, conservative_term=term,
                                    conservative_weight=5.0, conservative_decay_updates=10_000)
        config = AWACConfig(actor_hidden_sizes=(16,), critic_hidden_sizes=(16,), actor_lr=1e-2,
                            actor_objective="bc", collapse_guard=guard)
        agent = AWAC(3, 1, config, seed=0)
        start = agent.act(np.zeros(3), deterministic=True)
        agent.start_online()
        for _ in range(60):
            metrics = agent.update(_bc_batch())
        assert (metrics["guard_weight"] > 0) == conservative
        return float(np.abs(agent.act(np.zeros(3), deterministic=True) - start)[0])

    free, held = train(False), train(True)
    assert free > 0.3  # BC alone walks toward the data's 0.9
    assert held < 0.6 * free
