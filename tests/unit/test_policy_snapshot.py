"""PolicySnapshot.act: the numpy forward pass equals the torch policy's, mean and sampled."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from robot_rl.learning.awac import AWAC
from robot_rl.learning.background import PolicySnapshot
from robot_rl.learning.config import AWACConfig
from robot_rl.learning.networks import GaussianPolicy
from robot_rl.learning.normalizer import Normalizer

OBS, ACT = 32, 9
# float32 sums of 256 products in another order than torch's GEMM differ by a few 1e-6
ATOL = 1e-5


def trained_agent(hidden: tuple[int, ...], normalize: bool = True) -> AWAC:
    """An agent a few updates in, with a non-trivial normaliser and a policy whose log-std and
    output layer moved away from their initial values."""
    config = AWACConfig(actor_hidden_sizes=hidden, critic_hidden_sizes=(32, 32), batch_size=64,
                        normalize_obs=normalize)
    agent = AWAC(OBS, ACT, config, seed=3)
    rng = np.random.default_rng(0)
    agent.set_normalizer(Normalizer(rng.normal(size=OBS), rng.uniform(0.1, 3.0, OBS)))
    with torch.no_grad():
        agent.actor.trunk.layers[-1].weight.normal_(0.0, 0.3)  # actions away from tanh's middle
        agent.actor.log_std_logits.uniform_(-2.0, 2.0)
    generator = torch.Generator().manual_seed(0)
    for _ in range(3):
        agent.update({"obs": torch.randn(64, OBS, generator=generator),
                      "action": torch.rand(64, ACT, generator=generator) * 2 - 1,
                      "reward": -torch.ones(64), "done": torch.zeros(64),
                      "next_obs": torch.randn(64, OBS, generator=generator)})
    return agent


def torch_act(snapshot: PolicySnapshot, obs: np.ndarray,
              rng: np.random.Generator | None) -> np.ndarray:
    """``act``'s semantics written with the torch modules (the reference)."""
    x = torch.as_tensor(obs, dtype=torch.float32).reshape(1, -1)
    with torch.no_grad():
        if snapshot.normalizer is not None:
            x = snapshot.normalizer.normalize(x)
        mean, log_std = snapshot.policy(x)
    action = mean[0].numpy().astype(np.float64)
    if rng is not None:
        action = action + np.exp(log_std.numpy().astype(np.float64)) * \
            rng.standard_normal(action.shape)
    return np.clip(action, -1.0, 1.0).astype(np.float32)


@pytest.mark.parametrize(("hidden", "normalize"), [((256, 256), True), ((64, 64, 64), True),
                                                   ((16,), False)])
def test_numpy_forward_equals_torch(hidden: tuple[int, ...], normalize: bool) -> None:
    snapshot = PolicySnapshot.from_agent(trained_agent(hidden, normalize))
    assert snapshot.uses_numpy
    assert (snapshot.normalizer is not None) == normalize
    observations = np.random.default_rng(1).normal(0.0, 3.0, size=(200, OBS)).astype(np.float32)
    means = np.array([snapshot.act(o) for o in observations])
    assert np.abs(means).max() > 0.5 and np.abs(means).min() > 0  # not a trivial policy
    np.testing.assert_allclose(means, [torch_act(snapshot, o, None) for o in observations],
                               rtol=0, atol=ATOL)
    # sampled: the same generator state gives the same noise, so the same clipped action
    sampled = np.array([snapshot.act(o, np.random.default_rng(i))
                        for i, o in enumerate(observations)])
    expected = np.array([torch_act(snapshot, o, np.random.default_rng(i))
                         for i, o in enumerate(observations)])
    np.testing.assert_allclose(sampled, expected, rtol=0, atol=ATOL)
    assert sampled.dtype == np.float32 and np.all(np.abs(sampled) <= 1.0)
    assert np.any(np.abs(sampled) == 1.0)  # some samples were clipped


def test_the_agent_acts_the_same() -> None:
    agent = trained_agent((64, 64))
    snapshot = PolicySnapshot.from_agent(agent)
    for obs in np.random.default_rng(2).normal(size=(20, OBS)).astype(np.float32):
        np.testing.assert_allclose(snapshot.act(obs), agent.act(obs, deterministic=True),
                                   atol=ATOL)


class _ShiftedPolicy(GaussianPolicy):
    """A policy whose forward differs from the plain structure the numpy pass mirrors."""

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean, log_std = super().forward(obs)
        return mean * 0.5, log_std


def test_another_structure_acts_through_torch() -> None:
    policy = _ShiftedPolicy(OBS, ACT, (16, 16))
    with torch.no_grad():
        policy.trunk.layers[-1].weight.normal_(0.0, 0.5)
    snapshot = PolicySnapshot(policy, None, version=1, hidden_sizes=(16, 16))
    assert not snapshot.uses_numpy
    obs = np.linspace(-1.0, 1.0, OBS).astype(np.float32)
    np.testing.assert_allclose(snapshot.act(obs), torch_act(snapshot, obs, None), atol=1e-7)


def test_wrong_observation_size_is_named() -> None:
    snapshot = PolicySnapshot.from_agent(trained_agent((16,)))
    with pytest.raises(ValueError, match=r"observation has 5 values, the policy expects 32"):
        snapshot.act(np.zeros(5, np.float32))
