"""Networks: the batched ensemble equals independent MLPs; policy densities and bounds."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from robot_rl.learning.networks import (
    MLP,
    EnsembleMLP,
    GaussianPolicy,
    QEnsemble,
    aggregate_q,
    gaussian_kl,
    gaussian_log_prob,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _member_as_mlp(ensemble: EnsembleMLP, index: int, in_dim: int, out_dim: int,
                   hidden: tuple[int, ...]) -> MLP:
    mlp = MLP(in_dim, out_dim, hidden)
    for layer, (w, b) in zip(mlp.layers, ensemble.member_state(index)):
        assert isinstance(layer, nn.Linear)
        with torch.no_grad():
            layer.weight.copy_(w)
            layer.bias.copy_(b)
    return mlp


@pytest.mark.parametrize("out_dim", [3, 1])  # 1: the multiply-and-sum head of a Q-ensemble
def test_ensemble_equals_independent_mlps_with_the_same_weights(out_dim: int) -> None:
    torch.manual_seed(0)
    in_dim, hidden, n = 7, (16, 12), 4
    ensemble = EnsembleMLP(in_dim, out_dim, hidden, n)
    mlps = [_member_as_mlp(ensemble, i, in_dim, out_dim, hidden) for i in range(n)]
    shared = torch.randn(10, in_dim)
    out = ensemble(shared)
    assert out.shape == (n, 10, out_dim)
    per_member = torch.randn(n, 10, in_dim)
    out_own = ensemble(per_member)
    for i, mlp in enumerate(mlps):
        torch.testing.assert_close(out[i], mlp(shared), rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(out_own[i], mlp(per_member[i]), rtol=1e-5, atol=1e-6)
    # members are different networks, not copies
    assert not torch.allclose(out[0], out[1])
    # and so are the gradients, layer by layer (nn.Linear stores weights transposed)
    out.pow(2).sum().backward()
    for i, mlp in enumerate(mlps):
        mlp(shared).pow(2).sum().backward()
        for layer, w, b in zip(mlp.layers, ensemble.weights, ensemble.biases):
            torch.testing.assert_close(w.grad[i], layer.weight.grad.T, rtol=1e-4, atol=1e-6)
            torch.testing.assert_close(b.grad[i, 0], layer.bias.grad, rtol=1e-4, atol=1e-6)


def test_ensemble_gradients_stay_within_their_member() -> None:
    torch.manual_seed(1)
    ensemble = EnsembleMLP(5, 1, (8,), 3)
    ensemble(torch.randn(6, 5))[1].sum().backward()
    for w in ensemble.weights:
        assert w.grad is not None
        assert torch.count_nonzero(w.grad[0]) == 0 and torch.count_nonzero(w.grad[2]) == 0
        assert torch.count_nonzero(w.grad[1]) > 0


def test_q_ensemble_shapes_and_clamp() -> None:
    q = QEnsemble(obs_dim=39, act_dim=9, hidden_sizes=(32, 32), n_critics=5, q_clamp_max=0.0)
    with torch.no_grad():
        q.net.biases[-1].fill_(2.0)  # every member would output about +2
    values = q(torch.randn(11, 39), torch.rand(11, 9) * 2 - 1)
    assert values.shape == (5, 11)
    assert torch.all(values <= 0.0)


def test_aggregations() -> None:
    q = torch.tensor([[1.0, -2.0], [3.0, 0.0]])
    torch.testing.assert_close(aggregate_q(q, "min", 1.0), torch.tensor([1.0, -2.0]))
    # mean - 0.5 * population std: mean (2, -1), std (1, 1)
    torch.testing.assert_close(aggregate_q(q, "mean_minus_std", 0.5), torch.tensor([1.5, -1.5]))
    with pytest.raises(ValueError, match="critic_aggregation"):
        aggregate_q(q, "max", 1.0)


def test_policy_shapes_bounds_and_log_std_range() -> None:
    policy = GaussianPolicy(39, 9, (32, 32), (-6.0, 0.0))
    with torch.no_grad():
        policy.trunk.layers[-1].bias.fill_(50.0)  # saturate the mean
        policy.log_std_logits.fill_(100.0)
    mean, log_std = policy(torch.randn(4, 39))
    assert mean.shape == (4, 9) and log_std.shape == (9,)
    assert torch.all(mean.abs() <= 1.0)
    assert torch.all(log_std <= 0.0) and torch.all(log_std >= -6.0)


def test_log_prob_matches_torch_and_is_finite_at_the_bounds() -> None:
    mean = torch.tensor([[0.999, -0.5], [0.0, 0.2]])
    log_std = torch.tensor([-6.0, -1.0])
    action = torch.tensor([[1.0, -1.0], [-1.0, 1.0]])
    ours = gaussian_log_prob(action, mean, log_std)
    ref = torch.distributions.Normal(mean, log_std.exp()).log_prob(action).sum(-1)
    torch.testing.assert_close(ours, ref)
    assert torch.all(torch.isfinite(ours))


def test_kl_matches_torch_and_is_zero_for_identical() -> None:
    mp, lp = torch.randn(5, 3).tanh(), torch.tensor([-1.0, -2.0, -0.5])
    mq, lq = torch.randn(5, 3).tanh(), torch.tensor([-0.5, -1.0, -3.0])
    ref = torch.distributions.kl_divergence(
        torch.distributions.Normal(mp, lp.exp()), torch.distributions.Normal(mq, lq.exp())
    ).sum(-1)
    torch.testing.assert_close(gaussian_kl(mp, lp, mq, lq), ref)
    torch.testing.assert_close(gaussian_kl(mp, lp, mp, lp), torch.zeros(5))
    assert math.isfinite(float(gaussian_kl(mp, lp, mq, lq).sum()))
