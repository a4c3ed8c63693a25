"""AWAC trained for real, offline, on a chain with a delayed reward; checked against Q* and pi*.

States 0..3 (one-hot). Action a > 0 moves one state right, a <= 0 one state left (0 stays at 0);
moving right from state 3 reaches the goal: reward 1 and the episode ends. Every other transition
has reward 0 and does not end the episode. The data holds every state with both a = +0.5 and
a = -0.5, so only bootstrapping through non-terminal transitions can tell the two apart away from
the goal. With discount gamma:
  Q*(s, right) = gamma^(3 - s),   Q*(s, left) = gamma * V*(max(s - 1, 0)),   pi*: right everywhere.
Unlike the one-step bandit of test_learning_awac.py, the answer depends on the target critics (frozen
targets would leave Q = 0 away from the goal), on the discount (without it every Q* would be 1) and,
in CORL's unnormalised weighting, on the advantage's baseline (see the second test)."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch

from robot_rl.learning.awac import AWAC
from robot_rl.learning.config import AWACConfig

pytestmark = pytest.mark.usefixtures("one_torch_thread")

N_STATES, GAMMA, STEP = 4, 0.9, 0.5
RIGHT, LEFT = np.array([[STEP]]), np.array([[-STEP]])
Q_RIGHT = GAMMA ** (N_STATES - 1 - np.arange(N_STATES))           # 0.729 0.81 0.9 1
Q_LEFT = GAMMA * Q_RIGHT[np.maximum(np.arange(N_STATES) - 1, 0)]  # 0.656 0.656 0.729 0.81
WEIGHTING = {"rlkit": {},  # clip(B * softmax(A / beta), 100)
             "corl": {"normalize_weights": False, "max_weight": 20.0}}  # clip(exp(A / beta), 20)


def chain_batch(copies: int = 4) -> dict[str, torch.Tensor]:
    """Every (state, +-STEP) transition of the chain, `copies` times: one full batch."""
    rows = []
    for s in range(N_STATES):
        for a in (STEP, -STEP):
            s2 = s + 1 if a > 0 else max(s - 1, 0)
            goal = s2 == N_STATES
            rows.append((np.eye(N_STATES)[s], [a], float(goal),
                         np.eye(N_STATES)[min(s2, N_STATES - 1)], float(goal)))
    columns = [torch.tensor(np.array(c), dtype=torch.float32) for c in zip(*rows)]
    return {key: column.repeat(copies, *([1] * (column.dim() - 1)))
            for key, column in zip(("obs", "action", "reward", "next_obs", "done"), columns)}


@functools.cache  # each weighting trains once per test session
def train_on_chain(weighting: str, updates: int = 300) -> AWAC:
    """Full-batch offline AWAC. beta is small so that the AWR policy (a weighted average of the
    data's actions) sits near the data's right action, where the critic has seen it: the policy's
    value then is Q*."""
    config = AWACConfig(actor_hidden_sizes=(32,), critic_hidden_sizes=(32,), batch_size=32,
                        gamma=GAMMA, tau=0.1, actor_lr=3e-3, critic_lr=3e-3, beta=0.02,
                        policy_weight_decay=0.0, **WEIGHTING[weighting])
    agent = AWAC(N_STATES, 1, config, seed=0)
    batch = chain_batch()
    for _ in range(updates):
        agent.update(batch)
    return agent


def q_values(agent: AWAC, action: np.ndarray) -> np.ndarray:
    obs = torch.eye(N_STATES)
    with torch.no_grad():
        q = agent.critic(obs, torch.as_tensor(np.repeat(action, N_STATES, 0), dtype=torch.float32))
    return q.min(dim=0).values.numpy()


@pytest.mark.parametrize("weighting", list(WEIGHTING))
def test_awac_learns_the_optimal_values_and_policy_of_the_chain(weighting: str) -> None:
    agent = train_on_chain(weighting)
    assert agent.num_updates == 300  # the trainer's publish, log and checkpoint steps count these
    np.testing.assert_allclose(q_values(agent, RIGHT), Q_RIGHT, atol=0.04)
    np.testing.assert_allclose(q_values(agent, LEFT), Q_LEFT, atol=0.04)
    policy = agent.act(np.eye(N_STATES), deterministic=True)[:, 0]
    assert (policy > 0.4).all(), policy  # right everywhere, near the data's right action


def test_without_the_baseline_every_corl_weight_would_be_clipped() -> None:
    """Why the chain sees the baseline: in CORL's weighting clip(exp(A / beta), max_weight) an
    advantage without V(s) would be Q(s, a) itself, and every Q here is far above
    beta * log(max_weight): every weight would hit the clip, the weighted regression would average
    the data's actions (0) and the previous test's policy check would fail."""
    agent = train_on_chain("corl")
    config = agent.config
    both = np.concatenate([q_values(agent, RIGHT), q_values(agent, LEFT)])
    assert (both / config.beta > np.log(config.max_weight)).all()
    # with the baseline the weights do tell the actions apart: right ~ 1, left far below the clip
    obs = torch.eye(N_STATES)
    with torch.no_grad():
        v = agent.critic(obs, agent.actor(obs)[0]).min(dim=0).values.numpy()
    weights_left = np.exp((q_values(agent, LEFT) - v) / config.beta)
    assert (weights_left < 0.2).all(), weights_left
