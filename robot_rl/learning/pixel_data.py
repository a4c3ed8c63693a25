"""A pixel task's learning side: its agent, and a replay filled from a dataset's
episodes one at a time (each frame read once into the replay, never held twice).

A pixel task's dataset holds, per step, the task's vector (``observation``, ``next_observation``),
its camera view (``camera_color``, ``camera_depth`` with depth) and, recorded in the twin, the state
layout (``state_observation``); ``data.transition_arrays.check_view`` refuses one recorded with another view.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from robot_rl.config import to_dict
from robot_rl.data import EpisodeStore
from robot_rl.data.transition_arrays import check_view
from robot_rl.learning.factory import CAMERA_KEYS
from robot_rl.learning.image_replay import FeatureReplay, ImageReplay
from robot_rl.learning.normalizer import Normalizer
from robot_rl.learning.pixel_agent import PixelAgent
from robot_rl.learning.replay import SymmetricReplay
from robot_rl.run_config import PipelineConfig
from robot_rl.tasks.base import Task

PixelReplay = ImageReplay | FeatureReplay | SymmetricReplay


def new_pixel_agent(config: PipelineConfig, task: Task, data: Mapping[str, np.ndarray]
                    ) -> PixelAgent:
    """A PixelAgent for ``task``'s view, its vector normalised with the data's statistics."""
    assert task.image is not None
    agent = PixelAgent(task.observation_size, task.n_joints, task.image, config.awac,
                       config.encoder, seed=config.seed)
    agent.set_state_normalizer(Normalizer.from_data(data["observation"]))
    return agent


def check_pixel_store(store: EpisodeStore, task: Task, consumer: str) -> None:
    """The store's frames must be the task's view."""
    assert task.image is not None
    check_view(store, to_dict(task.image), consumer)


def pixel_replay(agent: PixelAgent, dataset_path: Path, data: Mapping[str, np.ndarray],
                 online_capacity: int) -> PixelReplay:
    """The agent's replay holding the dataset: ``data`` (``transitions`` of the store: every row,
    since a pixel store has next_observation) gives the checked vectors, the store the frames,
    episode by episode. ``awac.replay: symmetric`` (or ``keep_offline_data: false``) gives the
    offline and online frames a replay each, sampled as a state task's are; else one replay."""
    config = agent.config
    with EpisodeStore.open(dataset_path, "r") as store:
        if len(data["reward"]) != store.n_steps:  # transitions dropped rows: no next_observation
            raise ValueError(f"{dataset_path}: {len(data['reward'])} transitions for "
                             f"{store.n_steps} steps; a pixel dataset holds next_observation")
        replay: PixelReplay
        if config.replay == "symmetric" or not config.keep_offline_data:
            fraction = config.symmetric_offline_fraction if config.keep_offline_data else 0.0
            # room for one more episode: the budget's last episode runs past it, and a frame
            # replay takes only whole episodes
            longest = max((end - start for start, end in map(store.episode_bounds,
                                                             range(store.n_episodes))), default=1)
            replay = SymmetricReplay(agent.make_replay(max(store.n_steps, 1)),
                                     agent.make_replay(online_capacity + longest), fraction)
            add = replay.add_offline_episode
        else:
            replay = agent.make_replay(max(store.n_steps + online_capacity, 1))
            add = replay.add_episode
        keys = [k for k in CAMERA_KEYS if k in store.keys]
        for index in range(store.n_episodes):
            start, end = store.episode_bounds(index)
            episode = {"obs": data["observation"][start:end], "action": data["action"][start:end],
                       "reward": data["reward"][start:end],
                       "next_obs": data["next_observation"][start:end],
                       "done": data["done"][start:end], **store.episode(index, keys)}
            add(episode)
    return replay
