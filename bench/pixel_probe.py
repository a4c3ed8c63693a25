"""How much of the object's state an image encoder's features carry: a linear probe.

Usage: PYTHONPATH=. python bench/pixel_probe.py DATASET ENCODER [ENCODER ...]

DATASET is a pixel task's dataset (frames and the state layout, as bench/pixel_study.py records);
each ENCODER is a frozen encoder file or a checkpoint of a pixel agent (its encoder). For each,
ridge regression from the frames' features to the object's state read from the episodes' state
layout (valve: cos and sin of the valve angle and of 3x it, the spokes' symmetry; drawer: the
opening), fitted on the first 80% of episodes and scored (R^2) on the rest. The probe only
measures; nothing it reads reaches a policy. A random (untrained) encoder of the same shape is the
floor.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

from robot_rl.data import EpisodeStore
from robot_rl.learning.checkpoint import load_checkpoint
from robot_rl.learning.encoders import ConvEncoder, encoder_from_state, load_frozen_encoder
from robot_rl.tasks.camera import ImageObservationConfig, network_images


def targets(store: EpisodeStore) -> tuple[np.ndarray, list[str]]:
    from robot_rl.agent.tasks import make_task
    from robot_rl.registry import env_id_task
    from robot_rl.robot_config import load_robot

    task = make_task(env_id_task(store.attrs["task"]), load_robot(store.attrs["robot"]))
    state = store.read("state_observation")
    if "valve_cos_sin" in task.layout:
        cos_sin = task.field(state, "valve_cos_sin")
        angle = np.arctan2(cos_sin[:, 1], cos_sin[:, 0])
        return (np.stack([np.cos(angle), np.sin(angle), np.cos(3 * angle), np.sin(3 * angle)], 1),
                ["cos", "sin", "cos 3x", "sin 3x"])
    return task.field(state, "opening_m"), ["opening"]


def encoder_of(path: Path) -> ConvEncoder:
    try:
        return load_frozen_encoder(path)[0]
    except ValueError:
        state = load_checkpoint(path)
        return encoder_from_state(state["agent"]["encoder"], str(path))[0]


def features(encoder: ConvEncoder, frames: np.ndarray) -> np.ndarray:
    with torch.inference_mode():
        return np.concatenate([encoder.eval()(torch.from_numpy(frames[i:i + 256])).numpy()
                               for i in range(0, len(frames), 256)])


def probe(x: np.ndarray, y: np.ndarray, train: np.ndarray, ridge: float = 1e-2) -> np.ndarray:
    """R^2 per target on the held-out rows."""
    xa = np.concatenate([x, np.ones((len(x), 1))], 1)
    a, b = xa[train], y[train]
    w = np.linalg.solve(a.T @ a + ridge * np.eye(a.shape[1]), a.T @ b)
    pred, truth = xa[~train] @ w, y[~train]
    return 1 - ((pred - truth) ** 2).sum(0) / ((truth - truth.mean(0)) ** 2).sum(0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dataset", type=Path)
    parser.add_argument("encoders", type=Path, nargs="+")
    args = parser.parse_args()
    torch.set_num_threads(1)
    store = EpisodeStore.open(args.dataset)
    view = ImageObservationConfig(**{k: tuple(v) if isinstance(v, list) else v
                                     for k, v in store.attrs["extra"]["view"].items()})
    depth = store.read("camera_depth") if view.depth else None
    frames = network_images(store.read("camera_color"), depth, view)
    y, names = targets(store)
    ends = store.episode_ends
    split = int(ends[int(0.8 * len(ends)) - 1])
    train = np.arange(len(frames)) < split
    print(f"{args.dataset}: {len(frames)} frames, probe trained on {train.sum()}, scored on "
          f"{(~train).sum()} (R^2 of {', '.join(names)})")
    encoders = [(str(p), encoder_of(p)) for p in args.encoders]
    first = encoders[0][1]
    torch.manual_seed(0)
    from robot_rl.learning.encoders import EncoderConfig

    shape_config = EncoderConfig(feature_dim=first.feature_dim)
    encoders.append(("random encoder (the floor)", ConvEncoder(first.image_shape, shape_config)))
    for name, encoder in encoders:
        r2 = probe(features(encoder, frames), y, train)
        print(f"  {name}: " + ", ".join(f"{n} {v:.2f}" for n, v in zip(names, r2)))


if __name__ == "__main__":
    sys.exit(main())
