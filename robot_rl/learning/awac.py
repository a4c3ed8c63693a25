"""AWAC (Nair et al. 2020): TD-trained Q-ensemble, actor by advantage-weighted regression.

One update, the same offline and online (notation of the paper; B = batch size, N = critics):
  critic:  y = r + gamma * (1 - done) * agg_n Qbar_n(s', a'),  a' ~ pi(.|s')
           L_Q = sum_n mean_b (Q_n(s, a) - y)^2                 (every member regresses to y)
  actor:   A = agg Q(s, a) - agg Q(s, mu(s))                    (V(s) ~ Q at the policy mean)
           w = clip(B * softmax_b(A / beta), max_weight)
           L_pi = -mean_b w * log pi(a | s)
  targets: Qbar <- (1 - tau) * Qbar + tau * Q
Both losses use the critic before this update's step (as rlkit does), so one backward serves both.

With ``critic_aggregation: subset_min`` (REDQ, RLPD) agg in the target is the minimum over a
random subset of members drawn anew for each update, and the actor's agg is the mean of all N.
Online with ``actor_update_every`` k > 1, only every k-th update has an actor term (a critic-only
update skips the actor's forward and backward passes), and none of the first
``critic_warmup_updates``; ``update(batch, n_updates=G)`` makes G
updates from one batch of G x B rows in one call (the update-to-data ratio's block).
"""

from __future__ import annotations

import copy
import logging
import math
from collections.abc import Iterator, Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from robot_rl.learning.config import AWACConfig
from robot_rl.learning.device import resolve_device
from robot_rl.learning.guard import CollapseGuard
from robot_rl.learning.keeper import PolicyKeeper
from robot_rl.learning.memory import keep_freed_memory
from robot_rl.learning.networks import GaussianPolicy, QEnsemble, aggregate_q, gaussian_log_prob
from robot_rl.learning.normalizer import Normalizer

log = logging.getLogger(__name__)

BATCH_KEYS = ("obs", "action", "reward", "next_obs", "done")
METRIC_NAMES = (
    "critic_loss", "actor_loss", "q_mean", "td_target_mean", "adv_weight_mean", "adv_weight_max",
    "adv_weight_ess_frac", "log_std_mean", "alpha", "guard_weight",
)


class LazyMetrics(Mapping[str, float]):
    """Metrics of one update kept as one tensor; converted to floats only when first read, so an
    update loop that logs every Nth step pays no tensor-to-Python conversion on the others."""

    def __init__(self, names: tuple[str, ...], values: torch.Tensor) -> None:
        self._names, self._values = names, values
        self._floats: dict[str, float] | None = None

    def _resolved(self) -> dict[str, float]:
        if self._floats is None:
            self._floats = dict(zip(self._names, self._values.tolist()))
        return self._floats

    def __getitem__(self, key: str) -> float:
        return self._resolved()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._names)

    def __len__(self) -> int:
        return len(self._names)

    def __repr__(self) -> str:
        return f"LazyMetrics({self._resolved()!r})"


def awr_weights(
    advantage: torch.Tensor, beta: float, max_weight: float, normalize: bool = True
) -> torch.Tensor:
    """w = clip(B * softmax(A / beta), max_weight) (rlkit), or clip(exp(A / beta)) unnormalised."""
    if normalize:
        weights = F.softmax(advantage / beta, dim=0) * advantage.shape[0]
    else:
        weights = torch.exp(advantage / beta)
    return weights.clamp(max=max_weight)


def _sample(
    mean: torch.Tensor, log_std: torch.Tensor, eps: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """(a = clip(mean + std * eps, -1, 1), log N(mean + std * eps)) for standard normal eps."""
    log_prob = (-0.5 * eps.pow(2) - log_std - 0.5 * math.log(2 * math.pi)).sum(dim=-1)
    return (mean + torch.exp(log_std) * eps).clamp(-1.0, 1.0), log_prob


class AWAC:
    """Constructing one also tunes this process's malloc for training (`memory.keep_freed_memory`):
    without it a batch-1024 update page-faults its activations back in every step."""

    def __init__(
        self,
        obs_dim: int,
        act_dim: int,
        config: AWACConfig,
        device: str | torch.device | None = None,
        seed: int = 0,
    ) -> None:
        """``device`` overrides ``config.device`` (the benchmark's --device)."""
        self.obs_dim, self.act_dim, self.config = obs_dim, act_dim, config
        self.device = resolve_device(config.device if device is None else device)
        self.seed = seed
        keep_freed_memory()
        with torch.random.fork_rng(devices=[]):  # seeded init without touching the global RNG
            torch.manual_seed(seed)
            self.actor = GaussianPolicy(
                obs_dim, act_dim, config.actor_hidden_sizes, config.log_std_range
            ).to(self.device)
            self.critic = QEnsemble(
                obs_dim, act_dim, config.critic_hidden_sizes, config.n_critics, config.q_clamp_max,
                layer_norm=config.critic_layer_norm,
            ).to(self.device)
        self.critic_target = copy.deepcopy(self.critic).requires_grad_(False)
        self.log_alpha = nn.Parameter(
            torch.tensor(math.log(max(config.sac_alpha, 1e-8)), device=self.device),
            requires_grad=config.actor_objective == "sac" and config.sac_learn_alpha,
        )
        self.target_entropy = -float(act_dim)
        self.optimizer = self._make_optimizer()
        self._online_params = list(self.critic.parameters())
        self._target_params = list(self.critic_target.parameters())
        self.normalizer: Normalizer | None = None
        self.guard = CollapseGuard(config.collapse_guard)
        self.keeper = PolicyKeeper()
        self.generator = torch.Generator(self.device).manual_seed(seed)
        self.act_generator = torch.Generator(self.device).manual_seed(seed + 1)
        self.num_updates = 0
        self._sac = config.actor_objective == "sac"
        self._subset_min = config.critic_aggregation == "subset_min"
        # the actor's metrics (advantage weights, log-std) of the last update that had an actor
        # term: what a critic-only update reports for them
        self._actor_metrics = torch.full((5,), math.nan, device=self.device)
        self._last_actor_loss = torch.full((), math.nan, device=self.device)
        # Only the loss computation is compiled: modules stay plain (checkpoint keys unchanged),
        # noise and the optimiser step stay eager. Static shapes: one graph per batch size.
        self._compiled_losses = torch.compile(self._losses, dynamic=False) if config.compile else None
        self._loss_fn = self._compiled_or_eager if config.compile else self._losses

    def _make_optimizer(self) -> torch.optim.Optimizer:
        c = self.config
        groups = [
            {"params": list(self.actor.parameters()), "lr": c.actor_lr,
             "weight_decay": c.policy_weight_decay},
            {"params": list(self.critic.parameters()), "lr": c.critic_lr, "weight_decay": 0.0},
        ]
        if self.log_alpha.requires_grad:
            groups.append({"params": [self.log_alpha], "lr": c.actor_lr, "weight_decay": 0.0})
        # One fused Adam over all groups: per-parameter Adam, so this equals separate optimisers.
        return torch.optim.Adam(groups, fused=self.device.type in ("cpu", "cuda"))

    # ---- public API ----------------------------------------------------------------------
    def set_normalizer(self, normalizer: Normalizer | None) -> None:
        self.normalizer = None if normalizer is None else normalizer.to(self.device)

    def start_online(self) -> None:
        """Snapshot the offline policy for the collapse guard (no-op for its effect if disabled)."""
        self.guard.arm(self.actor)

    def handed_actor(self) -> GaussianPolicy:
        """The policy to hand over at the end of fine-tuning (``config.handed_policy``): the
        actor, or a copy holding the keeper's best-measured weights."""
        if self.config.handed_policy == "best":
            return self.keeper.handed(self.actor)
        return self.actor

    def update(self, batch: Mapping[str, torch.Tensor], n_updates: int = 1) -> Mapping[str, float]:
        """``n_updates`` gradient steps, in order, on consecutive slices of B = rows / n_updates
        rows each: one call, one transfer and normalisation of the whole block, one draw of its
        noise (the update-to-data ratio's G updates per env step; sampling them together changes
        nothing, as no new data arrives between them). Batch keys: obs, action, reward,
        next_obs, done (float32; done marks a terminal state, not a time-limit cut; other keys
        are ignored). Returns the last update's metrics, a read-only mapping name -> float whose
        values convert lazily on first read."""
        return LazyMetrics(METRIC_NAMES, self._update(batch, n_updates))

    @property
    def online_updates(self) -> int:
        """Updates made since ``start_online`` (0 before it)."""
        return self.guard.online_updates

    def updates_actor_next(self) -> bool:
        """Whether the next update has an actor term: always offline; online, none in the first
        ``critic_warmup_updates``, then every ``actor_update_every``-th update (the last of each
        group of k)."""
        if not self.guard.armed:
            return True
        k, online = self.config.actor_update_every, self.guard.online_updates
        return online >= self.config.critic_warmup_updates and (k == 1 or online % k == k - 1)

    @torch.no_grad()
    def act(self, obs: np.ndarray, deterministic: bool = False, fallback: bool = True) -> np.ndarray:
        """Action(s) in [-1, 1] for one observation (obs_dim,) or a batch (B, obs_dim).
        ``fallback=False``: the policy being fine-tuned even while the guard's fallback rule has
        the offline snapshot act; evaluations that feed the rule must see that policy."""
        x = torch.as_tensor(np.asarray(obs, dtype=np.float32), device=self.device)
        single = x.dim() == 1
        x = self.normalize_obs(x.reshape(1, -1) if single else x)
        policy = self.guard.acting_policy(self.actor) if fallback else self.actor
        mean, log_std = policy(x)
        if deterministic:
            action = mean
        else:
            noise = torch.randn(mean.shape, generator=self.act_generator, device=self.device)
            action = (mean + torch.exp(log_std) * noise).clamp(-1.0, 1.0)
        out = action.cpu().numpy()
        return out[0] if single else out

    # ---- the update ----------------------------------------------------------------------
    def _update(self, batch: Mapping[str, torch.Tensor], n_updates: int) -> torch.Tensor:
        rows = batch["reward"].shape[0]
        if n_updates < 1 or rows % n_updates:
            raise ValueError(f"AWAC.update: {rows} rows do not split into n_updates={n_updates} "
                             f"equal batches")
        size = rows // n_updates
        batch = {k: batch[k].to(self.device) for k in BATCH_KEYS}
        obs = self.normalize_obs(batch["obs"])
        next_obs = self.normalize_obs(batch["next_obs"])
        reward, done = batch["reward"].reshape(-1), batch["done"].reshape(-1)
        # Noise is drawn here, in the order the losses use it (next action, then the SAC actor's
        # sample), for the whole block at once: a generator cannot enter a compiled graph, and
        # eager and compiled then agree. One update draws exactly what it always did.
        next_eps = self._noise(batch["action"].shape)
        actor_eps = self._noise(batch["action"].shape) if self._sac else next_eps
        metrics = torch.empty(0)
        for i in range(n_updates):
            rows_i = slice(i * size, (i + 1) * size)
            metrics = self._step(obs[rows_i], batch["action"][rows_i], reward[rows_i],
                                 next_obs[rows_i], done[rows_i], next_eps[rows_i],
                                 actor_eps[rows_i])
        return metrics

    def _step(self, obs: torch.Tensor, action: torch.Tensor, reward: torch.Tensor,
              next_obs: torch.Tensor, done: torch.Tensor, next_eps: torch.Tensor,
              actor_eps: torch.Tensor) -> torch.Tensor:
        """One gradient step on normalised tensors; returns its metrics as one tensor."""
        with_actor = self.updates_actor_next()
        subset = self._draw_subset()
        critic_loss, actor_loss, alpha_loss, metrics, mean, log_std = self._loss_fn(
            obs, action, reward, next_obs, done, next_eps, actor_eps, subset, with_actor
        )
        guard_weight = self.guard.conservative_weight()  # logged as scheduled
        if with_actor and guard_weight > 0.0:
            with self._autocast():
                actor_loss = actor_loss + guard_weight * self.guard.conservative_loss(
                    obs.detach(), mean, log_std
                )

        self.optimizer.zero_grad(set_to_none=True)
        # A critic-only update leaves the actor's gradients None: Adam skips those parameters
        # (their moments and step count stay as they were), as a separate actor optimiser would.
        (critic_loss + actor_loss + alpha_loss).backward()
        self.optimizer.step()
        torch._foreach_lerp_(self._target_params, self._online_params, self.config.tau)
        self.guard.step()
        self.num_updates += 1
        if with_actor:
            self._last_actor_loss, self._actor_metrics = actor_loss.detach(), metrics[2:].detach()
        guard = torch.full((1,), guard_weight, device=self.device)
        return torch.cat([critic_loss.detach().reshape(1), self._last_actor_loss.reshape(1),
                          metrics[:2], self._actor_metrics, guard])

    def _draw_subset(self) -> torch.Tensor | None:
        """subset_min: the members whose minimum makes this update's target (REDQ draws them
        once per update, shared by the whole batch)."""
        if not self._subset_min:
            return None
        perm = torch.randperm(self.config.n_critics, generator=self.generator,
                              device=self.device)
        return perm[: self.config.critic_subset]

    def _compiled_or_eager(self, *tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The compiled losses; the eager ones from a failed compilation on (no C++ compiler, a
        platform inductor does not support): the same numbers, slower, and training goes on."""
        try:
            return self._compiled_losses(*tensors)
        except torch._dynamo.exc.BackendCompilerFailed as exc:
            cause = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            log.warning("awac.compile: torch.compile failed, training goes on uncompiled (set "
                        "awac.compile: false to skip the attempt): %s", cause)
            self._loss_fn = self._losses
            return self._losses(*tensors)

    def _losses(
        self, obs: torch.Tensor, action: torch.Tensor, reward: torch.Tensor,
        next_obs: torch.Tensor, done: torch.Tensor, next_eps: torch.Tensor,
        actor_eps: torch.Tensor, subset: torch.Tensor | None, with_actor: bool = True,
    ) -> tuple[torch.Tensor, ...]:
        """Both losses from the critic before this step (as rlkit does), so one backward serves
        both. Pure in its tensors: no RNG, no host sync, so it can be compiled. ``with_actor``
        False: the critic's loss alone (the actor's loss is a zero, its metrics NaN).
        Returns (critic loss, actor loss, alpha loss, metrics (q_mean ... alpha), mean, log_std)."""
        alpha = self.log_alpha.exp()
        with self._autocast():
            td_target = self._td_target(reward, next_obs, done, next_eps, alpha.detach(), subset)
            q_pred = self.critic(obs, action)  # (N, B)
            critic_loss = (q_pred - td_target).pow(2).mean(dim=1).sum()
            if not with_actor:
                zero = torch.zeros((), device=self.device)
                nan = torch.full((5,), math.nan, device=self.device)
                metrics = torch.cat([torch.stack([q_pred.detach().mean(), td_target.mean()]), nan])
                return critic_loss, zero, zero, metrics, None, None
            # The actor reads the observation detached: where an image encoder makes part of it
            # (learning.pixel_agent), only the critic's loss trains the encoder (DrQ, SERL); for
            # a plain observation, detach changes nothing.
            actor_obs = obs.detach()
            mean, log_std = self.actor(actor_obs)
            actor_loss, alpha_loss, weights = self._actor_loss(
                actor_obs, action, mean, log_std, q_pred.detach(), alpha, actor_eps
            )
        with torch.no_grad():
            ess_frac = weights.sum().pow(2) / (weights.pow(2).sum() * weights.shape[0])
            metrics = torch.stack([
                q_pred.mean(), td_target.mean(), weights.mean(), weights.max(), ess_frac,
                log_std.mean(), alpha,
            ])
        return critic_loss, actor_loss, alpha_loss, metrics, mean, log_std

    def td_target(
        self, reward: torch.Tensor, next_obs: torch.Tensor, done: torch.Tensor,
        alpha: torch.Tensor | float = 0.0,
    ) -> torch.Tensor:
        """y = r + gamma * (1 - done) * agg Qbar(s', a'), a' ~ pi(.|s').
        SAC also subtracts alpha * log pi(a'|s')."""
        eps = self._noise((next_obs.shape[0], self.act_dim))
        return self._td_target(reward, next_obs, done, eps, alpha, self._draw_subset())

    def _td_target(
        self, reward: torch.Tensor, next_obs: torch.Tensor, done: torch.Tensor,
        eps: torch.Tensor, alpha: torch.Tensor | float, subset: torch.Tensor | None = None,
    ) -> torch.Tensor:
        with torch.no_grad():
            next_mean, next_log_std = self.actor(next_obs)
            next_action, next_log_prob = _sample(next_mean, next_log_std, eps)
            if subset is None:
                q_next = self._aggregate(self.critic_target(next_obs, next_action))
            else:  # only the drawn members are evaluated: the others' values would go unused
                members = [p.index_select(0, subset) for p in self._target_params]
                q_next = self.critic_target(next_obs, next_action, params=members).min(dim=0).values
            if self._sac:
                q_next = q_next - alpha * next_log_prob
            return reward + self.config.gamma * (1.0 - done) * q_next

    def _actor_loss(
        self, obs: torch.Tensor, action: torch.Tensor, mean: torch.Tensor,
        log_std: torch.Tensor, q_data: torch.Tensor, alpha: torch.Tensor, eps: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(actor loss, alpha loss, per-sample weights) for the configured objective."""
        objective = self.config.actor_objective
        zero = torch.zeros((), device=self.device)
        if objective == "sac":
            sampled, log_prob = _sample(mean, log_std, eps)  # reparameterised
            critic_params = [p.detach() for p in self.critic.parameters()]
            q_pi = self._actor_q(self.critic(obs, sampled, params=critic_params))
            actor_loss = (alpha.detach() * log_prob - q_pi).mean()
            alpha_loss = zero
            if self.log_alpha.requires_grad:
                alpha_loss = -(self.log_alpha * (log_prob.detach() + self.target_entropy)).mean()
            return actor_loss, alpha_loss, torch.ones_like(log_prob)
        log_prob = gaussian_log_prob(action, mean, log_std)
        if objective == "bc":
            return -log_prob.mean(), zero, torch.ones_like(log_prob)
        with torch.no_grad():
            v_pi = self._actor_q(self.critic(obs, mean.detach()))  # V(s) ~ Q(s, mu(s))
            advantage = self._actor_q(q_data) - v_pi
            weights = awr_weights(
                advantage, self.config.beta, self.config.max_weight, self.config.normalize_weights
            )
        return -(weights * log_prob).mean(), zero, weights

    def _noise(self, shape: tuple[int, ...] | torch.Size) -> torch.Tensor:
        return torch.randn(shape, generator=self.generator, device=self.device)

    def _aggregate(self, q: torch.Tensor, subset: torch.Tensor | None = None) -> torch.Tensor:
        """The TD target's reduction of the ensemble."""
        return aggregate_q(q, self.config.critic_aggregation, self.config.std_coef, subset)

    def _actor_q(self, q: torch.Tensor) -> torch.Tensor:
        """The actor's reduction: the target's, except under subset_min, where it is the mean
        of all members (REDQ; RLPD's actor loss): a random pair's minimum would make the
        advantage's sign depend on the draw."""
        if self._subset_min:
            return q.mean(dim=0)
        return self._aggregate(q)

    def normalize_obs(self, obs: torch.Tensor) -> torch.Tensor:
        """Observations as the networks see them (the dataset normaliser, if enabled)."""
        if self.normalizer is None or not self.config.normalize_obs:
            return obs
        return self.normalizer.normalize(obs)

    def _autocast(self) -> torch.autocast:
        return torch.autocast(
            self.device.type, dtype=torch.bfloat16,
            enabled=self.config.matmul_precision == "bf16",
        )

    # ---- persistence -----------------------------------------------------------------------
    def state_dict(self) -> dict:
        """Everything an exact resume needs except the normaliser (saved by the checkpoint)."""
        return {
            "actor": self.actor.state_dict(),
            "critic": self.critic.state_dict(),
            "critic_target": self.critic_target.state_dict(),
            "log_alpha": self.log_alpha.detach().clone(),
            "optimizer": self.optimizer.state_dict(),
            "generator": self.generator.get_state(),
            "act_generator": self.act_generator.get_state(),
            "num_updates": self.num_updates,
            "guard": self.guard.state_dict(),
            "keeper": self.keeper.state_dict(),
        }

    def load_state_dict(self, state: dict) -> None:
        missing = {"actor", "critic", "critic_target", "log_alpha", "optimizer", "generator",
                   "act_generator", "num_updates", "guard"} - set(state)
        if missing:
            raise KeyError(f"AWAC.load_state_dict: missing keys {sorted(missing)}")
        self.actor.load_state_dict(state["actor"])
        self.critic.load_state_dict(state["critic"])
        self.critic_target.load_state_dict(state["critic_target"])
        with torch.no_grad():
            self.log_alpha.copy_(state["log_alpha"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.num_updates = int(state["num_updates"])
        self._restore_generator(self.generator, state["generator"], offset=0)
        self._restore_generator(self.act_generator, state["act_generator"], offset=1)
        self.guard.load_state_dict(state["guard"], self.actor)
        if "keeper" in state:  # checkpoints from before the keeper have none
            self.keeper.load_state_dict(state["keeper"])

    def _restore_generator(self, generator: torch.Generator, saved: torch.Tensor,
                           offset: int) -> None:
        """The saved noise stream; a checkpoint written on another device type (a CUDA generator's
        state is 16 bytes, a CPU one's about 5 kB) cannot continue it, so the stream starts anew
        from the seed and the update count: the weights resume exactly, the noise does not."""
        if saved.numel() == generator.get_state().numel():
            generator.set_state(saved)
            return
        log.warning("AWAC: the checkpoint's random state is from another device type than %s; "
                    "the noise restarts from seed %d at update %d (the weights, optimiser and "
                    "replay resume exactly)", self.device, self.seed, self.num_updates)
        generator.manual_seed(self.seed + offset + 1_000_003 * self.num_updates)
