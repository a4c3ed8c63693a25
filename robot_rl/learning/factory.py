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
from robot_rl.learning.replay import BalancedReplay, Generator, ReplayBuffer, SymmetricReplay

CAMERA_KEYS = ("camera_color", "camera_depth")  # a pixel task's frames in an episode store

Replay = ReplayBuffer | BalancedReplay | SymmetricReplay


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


def load_agent(path: str | Path, config: AWACConfig, seed: int = 0,
               handed: bool = False) -> AWAC:
    """An agent restored from a checkpoint: weights, optimisers, targets and normaliser.
    ``handed``: its actor holds the policy handed over (``hand_over``), e.g. the best-measured
    one a learner node's ``learner.pt`` keeps, instead of the last."""
    agent = agent_from_checkpoint(load_checkpoint(path), config, seed)
    return hand_over(agent) if handed else agent


def hand_over(agent: AWAC) -> AWAC:
    """``agent`` with its actor's weights replaced by those of ``agent.handed_actor()`` (the
    keeper's choice under ``handed_policy: best``; unchanged otherwise)."""
    handed = agent.handed_actor()
    if handed is not agent.actor:
        agent.actor.load_state_dict(handed.state_dict())
    return agent


def agent_from_checkpoint(state: Mapping, config: AWACConfig, seed: int = 0) -> AWAC:
    """``load_agent`` for a checkpoint already loaded (``load_checkpoint``'s dict); a pixel
    task's checkpoint gives its ``PixelAgent``."""
    if is_pixel_checkpoint(state):
        return load_pixel_agent(state, config, seed)  # type: ignore[return-value]
    agent = AWAC(int(state["obs_dim"]), int(state["act_dim"]), config, seed=seed)
    restore_agent(state, agent)
    return agent


def make_replay(config: AWACConfig, offline: Mapping[str, np.ndarray], online_capacity: int,
                seed: int, extra_offline_capacity: int = 0) -> Replay:
    """The config's replay (uniform, balanced or symmetric), holding the offline data from the
    start. ``keep_offline_data: false`` (WSRL) is a symmetric replay whose batches are all
    online once online data is stored (all offline before, for pretraining).
    ``extra_offline_capacity``: room on the offline side for transitions added later (an
    operator's corrections, ``hil.replay``), so they never overwrite the dataset."""
    batch = batch_from_steps(offline)
    obs_dim, act_dim = batch["obs"].shape[1], batch["action"].shape[1]
    offline_capacity = len(batch["reward"]) + max(0, int(extra_offline_capacity))
    if config.replay == "symmetric" or not config.keep_offline_data:
        fraction = config.symmetric_offline_fraction if config.keep_offline_data else 0.0
        symmetric = SymmetricReplay.of_transitions(obs_dim, act_dim, max(offline_capacity, 1),
                                                   max(online_capacity, 1), fraction)
        symmetric.add_offline_episode(batch)
        return symmetric
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
    """AWAC updates on ``batch_size`` sampled rows: one update, or, where ``batch_size`` is
    n > 1 times the agent's ``awac.batch_size``, n updates in one fused call
    (``AWAC.update(batch, n_updates=n)``: the G updates of an update-to-data ratio, sampled
    together). Symmetric replay splits each update's slice, not the block; balanced replay takes
    its density-ratio step once per update, and every update of a block samples by the
    priorities as they stood at its start."""
    n_updates = updates_in(batch_size, agent.config.batch_size)
    if isinstance(replay, SymmetricReplay):  # every update's slice split offline / online
        batch = replay.sample(batch_size, generator, slices=n_updates)
    else:
        batch = replay.sample(batch_size, generator)
    metrics = agent.update(batch, n_updates=n_updates)
    if isinstance(replay, BalancedReplay):
        for _ in range(n_updates):
            replay.update_density(generator, agent.normalize_obs)
    return metrics


def updates_in(rows: int, batch_size: int) -> int:
    """How many updates ``rows`` sampled rows make: rows / batch_size where that is a whole
    number above 1, else 1 (a batch of any other size is one update, as it always was)."""
    if rows > batch_size and rows % batch_size == 0:
        return rows // batch_size
    return 1
