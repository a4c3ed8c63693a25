"""The pipeline's learning side for a pixel task: its agent, and a replay filled from a dataset's
episodes one at a time (each frame read once into the replay, never held twice).

A pixel task's dataset holds, per step, the task's vector (``observation``, ``next_observation``),
its camera view (``camera_color``, ``camera_depth`` with depth) and, recorded in the twin, the state
layout (``state_observation``); ``data.replay.check_view`` refuses one recorded with another view.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from contextlib import closing
from pathlib import Path

import numpy as np

from robot_rl.config import to_dict
from robot_rl.data import EpisodeStore
from robot_rl.data.replay import check_view
from robot_rl.learning.encoders import FrozenTraining, save_frozen_encoder, train_frozen_encoder
from robot_rl.learning.factory import CAMERA_KEYS
from robot_rl.learning.image_replay import FeatureReplay, ImageReplay
from robot_rl.learning.normalizer import Normalizer
from robot_rl.learning.pixel_agent import PixelAgent
from robot_rl.pipeline.config import PipelineConfig
from robot_rl.tasks.base import Task
from robot_rl.tasks.camera import network_images

PixelReplay = ImageReplay | FeatureReplay


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
    episode by episode."""
    with EpisodeStore.open(dataset_path, "r") as store:
        if len(data["reward"]) != store.n_steps:  # transitions dropped rows: no next_observation
            raise ValueError(f"{dataset_path}: {len(data['reward'])} transitions for "
                             f"{store.n_steps} steps; a pixel dataset holds next_observation")
        replay = agent.make_replay(max(store.n_steps + online_capacity, 1))
        keys = [k for k in CAMERA_KEYS if k in store.keys]
        for index in range(store.n_episodes):
            start, end = store.episode_bounds(index)
            episode = {"obs": data["observation"][start:end], "action": data["action"][start:end],
                       "reward": data["reward"][start:end],
                       "next_obs": data["next_observation"][start:end],
                       "done": data["done"][start:end], **store.episode(index, keys)}
            replay.add_episode(episode)
    return replay


def train_dataset_encoder(dataset_path: Path, config: PipelineConfig, out: Path, *,
                          steps: int = 2000, batch_size: int = 64, overwrite: bool = False,
                          log: Callable[[str], None] | None = None) -> FrozenTraining:
    """A frozen encoder for ``config``'s pixel task (``encoder`` settings, its view), trained on
    the dataset's frames as an autoencoder (no other data, no labels) and saved to ``out``; set
    ``encoder.kind: frozen`` and ``encoder.frozen_path`` to it to learn on its features."""
    from robot_rl.pipeline.rollout import GatedEnv

    with closing(GatedEnv(config)) as env:
        task = env.task
    if task.image is None:
        raise ValueError(f"{config.env_id}: not a pixel task (env_kwargs {{config: {{observation: "
                         f"pixels}}}}): no view to train an encoder for")
    if out.exists() and not overwrite:  # refused before minutes of training
        raise FileExistsError(f"{out} exists; choose another path or pass --overwrite")
    with EpisodeStore.open(dataset_path, "r") as store:
        check_pixel_store(store, task, "the encoder")
        depth = store.read("camera_depth") if task.image.depth else None
        frames = network_images(store.read("camera_color"), depth, task.image)
    encoder, info = train_frozen_encoder(frames, config.encoder, steps=steps,
                                         batch_size=batch_size, seed=config.seed, log=log)
    save_frozen_encoder(out, encoder, config.encoder, overwrite=overwrite)
    return info
