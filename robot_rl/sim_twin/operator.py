"""A scripted operator for the twin: the task's expert takes over when the policy is stuck or strays.

It stands in for a person watching online learning with a teleop device in hand, so that the effect
of interventions can be measured and tested. It takes over when the policy has made no progress for
``stuck_steps`` steps (progress: the task's dense reward, which rises toward success) or when the
observation leaves the region the demonstrations cover (``robot_rl.hil.DemoRegion``), then acts
with the scripted expert for ``hold_steps`` steps and hands back. Like a person it sees the scene
(the twin's state and goal); the learner sees only what it records.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import gymnasium as gym
import numpy as np

from robot_rl.hil.triggers import DemoRegion, ProgressWatch
from robot_rl.sim_twin.experts import make_expert


@dataclass(frozen=True)
class OperatorRules:
    """When the scripted operator takes over, for how long, and how often (see the module)."""

    stuck_steps: int = 20
    min_progress: float = 0.02
    hold_steps: int = 20
    max_takeovers_per_episode: int = 2


class ScriptedOperator:
    """``act(obs)`` once per step: the expert's action while in control, else None."""

    def __init__(self, env: gym.Env, rules: OperatorRules, region: DemoRegion | None = None,
                 seed: int = 0) -> None:
        self.env = env.unwrapped
        self.task = self.env.task
        self.rules = rules
        self.region = region
        self.expert = make_expert(env, noise_std=0.0, seed=seed)
        self.watch = ProgressWatch(rules.stuck_steps, rules.min_progress)
        self.reasons: Counter[str] = Counter()   # why it took over, over the whole run
        self.active = False
        self.takeovers = 0                        # in this episode
        self._held = 0

    def reset(self) -> None:
        """A new episode: the policy starts in control."""
        self.active, self.takeovers, self._held = False, 0, 0
        self.watch.reset()

    def act(self, obs: np.ndarray) -> np.ndarray | None:
        if self.active:
            if self._held < self.rules.hold_steps:
                self._held += 1
                return self.expert.act(obs)
            self.active = False              # hand back; the policy gets a fresh window
            self.watch.reset()
        if self.takeovers >= self.rules.max_takeovers_per_episode:
            return None
        progress = self.task.dense_reward(self.env.state(), self.env.goal)
        reason = ("stuck" if self.watch.stuck(progress) else
                  "outside_demonstrations" if self.region is not None and
                  self.region.outside(obs) else None)
        if reason is None:
            return None
        self.reasons[reason] += 1
        self.active, self.takeovers, self._held = True, self.takeovers + 1, 1
        self.expert.reset()                  # its gait starts from where the fingers are
        return self.expert.act(obs)
