"""Guard against policy collapse when online fine-tuning starts (Luo et al. 2023).

Two independent mechanisms, both anchored on a frozen snapshot of the offline policy taken by `arm`:
- a conservative update: the actor loss gains c_t * D(snapshot, policy), with c_t decaying linearly
  from `conservative_weight` to 0 over the first `conservative_decay_updates` online updates;
- a fallback rule: the pipeline reports evaluation successes; while the online policy's recent mean
  success trails the offline policy's by more than `fallback_margin`, the snapshot acts instead.
"""

from __future__ import annotations

import copy
from collections import deque

import torch
from torch import nn

from robot_rl.learning.config import CollapseGuardConfig
from robot_rl.learning.networks import GaussianPolicy, gaussian_kl, gaussian_log_prob


class CollapseGuard:
    def __init__(self, config: CollapseGuardConfig) -> None:
        self.config = config
        self.snapshot: GaussianPolicy | None = None
        self.online_updates = 0
        self.offline_successes: list[float] = []
        self.online_successes: deque[float] = deque(maxlen=config.fallback_window)

    # ---- snapshot -------------------------------------------------------------------------
    def arm(self, policy: GaussianPolicy) -> None:
        """Freeze a copy of the offline policy; online updates are counted from here."""
        self.snapshot = _frozen_copy(policy)
        self.online_updates = 0
        self.online_successes.clear()

    @property
    def armed(self) -> bool:
        return self.snapshot is not None

    # ---- (a) conservative update ----------------------------------------------------------
    def conservative_weight(self) -> float:
        """c_t = c_0 * max(0, 1 - t / K); 0 when disabled or not armed."""
        if not (self.config.conservative and self.armed):
            return 0.0
        remaining = 1.0 - self.online_updates / self.config.conservative_decay_updates
        return self.config.conservative_weight * max(0.0, remaining)

    def conservative_loss(
        self, obs: torch.Tensor, mean: torch.Tensor, log_std: torch.Tensor
    ) -> torch.Tensor:
        """D(snapshot(s), pi(s)) averaged over the batch (obs already normalised)."""
        if self.snapshot is None:
            raise RuntimeError("CollapseGuard.conservative_loss: call arm(policy) first")
        with torch.no_grad():
            snap_mean, snap_log_std = self.snapshot(obs)
        if self.config.conservative_term == "kl":
            return gaussian_kl(snap_mean, snap_log_std, mean, log_std).mean()
        return -gaussian_log_prob(snap_mean, mean, log_std).mean()

    def step(self) -> None:
        """Count one online gradient update (drives the decay)."""
        if self.armed:
            self.online_updates += 1

    # ---- (b) fallback rule -----------------------------------------------------------------
    def record_offline_success(self, success: float) -> None:
        """An evaluation of the offline (snapshot) policy, e.g. a success rate in [0, 1]."""
        self.offline_successes.append(float(success))

    def record_online_success(self, success: float) -> None:
        """An evaluation of the policy being fine-tuned."""
        self.online_successes.append(float(success))

    def use_snapshot(self) -> bool:
        """True while the online policy's recent mean success < offline mean - margin.
        With no online evaluation yet there is no evidence of collapse: the online policy acts."""
        if not (self.config.fallback and self.armed):
            return False
        if not self.offline_successes or not self.online_successes:
            return False
        offline = sum(self.offline_successes) / len(self.offline_successes)
        online = sum(self.online_successes) / len(self.online_successes)
        return online < offline - self.config.fallback_margin

    def acting_policy(self, online_policy: nn.Module) -> nn.Module:
        return self.snapshot if self.use_snapshot() else online_policy  # type: ignore[return-value]

    # ---- persistence -----------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {
            "snapshot": None if self.snapshot is None else self.snapshot.state_dict(),
            "online_updates": self.online_updates,
            "offline_successes": list(self.offline_successes),
            "online_successes": list(self.online_successes),
        }

    def load_state_dict(self, state: dict, policy_template: GaussianPolicy) -> None:
        snap = state["snapshot"]
        if snap is None:
            self.snapshot = None
        else:
            self.snapshot = _frozen_copy(policy_template)
            self.snapshot.load_state_dict(snap)
        self.online_updates = int(state["online_updates"])
        self.offline_successes = [float(x) for x in state["offline_successes"]]
        self.online_successes = deque(
            (float(x) for x in state["online_successes"]), maxlen=self.config.fallback_window
        )


def _frozen_copy(policy: GaussianPolicy) -> GaussianPolicy:
    snap = copy.deepcopy(policy)
    snap.requires_grad_(False)
    snap.eval()
    return snap
