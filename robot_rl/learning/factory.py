"""Building an agent and its replay from recorded data; one place for the pipeline and the learner node.

Recorded episodes use the data layer's keys (observation, action, reward, next_observation,
terminated); the learning core's batches use obs, action, reward, next_obs, done.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from robot_rl.learning.awac import AWAC
from robot_rl.learning.checkpoint import load_checkpoint, restore_agent
from robot_rl.learning.config import AWACConfig
from robot_rl.learning.device import resolve_device
from robot_rl.learning.normalizer import Normalizer
from robot_rl.learning.replay import BalancedReplay, Generator, ReplayBuffer

Replay = ReplayBuffer | BalancedReplay


def batch_from_steps(steps: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Recorded steps as replay transitions; ``done`` is termination, never time-limit truncation."""
    done = steps["done"] if "done" in steps else steps["terminated"]
    return {"obs": steps["observation"], "action": steps["action"], "reward": steps["reward"],
            "next_obs": steps["next_observation"], "done": np.asarray(done, dtype=np.float32)}


def new_agent(config: AWACConfig, data: Mapping[str, np.ndarray], seed: int) -> AWAC:
    """An AWAC agent shaped for the data, with its observation normaliser from the data."""
    agent = AWAC(data["observation"].shape[1], data["action"].shape[1], config, seed=seed)
    agent.set_normalizer(Normalizer.from_data(data["observation"]))
    return agent


def load_agent(path: str | Path, config: AWACConfig, seed: int = 0) -> AWAC:
    """An agent restored from a checkpoint: weights, optimisers, targets and normaliser."""
    return agent_from_checkpoint(load_checkpoint(path), config, seed)


def agent_from_checkpoint(state: Mapping, config: AWACConfig, seed: int = 0) -> AWAC:
    """``load_agent`` for a checkpoint already loaded (``load_checkpoint``'s dict)."""
    agent = AWAC(int(state["obs_dim"]), int(state["act_dim"]), config, seed=seed)
    restore_agent(state, agent)
    return agent


def make_replay(config: AWACConfig, offline: Mapping[str, np.ndarray], online_capacity: int,
                seed: int, extra_offline_capacity: int = 0) -> Replay:
    """The config's replay (uniform or balanced), holding the offline data from the start.
    ``extra_offline_capacity``: room on the offline side for transitions added later (an
    operator's corrections, ``hil.replay``), so they never overwrite the dataset."""
    batch = batch_from_steps(offline)
    obs_dim, act_dim = batch["obs"].shape[1], batch["action"].shape[1]
    offline_capacity = len(batch["reward"]) + max(0, int(extra_offline_capacity))
    if config.replay == "balanced":
        # its density-ratio network reads the agent's normalised observations: the agent's device
        replay = BalancedReplay(obs_dim, act_dim, max(offline_capacity, 1), max(online_capacity, 1),
                                config.balanced_replay, device=resolve_device(config.device),
                                seed=seed)
        replay.add_offline_episode(batch)
        return replay
    uniform = ReplayBuffer(obs_dim, act_dim, max(offline_capacity + online_capacity, 1))
    uniform.add_episode(batch)
    return uniform


def train_step(agent: AWAC, replay: Replay, batch_size: int,
               generator: Generator) -> Mapping[str, float]:
    """One AWAC update; balanced replay also takes its density-ratio step on the same batch."""
    metrics = agent.update(replay.sample(batch_size, generator))
    if isinstance(replay, BalancedReplay):
        replay.update_density(generator, agent.normalize_obs)
    return metrics
