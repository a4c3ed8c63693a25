"""AWAC's update against the formulas, computed by hand in numpy on tiny networks with fixed weights.

The reference below is written from the formulas (Nair et al. 2020; awac.py's and networks.py's
docstrings), not from the code: numpy forward passes of the actor and of every critic, the TD target
with the target critics and the discount, the advantage against V(s) = Q(s, mu(s)), the AWR weights
(batch-normalised or not, clipped), the actor's weighted log-likelihood, SAC's entropy term in its
TD target, its actor and temperature losses, and the Polyak update of the target critics. Each
update runs through the public `AWAC.update`; its noise is reproduced from the agent's seeded
generator in the order awac.py documents (the next action's noise, then the SAC actor's)."""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import numpy as np
import pytest
import torch

from robot_rl.learning.awac import AWAC
from robot_rl.learning.config import AWACConfig, CollapseGuardConfig

pytestmark = pytest.mark.usefixtures("one_torch_thread")

OBS, ACT, HIDDEN, N_CRITICS, BATCH = 2, 1, 3, 2, 5
LOG_STD_RANGE = (-2.0, 0.5)


# ---- the reference, in numpy ---------------------------------------------------------------
def relu(x: np.ndarray) -> np.ndarray:
    return np.maximum(x, 0.0)


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


@dataclass
class ActorWeights:
    w1: np.ndarray      # (HIDDEN, OBS)   h = relu(W1 s + b1)
    b1: np.ndarray
    w2: np.ndarray      # (ACT, HIDDEN)   mean = tanh(W2 h + b2)
    b2: np.ndarray
    theta: np.ndarray   # (ACT,)          log_std = lo + (hi - lo) * sigmoid(theta)

    def mean(self, s: np.ndarray) -> np.ndarray:
        return np.tanh(relu(s @ self.w1.T + self.b1) @ self.w2.T + self.b2)

    def log_std(self) -> np.ndarray:
        lo, hi = LOG_STD_RANGE
        return lo + (hi - lo) * sigmoid(self.theta)


@dataclass
class CriticWeights:
    w1: np.ndarray  # (N, HIDDEN, OBS + ACT)   Q_n(s, a) = w2_n . relu(W1_n [s; a] + b1_n) + b2_n
    b1: np.ndarray  # (N, HIDDEN)
    w2: np.ndarray  # (N, HIDDEN)
    b2: np.ndarray  # (N,)

    def q(self, s: np.ndarray, a: np.ndarray) -> np.ndarray:
        """(N, B): every member's value of every pair."""
        x = np.concatenate([s, a], axis=1)
        return np.stack([relu(x @ self.w1[n].T + self.b1[n]) @ self.w2[n] + self.b2[n]
                         for n in range(N_CRITICS)])

    def lerp(self, other: CriticWeights, tau: float) -> CriticWeights:
        return CriticWeights(*((1 - tau) * mine + tau * theirs for mine, theirs in
                               zip(vars(self).values(), vars(other).values())))


def log_normal(a: np.ndarray, mean: np.ndarray, log_std: np.ndarray) -> np.ndarray:
    """log N(a; mean, exp(log_std)^2), summed over action dimensions."""
    var = np.exp(2 * log_std)
    return (-(a - mean) ** 2 / (2 * var) - 0.5 * np.log(2 * math.pi * var)).sum(axis=1)


# ---- fixed weights into the agent, and out of it -------------------------------------------
def actor_weights(rng: np.random.Generator) -> ActorWeights:
    return ActorWeights(rng.normal(0, 1, (HIDDEN, OBS)), rng.normal(0, 0.5, HIDDEN),
                        rng.normal(0, 1, (ACT, HIDDEN)), rng.normal(0, 0.5, ACT),
                        rng.normal(0, 1, ACT))


def critic_weights(rng: np.random.Generator) -> CriticWeights:
    return CriticWeights(rng.normal(0, 1, (N_CRITICS, HIDDEN, OBS + ACT)),
                         rng.normal(0, 0.5, (N_CRITICS, HIDDEN)),
                         rng.normal(0, 1, (N_CRITICS, HIDDEN)), rng.normal(0, 0.5, N_CRITICS))


def _t(x: np.ndarray) -> torch.Tensor:
    return torch.as_tensor(np.asarray(x), dtype=torch.float32)


def load_actor(agent: AWAC, w: ActorWeights) -> None:
    first, head = agent.actor.trunk.layers
    with torch.no_grad():
        for param, value in ((first.weight, w.w1), (first.bias, w.b1), (head.weight, w.w2),
                             (head.bias, w.b2), (agent.actor.log_std_logits, w.theta)):
            param.copy_(_t(value))


def load_critic(ensemble: torch.nn.Module, w: CriticWeights) -> None:
    net = ensemble.net  # EnsembleMLP stores x @ W: weights (N, in, out), biases (N, 1, out)
    with torch.no_grad():
        net.weights[0].copy_(_t(w.w1.transpose(0, 2, 1)))
        net.biases[0].copy_(_t(w.b1[:, None, :]))
        net.weights[1].copy_(_t(w.w2[:, :, None]))
        net.biases[1].copy_(_t(w.b2[:, None, None]))


def read_critic(ensemble: torch.nn.Module) -> CriticWeights:
    net = ensemble.net
    w = [p.detach().double().numpy() for p in (*net.weights, *net.biases)]
    return CriticWeights(w[0].transpose(0, 2, 1), w[2][:, 0, :], w[1][:, :, 0], w[3][:, 0, 0])


@dataclass
class Fixture:
    agent: AWAC
    actor: ActorWeights
    critic: CriticWeights
    target: CriticWeights
    batch: dict[str, np.ndarray]

    def update(self, seed: int = 7) -> tuple[dict[str, float], np.ndarray, np.ndarray]:
        """One real update; returns its metrics and the two noise draws it used."""
        self.agent.generator.manual_seed(seed)
        g = torch.Generator().manual_seed(seed)
        next_eps = torch.randn((BATCH, ACT), generator=g).double().numpy()
        actor_eps = torch.randn((BATCH, ACT), generator=g).double().numpy()
        metrics = dict(self.agent.update({k: _t(v) for k, v in self.batch.items()}))
        return metrics, next_eps, actor_eps


def make_fixture(**overrides) -> Fixture:
    config = AWACConfig(actor_hidden_sizes=(HIDDEN,), critic_hidden_sizes=(HIDDEN,),
                        n_critics=N_CRITICS, batch_size=BATCH, log_std_range=LOG_STD_RANGE,
                        gamma=0.8, tau=0.25, beta=0.7, **overrides)
    agent = AWAC(OBS, ACT, config, seed=0)
    rng = np.random.default_rng(11)
    fixture = Fixture(agent, actor_weights(rng), critic_weights(rng), critic_weights(rng), {
        "obs": rng.normal(0, 1, (BATCH, OBS)),
        "action": rng.uniform(-0.9, 0.9, (BATCH, ACT)),
        "reward": rng.normal(0, 1, BATCH),
        "next_obs": rng.normal(0, 1, (BATCH, OBS)),
        "done": np.array([0.0, 1.0, 0.0, 0.0, 0.0]),  # one terminal: no bootstrap there
    })
    load_actor(agent, fixture.actor)
    load_critic(agent.critic, fixture.critic)
    load_critic(agent.critic_target, fixture.target)
    return fixture


def td_target(f: Fixture, eps: np.ndarray, alpha: float = 0.0) -> np.ndarray:
    """y = r + gamma (1 - done) (min_n Qbar_n(s', a') - alpha log pi(a'|s')),
    a' = clip(mu(s') + std eps, -1, 1), log pi at the unclipped sample."""
    b, c = f.batch, f.agent.config
    mean, log_std = f.actor.mean(b["next_obs"]), f.actor.log_std()
    raw = mean + np.exp(log_std) * eps
    soft_q = (f.target.q(b["next_obs"], np.clip(raw, -1, 1)).min(axis=0)
              - alpha * log_normal(raw, mean, log_std))
    return b["reward"] + c.gamma * (1 - b["done"]) * soft_q


def critic_loss(f: Fixture, y: np.ndarray) -> float:
    """sum_n mean_b (Q_n(s, a) - y)^2."""
    return float(((f.critic.q(f.batch["obs"], f.batch["action"]) - y) ** 2).mean(axis=1).sum())


def awr(f: Fixture) -> tuple[np.ndarray, np.ndarray]:
    """(advantage A = min Q(s, a) - min Q(s, mu(s)), weights), the weights as configured."""
    s, a, c = f.batch["obs"], f.batch["action"], f.agent.config
    advantage = f.critic.q(s, a).min(axis=0) - f.critic.q(s, f.actor.mean(s)).min(axis=0)
    if c.normalize_weights:
        e = np.exp(advantage / c.beta)
        weights = BATCH * e / e.sum()
    else:
        weights = np.exp(advantage / c.beta)
    return advantage, np.minimum(weights, c.max_weight)


def assert_critic_gradient_is_the_td_losss(f: Fixture, y: np.ndarray) -> None:
    """After an update the critics' .grad hold what that update's backward left: the gradient of
    the TD loss alone (the actor's loss must not reach them). Reference: the same loss on a copy of
    the critics with the fixed weights, the target y from the numpy reference."""
    net = copy.deepcopy(f.agent.critic)
    load_critic(net, f.critic)
    net.zero_grad(set_to_none=True)
    loss = (net(_t(f.batch["obs"]), _t(f.batch["action"])) - _t(y)).pow(2).mean(dim=1).sum()
    loss.backward()
    for got, want in zip(f.agent.critic.parameters(), net.parameters()):
        torch.testing.assert_close(got.grad, want.grad, rtol=1e-4, atol=1e-6)


# ---- the tests -----------------------------------------------------------------------------
def test_forward_passes_match_the_reference() -> None:
    """The fixed weights are where the reference puts them (the rest depends on it)."""
    f = make_fixture()
    s, a = f.batch["obs"], f.batch["action"]
    with torch.no_grad():
        mean, log_std = f.agent.actor(_t(s))
        values = [net(_t(s), _t(a)) for net in (f.agent.critic, f.agent.critic_target)]
    np.testing.assert_allclose(mean.double().numpy(), f.actor.mean(s), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(log_std.double().numpy(), f.actor.log_std(), rtol=1e-6)
    for value, ref in zip(values, (f.critic, f.target)):
        np.testing.assert_allclose(value.double().numpy(), ref.q(s, a),
                                   rtol=1e-5, atol=1e-6)
    assert not np.allclose(f.critic.q(s, a), f.target.q(s, a))  # target and online differ


def test_td_target_uses_the_target_critics_the_discount_and_done() -> None:
    f = make_fixture()
    f.agent.generator.manual_seed(3)
    eps = torch.randn((BATCH, ACT), generator=torch.Generator().manual_seed(3)).double().numpy()
    b = f.batch
    got = f.agent.td_target(_t(b["reward"]), _t(b["next_obs"]), _t(b["done"])).double().numpy()
    want = td_target(f, eps)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    assert got[1] == pytest.approx(b["reward"][1])  # terminal: the reward alone
    # the online critics would give another target: this one is the target critics'
    online = Fixture(f.agent, f.actor, f.critic, f.critic, f.batch)
    assert np.abs(td_target(online, eps) - want).max() > 0.05


def test_public_td_target_adds_the_entropy_term_only_when_given_alpha() -> None:
    """`AWAC.td_target(reward, next_obs, done, alpha=0.0)`: a SAC agent's target without the
    entropy term unless alpha is given."""
    f = make_fixture(actor_objective="sac", sac_alpha=0.3)
    b = f.batch
    args = (_t(b["reward"]), _t(b["next_obs"]), _t(b["done"]))
    for seed, alpha in ((3, None), (4, 0.3)):
        f.agent.generator.manual_seed(seed)
        eps = torch.randn((BATCH, ACT), generator=torch.Generator().manual_seed(seed))
        got = f.agent.td_target(*args) if alpha is None else f.agent.td_target(*args, alpha)
        np.testing.assert_allclose(got.double().numpy(), td_target(f, eps.double().numpy(),
                                                                    alpha or 0.0),
                                   rtol=1e-5, atol=1e-6, err_msg=f"alpha {alpha}")


@pytest.mark.parametrize("objective, draws", [("awr", 1), ("sac", 2)])
def test_an_update_draws_only_the_noise_it_uses(objective: str, draws: int) -> None:
    """AWR draws one noise tensor per update (the next action's), SAC two (then the actor's): the
    stream after an update is where that order puts it, which exact resumes rely on."""
    f = make_fixture(actor_objective=objective)
    f.update(seed=7)
    g = torch.Generator().manual_seed(7)
    for _ in range(draws):
        torch.randn((BATCH, ACT), generator=g)
    assert torch.equal(f.agent.generator.get_state(), g.get_state())


@pytest.mark.parametrize("normalize, max_weight", [(True, 100.0), (True, 1.3), (False, 1.1)])
def test_awac_update_losses_match_the_reference(normalize: bool, max_weight: float) -> None:
    """Critic loss (TD against the target critics, discounted), the advantage against
    V(s) = Q(s, mu(s)), the AWR weights (batch softmax x B or plain exp, clipped) and the actor's
    weighted log-likelihood, all as metrics of one real update."""
    f = make_fixture(normalize_weights=normalize, max_weight=max_weight)
    metrics, next_eps, _ = f.update()
    y = td_target(f, next_eps)
    advantage, weights = awr(f)
    mean, log_std = f.actor.mean(f.batch["obs"]), f.actor.log_std()
    actor_loss = -(weights * log_normal(f.batch["action"], mean, log_std)).mean()

    assert metrics["critic_loss"] == pytest.approx(critic_loss(f, y), rel=1e-5)
    assert metrics["td_target_mean"] == pytest.approx(y.mean(), rel=1e-5, abs=1e-6)
    assert metrics["actor_loss"] == pytest.approx(actor_loss, rel=1e-5)
    assert_critic_gradient_is_the_td_losss(f, y)
    assert metrics["adv_weight_mean"] == pytest.approx(weights.mean(), rel=1e-5)
    ess = weights.sum() ** 2 / (BATCH * (weights ** 2).sum())  # effective sample size / B
    assert metrics["adv_weight_ess_frac"] == pytest.approx(ess, rel=1e-5)
    assert metrics["adv_weight_max"] == pytest.approx(weights.max(), rel=1e-5)
    q = f.critic.q(f.batch["obs"], f.batch["action"])
    assert metrics["q_mean"] == pytest.approx(q.mean(), rel=1e-5)
    assert (weights == max_weight).any() == (max_weight < 2.0)  # the clip binds where meant to
    # The baseline matters here: it is not one constant over the batch (a constant would cancel
    # in the softmax), so an advantage without it would weigh the samples differently.
    baseline = f.critic.q(f.batch["obs"], mean).min(axis=0)
    assert np.ptp(baseline) > 0.1 and np.ptp(advantage) > 0.1


def test_polyak_update_of_the_target_critics() -> None:
    """Qbar <- (1 - tau) Qbar + tau Q, with Q the critics after this update's step."""
    f = make_fixture()
    f.update()
    online = read_critic(f.agent.critic)
    assert not np.allclose(online.w1, f.critic.w1)  # the critics did take a step
    want = f.target.lerp(online, f.agent.config.tau)
    got = read_critic(f.agent.critic_target)
    for name in vars(want):
        np.testing.assert_allclose(getattr(got, name), getattr(want, name), rtol=1e-5, atol=1e-6,
                                   err_msg=name)


@pytest.mark.parametrize("learn_alpha", [True, False])
def test_sac_losses_and_entropy_term_match_the_reference(learn_alpha: bool) -> None:
    """SAC from scratch (actor_objective: sac): TD target r + gamma (1 - d) (min Qbar(s', a')
    - alpha log pi(a'|s')); actor loss mean(alpha log pi(a~|s) - min Q(s, a~)) on a
    reparameterised sample; temperature loss -mean(log_alpha (log pi + target entropy)), target
    entropy -act_dim, seen as its gradient on log_alpha."""
    alpha = 0.3
    f = make_fixture(actor_objective="sac", sac_alpha=alpha, sac_learn_alpha=learn_alpha)
    metrics, next_eps, actor_eps = f.update()
    y = td_target(f, next_eps, alpha)
    s = f.batch["obs"]
    mean, log_std = f.actor.mean(s), f.actor.log_std()
    raw = mean + np.exp(log_std) * actor_eps
    log_pi = log_normal(raw, mean, log_std)
    actor_loss = (alpha * log_pi - f.critic.q(s, np.clip(raw, -1, 1)).min(axis=0)).mean()

    assert metrics["critic_loss"] == pytest.approx(critic_loss(f, y), rel=1e-5)
    assert metrics["td_target_mean"] == pytest.approx(y.mean(), rel=1e-5, abs=1e-6)
    assert metrics["actor_loss"] == pytest.approx(actor_loss, rel=1e-5)
    assert_critic_gradient_is_the_td_losss(f, y)  # the actor's max-Q loss does not train Q
    assert metrics["alpha"] == pytest.approx(alpha, rel=1e-6)
    # the entropy term is large enough here that its sign shows in the loss
    assert abs(critic_loss(f, y) - critic_loss(f, td_target(f, next_eps, -alpha))) > 0.1
    grad = f.agent.log_alpha.grad
    if learn_alpha:
        assert float(grad) == pytest.approx(-(log_pi - ACT).mean(), rel=1e-5)
        assert float(f.agent.log_alpha.detach().exp()) != pytest.approx(alpha)  # it stepped
    else:
        assert grad is None and float(f.agent.log_alpha.detach().exp()) == pytest.approx(alpha)


def test_bc_objective_is_the_plain_log_likelihood() -> None:
    f = make_fixture(actor_objective="bc")
    metrics, _, _ = f.update()
    mean, log_std = f.actor.mean(f.batch["obs"]), f.actor.log_std()
    want = -log_normal(f.batch["action"], mean, log_std).mean()
    assert metrics["actor_loss"] == pytest.approx(want, rel=1e-5)
    assert metrics["adv_weight_mean"] == 1.0


@pytest.mark.parametrize("term", ["kl", "logp"])
def test_the_collapse_guards_term_is_added_to_the_actor_loss(term: str) -> None:
    """Online, the actor loss gains c_0 * D(snapshot, pi) (guard.py; c_0 at the first online update):
    D = KL(snapshot || pi) = sum log(s_q / s_p) + (s_p^2 + (m_p - m_q)^2) / (2 s_q^2) - 1/2, or
    -log pi(snapshot's mean | s); averaged over the batch."""
    guard = CollapseGuardConfig(conservative=True, conservative_term=term,
                                conservative_weight=0.7, conservative_decay_updates=4)
    f = make_fixture(actor_objective="bc", collapse_guard=guard)
    f.agent.start_online()  # the snapshot: the fixed actor
    snapshot, f.actor = f.actor, actor_weights(np.random.default_rng(5))
    load_actor(f.agent, f.actor)  # the policy has moved away from it
    metrics, _, _ = f.update()
    s, a = f.batch["obs"], f.batch["action"]
    m_p, ls_p, m_q, ls_q = snapshot.mean(s), snapshot.log_std(), f.actor.mean(s), f.actor.log_std()
    if term == "kl":
        var_p, var_q = np.exp(2 * ls_p), np.exp(2 * ls_q)
        d = (ls_q - ls_p + (var_p + (m_p - m_q) ** 2) / (2 * var_q) - 0.5).sum(axis=1).mean()
    else:
        d = -log_normal(m_p, m_q, ls_q).mean()
    assert d > 0.05  # the term is there to see
    assert metrics["guard_weight"] == pytest.approx(0.7)
    bc = -log_normal(a, m_q, ls_q).mean()
    assert metrics["actor_loss"] == pytest.approx(bc + 0.7 * d, rel=1e-5)
