"""Which policy fine-tuning hands the user: "fine-tuning does no harm".

Online fine-tuning can end below where it started (the drawer's plain AWAC dipped from 1.0 to 0.7
and ended at 0.9; docs/results.md). A robot whose policy already worked must not be handed a worse
one. The keeper is told each measurement of the policy being fine-tuned (its success rate, and a
label such as the online env step it was measured at), the offline policy's first, and keeps a
copy of the actor at the best measurement so far; with ``handed_policy: best`` that copy, not the
last actor, is the policy handed over at the end. Ties go to the later measurement: a policy that
has trained longer and measures as well is preferred.

The measurements are what the caller has: evaluation episodes of the deterministic policy in the
in-process pipeline (``stages.finetune``), or, on the graph, where nothing is evaluated, the
success of the exploring episodes in windows of ``keeper_window_episodes`` (``BackgroundTrainer``;
the offline policy's first window is the warm start's). Choosing the best of several noisy
measurements favours a lucky one: the handed policy's own success is to be measured again on
episodes the choice did not see (bench/experiments.py does).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn


@dataclass(frozen=True)
class Kept:
    success: float
    label: int  # e.g. the online env steps at which the policy was measured


class PolicyKeeper:
    def __init__(self) -> None:
        self.kept: Kept | None = None
        self.offline: Kept | None = None  # the first measurement (the policy before online)
        self._state: dict[str, torch.Tensor] | None = None

    def record(self, success: float, label: int, policy: nn.Module) -> bool:
        """A measurement of ``policy``; True when it is kept (success >= the best so far)."""
        measured = Kept(float(success), int(label))
        if self.offline is None:
            self.offline = measured
        if self.kept is not None and measured.success < self.kept.success:
            return False
        self.kept = measured
        self._state = {k: v.detach().clone().cpu() for k, v in policy.state_dict().items()}
        return True

    def handed(self, policy: nn.Module) -> nn.Module:
        """A copy of ``policy`` (the actor being fine-tuned) with the kept weights; ``policy``
        itself when nothing was recorded."""
        if self._state is None:
            return policy
        handed = copy.deepcopy(policy)
        handed.load_state_dict(self._state)
        return handed

    def state_dict(self) -> dict[str, Any]:
        return {"kept": None if self.kept is None else [self.kept.success, self.kept.label],
                "offline": None if self.offline is None else [self.offline.success,
                                                              self.offline.label],
                "policy": self._state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.kept = None if state["kept"] is None else Kept(float(state["kept"][0]),
                                                            int(state["kept"][1]))
        self.offline = None if state["offline"] is None else Kept(float(state["offline"][0]),
                                                                  int(state["offline"][1]))
        self._state = state["policy"]


class LastPolicyKeeper(PolicyKeeper):
    """Measures but keeps nothing: ``handed`` is always the last policy. For an agent whose
    acting policy is more than the actor (a pixel agent whose encoder the critic trains: an
    earlier actor on today's encoder is a policy that was never measured)."""

    def record(self, success: float, label: int, policy: nn.Module) -> bool:
        if self.offline is None:
            self.offline = Kept(float(success), int(label))
        return False
