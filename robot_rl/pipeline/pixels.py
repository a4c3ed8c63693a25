"""A frozen image encoder trained on a dataset's frames, for a pixel task run by the pipeline."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import closing
from pathlib import Path

from robot_rl.data import EpisodeStore
from robot_rl.learning.encoders import FrozenTraining, save_frozen_encoder, train_frozen_encoder
from robot_rl.learning.pixel_data import check_pixel_store
from robot_rl.pipeline.rollout import GatedEnv
from robot_rl.run_config import PipelineConfig
from robot_rl.tasks.camera import network_images


def train_dataset_encoder(dataset_path: Path, config: PipelineConfig, out: Path, *,
                          steps: int = 2000, batch_size: int = 64, overwrite: bool = False,
                          log: Callable[[str], None] | None = None) -> FrozenTraining:
    """A frozen encoder for ``config``'s pixel task (``encoder`` settings, its view), trained on
    the dataset's frames as an autoencoder (no other data, no labels) and saved to ``out``; set
    ``encoder.kind: frozen`` and ``encoder.frozen_path`` to it to learn on its features."""
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
