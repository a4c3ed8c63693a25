"""A tiny valve pixel run for the graph and hil tests: a config file (what a user writes to take
the valve from pixels on the graph), a two-episode dataset recorded with the twin's view, and an
offline checkpoint pretrained on it in process."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

# extends the valve's config: observation pixels (the one task setting the graph's nodes take
# from a config), a tiny encoder and networks, a two-episode dataset
PIXEL_CONFIG = """\
extends: valve
env_kwargs: {config: {observation: pixels}}
encoder: {channels: [4, 8], strides: [2, 2], feature_dim: 8}
dataset: {demonstrations: 1, noisy_trajectories: 1, noise_std: 0.4}
pretrain: {updates: 20, log_every_updates: 10}
finetune: {env_steps: 40, eval_every_env_steps: 40}
eval: {episodes: 1}
awac: {batch_size: 32, actor_hidden_sizes: [16, 16], critic_hidden_sizes: [16, 16]}
"""


@dataclass(frozen=True)
class PixelRun:
    config: Path      # the YAML above
    dataset: Path     # recorded with the valve's view (camera_color)
    checkpoint: Path  # offline.pt: a PixelAgent's


def make_pixel_run(folder: Path) -> PixelRun:
    from robot_rl.pipeline import stages
    from robot_rl.run_config import load_pipeline_config

    config_path = folder / "valve_pixels.yaml"
    config_path.write_text(PIXEL_CONFIG)
    config = load_pipeline_config(str(config_path))
    dataset = folder / "valve_pixels.zarr"
    stages.record(config, dataset, progress=False)
    checkpoint = stages.pretrain(config, dataset, folder / "offline", progress=False)
    return PixelRun(config_path, dataset, checkpoint)
