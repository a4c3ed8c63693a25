"""Replay for pixel tasks: every camera frame held once, in the network's layout.

A transition's next observation is the next step of its episode, so its next frame is the frame
stored in the next slot: ``ImageReplay`` keeps one frame per step (H, W, C uint8) and an index to
the next one, not a second copy; the proprioceptive vectors (small) are kept as obs and next_obs.
An episode's last step is a transition only if it terminated (its next observation is then never
read: done = 1); a step cut by the time limit has no next frame, as in an episode store (whose
rows hold each step's own frame), and is kept as a frame only.

``FeatureReplay`` is the frozen encoder's: features are computed once per frame as an episode
enters, and transitions are plain vectors (proprioception, features) in a ``ReplayBuffer``.

Episodes come as mappings of time-major arrays: ``obs`` and ``next_obs`` (the task's vector),
``action``, ``reward``, ``done``, and ``image`` (T, H, W, C) uint8 in the network's layout, or,
for a replay given the task's ``view``, the recorded ``camera_color`` (T, H, W, 3) (and
``camera_depth``) from which it makes ``image`` (``tasks.camera.network_images``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np
import torch

from robot_rl.learning.replay import Generator, ReplayBuffer
from robot_rl.tasks.camera import ImageObservationConfig, network_images

PIXEL_KEYS = ("obs", "action", "reward", "next_obs", "done", "image")


def with_network_images(episode: Mapping[str, np.ndarray], view: ImageObservationConfig | None
                        ) -> Mapping[str, np.ndarray]:
    """``episode`` with its ``image`` made from recorded camera keys, if it has none."""
    if "image" in episode or view is None or "camera_color" not in episode:
        return episode
    depth = episode.get("camera_depth") if view.depth else None
    return {**episode, "image": network_images(np.asarray(episode["camera_color"]), depth, view)}


def _check_episode(episode: Mapping[str, np.ndarray], where: str) -> int:
    missing = [k for k in PIXEL_KEYS if k not in episode]
    if missing:
        raise KeyError(f"{where}: missing keys {missing}, expected {PIXEL_KEYS}")
    lengths = {k: len(episode[k]) for k in PIXEL_KEYS}
    if len(set(lengths.values())) != 1:
        raise ValueError(f"{where}: keys have different numbers of steps {lengths}")
    return lengths["obs"]


def transition_mask(done: np.ndarray) -> np.ndarray:
    """Which steps of one episode are transitions: all but the last, which is one if it ended
    the episode by termination (its successor is then never used)."""
    done = np.asarray(done, dtype=bool).reshape(-1)
    keep = np.ones(len(done), bool)
    if len(done):
        keep[-1] = done[-1]
    return keep


class ImageReplay:
    """A preallocated ring of steps: proprioceptive vectors, actions, rewards, one frame each.

    Episodes are written whole; the oldest steps are overwritten first, so a partly overwritten
    episode keeps its later steps, whose next frames are later still (never overwritten)."""

    def __init__(self, state_dim: int, act_dim: int, image_shape: tuple[int, int, int],
                 capacity: int, view: ImageObservationConfig | None = None) -> None:
        if capacity < 1:
            raise ValueError(f"ImageReplay: capacity must be >= 1, got {capacity}")
        self.state_dim, self.act_dim, self.capacity = state_dim, act_dim, capacity
        self.view = view
        self.image_shape = tuple(int(v) for v in image_shape)
        # np.zeros maps untouched pages lazily: a large capacity costs memory only as it fills
        self.frames = np.zeros((capacity, *self.image_shape), np.uint8)
        self.obs = np.zeros((capacity, state_dim), np.float32)
        self.next_obs = np.zeros((capacity, state_dim), np.float32)
        self.action = np.zeros((capacity, act_dim), np.float32)
        self.reward = np.zeros(capacity, np.float32)
        self.done = np.zeros(capacity, np.float32)
        self.next_slot = np.zeros(capacity, np.int64)
        self.valid = np.zeros(capacity, bool)
        self.position = 0  # next slot to write
        self.size = 0      # slots holding a step

    def __len__(self) -> int:
        """Transitions that can be sampled."""
        return int(self.valid[: self.size].sum())

    @property
    def nbytes(self) -> int:
        """Bytes of the arrays (the frames dominate)."""
        return sum(a.nbytes for a in (self.frames, self.obs, self.next_obs, self.action,
                                      self.reward, self.done, self.next_slot, self.valid))

    def add_episode(self, episode: Mapping[str, np.ndarray]) -> np.ndarray:
        """Write one episode's steps; returns their slots."""
        episode = with_network_images(episode, self.view)
        n = _check_episode(episode, "ImageReplay.add_episode")
        if n > self.capacity:
            raise ValueError(f"ImageReplay: an episode of {n} steps does not fit a capacity of "
                             f"{self.capacity}")
        images = np.asarray(episode["image"])
        if images.shape[1:] != self.image_shape or images.dtype != np.uint8:
            raise ValueError(f"ImageReplay: frames {images.shape[1:]} {images.dtype}, expected "
                             f"{self.image_shape} uint8 (H, W, C)")
        slots = (self.position + np.arange(n)) % self.capacity
        self.frames[slots] = images
        self.obs[slots] = np.asarray(episode["obs"], np.float32).reshape(n, self.state_dim)
        self.next_obs[slots] = np.asarray(episode["next_obs"],
                                          np.float32).reshape(n, self.state_dim)
        self.action[slots] = np.asarray(episode["action"], np.float32).reshape(n, self.act_dim)
        self.reward[slots] = np.asarray(episode["reward"], np.float32).reshape(n)
        done = np.asarray(episode["done"], np.float32).reshape(n)
        self.done[slots] = done
        self.next_slot[slots] = np.append(slots[1:], slots[-1:])
        self.valid[slots] = transition_mask(done)
        self.position = int((self.position + n) % self.capacity)
        self.size = min(self.size + n, self.capacity)
        return slots

    def indices(self, batch_size: int, generator: Generator) -> np.ndarray:
        """Uniform over transitions: slots drawn over all steps, those without a successor
        redrawn (one step in an episode's length at most)."""
        if len(self) == 0:
            raise ValueError("ImageReplay.sample: no transitions (an episode cut by the time "
                             "limit after one step holds none)")
        idx = _draw(self.size, batch_size, generator)
        bad = ~self.valid[idx]
        while bad.any():
            idx[bad] = _draw(self.size, int(bad.sum()), generator)
            bad = ~self.valid[idx]
        return idx

    def gather(self, idx: np.ndarray, device: str | torch.device = "cpu"
               ) -> dict[str, torch.Tensor]:
        columns = {"obs": self.obs[idx], "action": self.action[idx], "reward": self.reward[idx],
                   "next_obs": self.next_obs[idx], "done": self.done[idx],
                   "image": self.frames[idx], "next_image": self.frames[self.next_slot[idx]]}
        return {k: torch.from_numpy(v).to(device) for k, v in columns.items()}

    def sample(self, batch_size: int, generator: Generator,
               device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
        """obs, action, reward, next_obs, done (float32) and image, next_image (uint8)."""
        return self.gather(self.indices(batch_size, generator), device)


class FeatureReplay:
    """Transitions of (proprioception, frozen-encoder features) vectors in a ReplayBuffer.

    ``encode(frames (T, H, W, C) uint8) -> (T, F) float32`` runs once per frame as its episode
    enters; no frame is kept."""

    def __init__(self, state_dim: int, feature_dim: int, act_dim: int, capacity: int,
                 encode: Callable[[np.ndarray], np.ndarray],
                 view: ImageObservationConfig | None = None) -> None:
        self.encode, self.view = encode, view
        self.state_dim, self.feature_dim = state_dim, feature_dim
        self.buffer = ReplayBuffer(state_dim + feature_dim, act_dim, capacity)

    def __len__(self) -> int:
        return len(self.buffer)

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in self.buffer.data.values())

    def add_episode(self, episode: Mapping[str, np.ndarray]) -> None:
        episode = with_network_images(episode, self.view)
        n = _check_episode(episode, "FeatureReplay.add_episode")
        features = np.asarray(self.encode(np.asarray(episode["image"])), np.float32)
        if features.shape != (n, self.feature_dim):
            raise ValueError(f"FeatureReplay: the encoder gave {features.shape}, expected "
                             f"({n}, {self.feature_dim})")
        keep = transition_mask(episode["done"])
        following = np.append(features[1:], features[-1:], axis=0)
        obs = np.concatenate([np.asarray(episode["obs"], np.float32), features], axis=1)
        next_obs = np.concatenate([np.asarray(episode["next_obs"], np.float32), following],
                                  axis=1)
        if keep.any():
            self.buffer.add(obs[keep], np.asarray(episode["action"])[keep],
                            np.asarray(episode["reward"])[keep], next_obs[keep],
                            np.asarray(episode["done"])[keep])

    def sample(self, batch_size: int, generator: Generator,
               device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
        return self.buffer.sample(batch_size, generator, device)


def _draw(high: int, n: int, generator: Generator) -> np.ndarray:
    if isinstance(generator, torch.Generator):
        return torch.randint(0, high, (n,), generator=generator).numpy()
    return generator.integers(0, high, size=n)
