"""Running episodes in the twin: one loop for the expert, evaluation and online fine-tuning."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import gymnasium as gym
import numpy as np

import robot_rl.sim_twin  # noqa: F401  (headless rendering settings; env ids: robot_rl.registry)
from robot_rl.robot_config import load_robot
from robot_rl.run_config import PipelineConfig
from robot_rl.safety.gate import SupervisorGate
from robot_rl.sim_twin.experts import Expert, make_expert, run_episode
from robot_rl.tasks.base import Task

Policy = Callable[[np.ndarray], np.ndarray]


@dataclass
class Episode:
    steps: dict[str, np.ndarray]
    success: bool
    seed: int
    info: dict = field(default_factory=dict)

    @property
    def length(self) -> int:
        return len(self.steps["reward"])

    @property
    def episode_return(self) -> float:
        return float(self.steps["reward"].sum())


class GatedEnv:
    """The task's gymnasium environment with the safety supervisor gating every command."""

    def __init__(self, config: PipelineConfig) -> None:
        calibration = load_robot(config.robot)
        self.gate = SupervisorGate(calibration)
        # the env plays the task on the config's robot: the one the gate guards
        self.env = gym.make(config.env_id, command_gate=self.gate,
                            **{"calibration": calibration, **config.env_kwargs})

    @property
    def task(self) -> Task:
        return self.env.unwrapped.task

    @property
    def obs_dim(self) -> int:
        """The task's observation vector (a pixel task's camera view comes beside it)."""
        return self.task.observation_size

    @property
    def act_dim(self) -> int:
        return int(np.prod(self.env.action_space.shape))

    @property
    def action_mode(self) -> str:
        """How the task reads an action: an absolute target or a step (tasks.base.ActionMapping)."""
        return self.env.unwrapped.task.actions.mode

    def run_episode(self, policy: Policy | Expert, seed: int) -> Episode:
        """One episode; ``policy`` is a scripted expert or a function of the observation."""
        actor = policy if isinstance(policy, Expert) else _FunctionPolicy(policy)
        self.gate.reset()
        steps = run_episode(self.env, actor, seed)
        info = steps.pop("info")
        return Episode(steps=steps, success=bool(info["success"]), seed=seed, info=info)

    def expert(self, noise_std: float, seed: int) -> Expert:
        return make_expert(self.env, noise_std, seed)

    def close(self) -> None:
        self.env.close()


class _FunctionPolicy:
    """A learned policy in the shape the twin's episode runner expects of an expert."""

    noise_std = 0.0

    def __init__(self, act: Policy) -> None:
        self.act = act

    def reset(self) -> None:
        pass
