"""robot_rl's AWAC against d3rlpy 2.8's on identical weights and batch: the same numbers, except
where the two projects differ, and each of those named here (docs/testing.md lists them).

A tiny robot_rl agent's weights are copied into d3rlpy's AWAC (same architecture: ReLU MLPs, a
policy N(tanh(f(s)), std) with a state-independent log-std sigmoid-mapped into [-6, 0], twin
critics on [s; a]). Settings aligned where both are settings: batch size, lambda (beta here),
discount, tau, learning rates; robot_rl's weight clip (100) and policy weight decay (1e-4), which
d3rlpy does not have, are turned off. The documented differences, and how each is handled:
- V(s) for the advantage: robot_rl (rlkit) Q(s, mu(s)); d3rlpy one action sampled from pi (its
  `n_action_samples`). Aligned by evaluating d3rlpy's sample at the mean (a patch of its sampler).
- update order: robot_rl computes both losses from the critic before the step (rlkit); d3rlpy
  steps the critic, then the actor against the stepped critic. Aligned by calling d3rlpy's own
  `update_actor` before its `update_critic`.
Found by this comparison, documented by neither project's docs:
- d3rlpy's actor loss is summed over the batch, robot_rl's averaged: its loss is B times robot_rl's,
  and Adam, invariant to that scale but for its eps, takes the same step.
- d3rlpy's AWAC inherits SAC's TD target: the next action tanh-squashed, tanh(mu + std eps) rather
  than clip(tanh(mu) + std eps), and an entropy term - alpha log pi(a'|s') with alpha = exp(0) = 1
  (AWAC's temperature parameter is a fixed dummy). The first test uses terminal transitions (no
  bootstrap, the target is r in both); the last one pins d3rlpy's target down to that formula.
"""

from __future__ import annotations

import math

import d3rlpy  # not skipped when missing: `make test` installs it (the Makefile's PEERS)
import pytest
import torch

from robot_rl.learning.awac import AWAC
from robot_rl.learning.config import AWACConfig

pytestmark = [pytest.mark.usefixtures("one_torch_thread"),
              pytest.mark.filterwarnings("ignore::DeprecationWarning"),
              pytest.mark.filterwarnings("ignore:Gym has been unmaintained")]

OBS, ACT, HIDDEN, BATCH = 3, 2, (8, 8), 16


def robot_rl_agent() -> AWAC:
    config = AWACConfig(actor_hidden_sizes=HIDDEN, critic_hidden_sizes=HIDDEN, batch_size=BATCH,
                        beta=0.3, gamma=0.99, tau=0.005, actor_lr=3e-4, critic_lr=3e-4,
                        max_weight=1e6, policy_weight_decay=0.0, n_critics=2)
    agent = AWAC(OBS, ACT, config, seed=4)
    g = torch.Generator().manual_seed(5)
    with torch.no_grad():
        # a log-std away from its initial midpoint, so it is copied for real; critic heads of
        # order 3 instead of rlkit's 3e-3 init, so that advantages (and their baseline) weigh
        for head in (agent.critic.net.weights[-1], agent.critic_target.net.weights[-1]):
            head.copy_(torch.rand(head.shape, generator=g.manual_seed(5)) * 6 - 3)
        agent.actor.log_std_logits.copy_(torch.tensor([0.7, -0.4]))
    return agent


def d3rlpy_copy(agent: AWAC):
    """d3rlpy's AWAC impl with the agent's weights (actor, critics, target critics)."""
    from d3rlpy.models.encoders import VectorEncoderFactory

    factory = VectorEncoderFactory(hidden_units=list(HIDDEN))
    c = agent.config
    algo = d3rlpy.algos.AWACConfig(
        batch_size=BATCH, lam=c.beta, gamma=c.gamma, tau=c.tau, actor_learning_rate=c.actor_lr,
        critic_learning_rate=c.critic_lr, n_critics=c.n_critics,
        actor_encoder_factory=factory, critic_encoder_factory=factory,
    ).create(device="cpu:0")
    algo.create_impl((OBS,), ACT)
    impl = algo._impl
    policy = impl._modules.policy
    with torch.no_grad():
        hidden_layers = [m for m in policy._encoder._layers if isinstance(m, torch.nn.Linear)]
        for theirs, ours in zip([*hidden_layers, policy._mu], agent.actor.trunk.layers):
            theirs.weight.copy_(ours.weight)
            theirs.bias.copy_(ours.bias)
        policy._logstd.copy_(agent.actor.log_std_logits.reshape(1, -1))
        for theirs_all, ours in ((impl._modules.q_funcs, agent.critic),
                                 (impl._modules.targ_q_funcs, agent.critic_target)):
            for n, q in enumerate(theirs_all):
                layers = [m for m in q._encoder._layers if isinstance(m, torch.nn.Linear)]
                for layer, (w, b) in zip([*layers, q._fc], ours.net.member_state(n)):
                    layer.weight.copy_(w)
                    layer.bias.copy_(b)
    return impl


def copy_back(impl, agent: AWAC) -> None:
    """The reverse of `d3rlpy_copy`: d3rlpy's weights into a robot_rl agent."""
    policy = impl._modules.policy
    with torch.no_grad():
        hidden_layers = [m for m in policy._encoder._layers if isinstance(m, torch.nn.Linear)]
        for theirs, ours in zip([*hidden_layers, policy._mu], agent.actor.trunk.layers):
            ours.weight.copy_(theirs.weight)
            ours.bias.copy_(theirs.bias)
        agent.actor.log_std_logits.copy_(policy._logstd[0])
        for theirs_all, ours in ((impl._modules.q_funcs, agent.critic),
                                 (impl._modules.targ_q_funcs, agent.critic_target)):
            net = ours.net
            for n, q in enumerate(theirs_all):
                layers = [m for m in q._encoder._layers if isinstance(m, torch.nn.Linear)]
                for k, layer in enumerate([*layers, q._fc]):
                    net.weights[k][n].copy_(layer.weight.T)
                    net.biases[k][n, 0].copy_(layer.bias)


def make_batch(done: float, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {"obs": torch.randn(BATCH, OBS, generator=g),
            "action": torch.rand(BATCH, ACT, generator=g) * 1.6 - 0.8,
            "reward": torch.randn(BATCH, generator=g),
            "next_obs": torch.randn(BATCH, OBS, generator=g),
            "done": torch.full((BATCH,), done)}


def d3rlpy_batch(batch: dict[str, torch.Tensor]):
    from d3rlpy.torch_utility import TorchMiniBatch

    return TorchMiniBatch(
        observations=batch["obs"], actions=batch["action"],
        rewards=batch["reward"].reshape(-1, 1), next_observations=batch["next_obs"],
        next_actions=batch["action"], returns_to_go=torch.zeros(BATCH, 1),
        terminals=batch["done"].reshape(-1, 1), intervals=torch.ones(BATCH, 1), device="cpu:0")


def params(module: torch.nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in module.parameters()]


def test_copied_weights_compute_the_same_networks() -> None:
    agent = robot_rl_agent()
    impl = d3rlpy_copy(agent)
    obs, action = make_batch(0.0)["obs"], make_batch(0.0)["action"]
    with torch.no_grad():
        ours_mean, ours_log_std = agent.actor(obs)
        theirs = impl._modules.policy(obs)
        torch.testing.assert_close(theirs.squashed_mu, ours_mean)
        torch.testing.assert_close(theirs.logstd.expand(BATCH, -1), ours_log_std.expand(BATCH, -1))
        for theirs_all, ours in ((impl._modules.q_funcs, agent.critic),
                                 (impl._modules.targ_q_funcs, agent.critic_target)):
            values = torch.stack([q(obs, action).q_value[:, 0] for q in theirs_all])
            torch.testing.assert_close(values, ours(obs, action))


def test_one_update_matches_d3rlpy_with_the_documented_differences_aligned(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from d3rlpy.models.torch.distributions import GaussianDistribution

    agent = robot_rl_agent()
    impl = d3rlpy_copy(agent)
    # V(s) at the policy mean, as rlkit and robot_rl evaluate it (d3rlpy samples it)
    monkeypatch.setattr(GaussianDistribution, "sample_n",
                        lambda self, n: self._mean.unsqueeze(1).expand(-1, n, -1))
    batch = make_batch(done=1.0)  # terminal: y = r in both (see the module docstring)

    before = params(agent.actor) + params(agent.critic) + params(agent.critic_target)
    ours = dict(agent.update(batch))
    theirs_batch = d3rlpy_batch(batch)
    actor_metrics = impl.update_actor(theirs_batch)   # rlkit's order: actor on the pre-step critic
    critic_metrics = impl.update_critic(theirs_batch)
    impl.update_critic_target()

    assert critic_metrics["critic_loss"] == pytest.approx(ours["critic_loss"], rel=1e-5)
    assert actor_metrics["actor_loss"] / BATCH == pytest.approx(ours["actor_loss"], rel=1e-5)
    assert ours["adv_weight_max"] > 1.5  # the advantages are not all ~0
    after = params(agent.actor) + params(agent.critic) + params(agent.critic_target)
    assert all(not torch.equal(a, b) for a, b in zip(before, after))  # every tensor moved
    # d3rlpy's weights after its steps, read back in robot_rl's layout: the same numbers
    # (d3rlpy's actor loss is B times robot_rl's; Adam's step differs by its eps only)
    mirror = robot_rl_agent()
    copy_back(impl, mirror)
    for got, want in zip(params(mirror.actor) + params(mirror.critic)
                         + params(mirror.critic_target), after):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-7)


def test_d3rlpy_td_target_is_sacs_with_temperature_one() -> None:
    """The one difference the update comparison steps around (terminal transitions there), pinned
    here: with the same noise eps, d3rlpy's AWAC bootstraps from
      min Qbar(s', tanh(u)) - 1 * log pi_tanh(tanh(u) | s'),  u = f(s') + std eps
    (SAC's target, its temperature exp(0) = 1 a dummy AWAC never learns), robot_rl's from
      min Qbar(s', clip(tanh(f(s')) + std eps, -1, 1))      (AWAC's, no entropy term)."""
    agent = robot_rl_agent()
    impl = d3rlpy_copy(agent)
    batch = make_batch(done=0.0)
    torch.manual_seed(9)  # d3rlpy draws its noise from torch's global generator
    theirs = impl.compute_target(d3rlpy_batch(batch))[:, 0]
    eps = torch.randn(BATCH, ACT, generator=torch.Generator().manual_seed(9))
    agent.generator.manual_seed(9)
    ours = agent.td_target(batch["reward"], batch["next_obs"], batch["done"])

    next_obs = batch["next_obs"]
    with torch.no_grad():
        raw = impl._modules.policy(next_obs).mu
        log_std = agent.actor.log_std()
        u = raw + log_std.exp() * eps
        log_pi = (-0.5 * eps.pow(2) - log_std - 0.5 * math.log(2 * math.pi)
                  - torch.log(1 - torch.tanh(u).pow(2))).sum(dim=1)
        d3rlpy_rule = agent.critic_target(next_obs, torch.tanh(u)).min(dim=0).values - log_pi
        robot_rl_action = (torch.tanh(raw) + log_std.exp() * eps).clamp(-1, 1)
        robot_rl_rule = agent.critic_target(next_obs, robot_rl_action).min(dim=0).values
    torch.testing.assert_close(theirs, d3rlpy_rule, rtol=1e-4, atol=1e-4)
    gamma = agent.config.gamma
    torch.testing.assert_close(ours, batch["reward"] + gamma * robot_rl_rule)
    # apart by 2.4 on average here, nearly all of it the entropy term (|log pi| 2.4)
    assert (theirs - robot_rl_rule).abs().mean() > 1.0
