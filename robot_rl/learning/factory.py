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
from robot_rl.learning.pixel_agent import is_pixel_checkpoint, load_pixel_agent
from robot_rl.learning.replay import BalancedReplay, Generator, ReplayBuffer

CAMERA_KEYS = ("camera_color", "camera_depth")  # a pixel task's frames in an episode store

Replay = ReplayBuffer | BalancedReplay


def batch_from_steps(steps: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Recorded steps as replay transitions; ``done`` is termination, never time-limit truncation.
    A pixel task's camera frames come along (a pixel replay turns them into its images)."""
    done = steps["done"] if "done" in steps else steps["terminated"]
    batch = {"obs": steps["observation"], "action": steps["action"], "reward": steps["reward"],
             "next_obs": steps["next_observation"], "done": np.asarray(done, dtype=np.float32)}
    return batch | {k: steps[k] for k in CAMERA_KEYS if k in steps}


def new_agent(config: AWACConfig, data: Mapping[str, np.ndarray], seed: int) -> AWAC:
    """An AWAC agent shaped for the data, with its observation normaliser from the data."""
    agent = AWAC(data["observation"].shape[1], data["action"].shape[1], config, seed=seed)
    agent.set_normalizer(Normalizer.from_data(data["observation"]))
    return agent


def load_agent(path: str | Path, config: AWACConfig, seed: int = 0) -> AWAC:
    """An agent restored from a checkpoint: weights, optimisers, targets and normaliser."""
    return agent_from_checkpoint(load_checkpoint(path), config, seed)


def agent_from_checkpoint(state: Mapping, config: AWACConfig, seed: int = 0) -> AWAC:
    """``load_agent`` for a checkpoint already loaded (``load_checkpoint``'s dict); a pixel
    task's checkpoint gives its ``PixelAgent``."""
    if is_pixel_checkpoint(state):
        return load_pixel_agent(state, config, seed)  # type: ignore[return-value]
    agent = AWAC(int(state["obs_dim"]), int(state["act_dim"]), config, seed=seed)
    restore_agent(state, agent)
    return agent


def make_replay(config: AWACConfig, offline: Mapping[str, np.ndarray], online_capacity: int,
                seed: int) -> Replay:
    """The config's replay (uniform or balanced), holding the offline data from the start."""
    batch = batch_from_steps(offline)
    obs_dim, act_dim = batch["obs"].shape[1], batch["action"].shape[1]
    n_offline = len(batch["reward"])
    if config.replay == "balanced":
        # its density-ratio network reads the agent's normalised observations: the agent's device
        replay = BalancedReplay(obs_dim, act_dim, max(n_offline, 1), max(online_capacity, 1),
                                config.balanced_replay, device=resolve_device(config.device),
                                seed=seed)
        replay.add_offline_episode(batch)
        return replay
    uniform = ReplayBuffer(obs_dim, act_dim, max(n_offline + online_capacity, 1))
    uniform.add_episode(batch)
    return uniform


def train_step(agent: AWAC, replay: Replay, batch_size: int,
               generator: Generator) -> Mapping[str, float]:
    """One AWAC update; balanced replay also takes its density-ratio step on the same batch."""
    metrics = agent.update(replay.sample(batch_size, generator))
    if isinstance(replay, BalancedReplay):
        replay.update_density(generator, agent.normalize_obs)
    return metrics
