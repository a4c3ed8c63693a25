"""AWAC on a pixel task's observations: a proprioceptive vector and a camera view.

``PixelAgent`` puts an image encoder (``learning.encoders``) in front of an unchanged AWAC: the
AWAC networks read [vector, features] (state_dim + feature_dim values). With a ``conv`` encoder
every update encodes the batch's randomly shifted images with gradients, and the critic's loss
trains the encoder through the AWAC update's own backward pass (the actor reads its input
detached, see ``AWAC._losses``); the encoder's Adam steps right after AWAC's. With a ``frozen``
encoder the replay holds features (``FeatureReplay``) and an update is AWAC's alone.

The observation normaliser covers the vector with the dataset's statistics and leaves the
features as they are (tanh-bounded, LayerNorm-scaled). Checkpoints hold the AWAC state, the
encoder (its config, weights and, trained, its optimiser) and ``extra["pixels"]``, which
``load_pixel_agent`` reads to rebuild the agent; the frozen encoder's weights travel with them,
so a checkpoint needs no other file.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from robot_rl.config import from_dict, to_dict
from robot_rl.learning.awac import AWAC
from robot_rl.learning.checkpoint import restore_agent
from robot_rl.learning.config import AWACConfig
from robot_rl.learning.encoders import (
    ConvEncoder,
    EncoderConfig,
    encoder_from_state,
    encoder_state,
    load_frozen_encoder,
    random_shift,
)
from robot_rl.learning.image_replay import FeatureReplay, ImageReplay
from robot_rl.learning.keeper import LastPolicyKeeper, PolicyKeeper
from robot_rl.learning.normalizer import Normalizer
from robot_rl.tasks.camera import ImageObservationConfig, network_image, network_images

PIXELS_EXTRA = "pixels"
ENCODE_CHUNK = 256  # frames per forward pass when filling a feature replay


class PixelAgent:
    """AWAC with an image encoder for one camera view (``tasks.camera``); acts on an env's
    observation {"state", "rgb"[, "depth"]} or on {"state", "image": (H, W, C) uint8}."""

    def __init__(self, state_dim: int, act_dim: int, view: ImageObservationConfig,
                 config: AWACConfig, encoder: EncoderConfig, seed: int = 0,
                 frozen: ConvEncoder | None = None) -> None:
        if config.replay == "balanced":
            raise ValueError("awac.replay: balanced replay's density ratio reads whole "
                             "observations; pixel tasks use uniform replay")
        self.state_dim, self.act_dim = int(state_dim), int(act_dim)
        self.view = view
        self.image_shape = view.shape
        self.encoder_config = encoder
        if encoder.kind == "frozen":
            loaded = frozen if frozen is not None else load_frozen_encoder(encoder.frozen_path)[0]
            if loaded.image_shape != self.image_shape:
                raise ValueError(f"encoder.frozen_path {encoder.frozen_path}: the encoder reads "
                                 f"{loaded.image_shape} images, the task's view is "
                                 f"{self.image_shape} (H, W, C)")
            self.encoder = loaded
        else:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed + 3)
                self.encoder = ConvEncoder(self.image_shape, encoder)
        self.feature_dim = self.encoder.feature_dim
        self.awac = AWAC(self.state_dim + self.feature_dim, act_dim, config, seed=seed)
        self.encoder.to(self.awac.device)
        self.trains_encoder = encoder.kind == "conv"
        if self.trains_encoder:  # the handed policy must be the measured encoder and actor
            self.awac.keeper = LastPolicyKeeper()
        self.encoder_optimizer = (torch.optim.Adam(self.encoder.parameters(), lr=encoder.lr)
                                  if self.trains_encoder else None)
        self.aug_generator = torch.Generator(self.awac.device).manual_seed(seed + 2)

    # ---- what the rest of the code reads of an agent (AWAC's interface) ----------------------
    @property
    def config(self) -> AWACConfig:
        return self.awac.config

    @property
    def obs_dim(self) -> int:
        """The task's observation vector (what ``Task.observation_size`` counts); the AWAC
        networks read ``awac.obs_dim`` = this + the encoder's features."""
        return self.state_dim

    @property
    def num_updates(self) -> int:
        return self.awac.num_updates

    @property
    def guard(self) -> Any:
        return self.awac.guard

    @property
    def actor(self) -> torch.nn.Module:
        return self.awac.actor

    @property
    def keeper(self) -> PolicyKeeper:
        """The AWAC's keeper over the actor: with a frozen encoder the actor is the policy; a
        trained encoder's agent keeps nothing and hands over its last policy."""
        return self.awac.keeper

    def handed_actor(self) -> torch.nn.Module:
        return self.awac.handed_actor()

    @property
    def device(self) -> torch.device:
        return self.awac.device

    @property
    def normalizer(self) -> Normalizer | None:
        return self.awac.normalizer

    def start_online(self) -> None:
        self.awac.start_online()

    def set_state_normalizer(self, normalizer: Normalizer) -> None:
        """Statistics of the vector; the features pass through (mean 0, std 1)."""
        if normalizer.dim != self.state_dim:
            raise ValueError(f"PixelAgent: a normaliser of {normalizer.dim} values for a vector "
                             f"of {self.state_dim}")
        mean = np.concatenate([normalizer.mean.cpu().numpy(), np.zeros(self.feature_dim)])
        std = np.concatenate([normalizer.std.cpu().numpy(), np.ones(self.feature_dim)])
        self.awac.set_normalizer(Normalizer(mean, std, normalizer.std_floor))

    def set_normalizer(self, normalizer: Normalizer | None) -> None:
        """A whole-input normaliser (a checkpoint's), as AWAC takes it."""
        self.awac.set_normalizer(normalizer)

    # ---- features ----------------------------------------------------------------------------
    @torch.no_grad()
    def features(self, images: np.ndarray | torch.Tensor) -> torch.Tensor:
        """Features of unshifted images (B, H, W, C) uint8, without gradients, on the device."""
        x = torch.as_tensor(np.asarray(images) if not torch.is_tensor(images) else images)
        was_training = self.encoder.training
        self.encoder.eval()
        try:
            return self.encoder(x.to(self.device))
        finally:
            self.encoder.train(was_training)

    def encode_frames(self, frames: np.ndarray) -> np.ndarray:
        """(T, H, W, C) uint8 -> (T, F) float32 on the CPU, in chunks (a feature replay's fill)."""
        out = [self.features(frames[i:i + ENCODE_CHUNK]).cpu().numpy()
               for i in range(0, len(frames), ENCODE_CHUNK)]
        return np.concatenate(out) if out else np.zeros((0, self.feature_dim), np.float32)

    def make_replay(self, capacity: int) -> ImageReplay | FeatureReplay:
        """The replay this agent trains from: frames for a conv encoder, features for a frozen.
        It takes episodes with ``image`` or with recorded ``camera_color`` (``batch_from_steps``
        of a pixel task's steps), converted for this agent's view."""
        if self.trains_encoder:
            return ImageReplay(self.state_dim, self.act_dim, self.image_shape, capacity,
                               view=self.view)
        return FeatureReplay(self.state_dim, self.feature_dim, self.act_dim, capacity,
                             self.encode_frames, view=self.view)

    # ---- acting and updating -----------------------------------------------------------------
    def _vector(self, obs: Mapping[str, Any]) -> tuple[np.ndarray, bool]:
        state = np.asarray(obs["state"], np.float32)
        image = np.asarray(obs["image"]) if "image" in obs else self._network_image(obs)
        single = state.ndim == 1
        state2, image2 = (state[None], image[None]) if single else (state, image)
        if image2.shape[1:] != self.image_shape:
            raise ValueError(f"PixelAgent: image {image2.shape[1:]}, the encoder reads "
                             f"{self.image_shape} (H, W, C) uint8")
        feats = self.features(image2).cpu().numpy()
        vector = np.concatenate([state2, feats], axis=1)
        return (vector[0] if single else vector), single

    def _network_image(self, obs: Mapping[str, Any]) -> np.ndarray:
        rgb = np.asarray(obs["rgb"])
        depth = obs.get("depth")
        if rgb.ndim == 3:
            return network_image(rgb, depth, self.view)
        return network_images(rgb, depth, self.view)

    def act(self, obs: Mapping[str, Any], deterministic: bool = False,
            fallback: bool = True) -> np.ndarray:
        """Action(s) for {"state": (D,) or (B, D), "image": (H, W, C) or (B, H, W, C) uint8}."""
        vector, _ = self._vector(obs)
        return self.awac.act(vector, deterministic=deterministic, fallback=fallback)

    def update(self, batch: Mapping[str, torch.Tensor], n_updates: int = 1
               ) -> Mapping[str, float]:
        """``n_updates`` updates on consecutive equal slices of the batch (the update-to-data
        ratio's block, as AWAC.update takes it), each encoding its own images. A conv encoder's
        batch carries image and next_image (uint8); a frozen encoder's carries vectors already
        (FeatureReplay's). Returns the last update's metrics."""
        rows = int(batch["reward"].shape[0])
        if n_updates < 1 or rows % n_updates:
            raise ValueError(f"PixelAgent.update: {rows} rows do not split into "
                             f"n_updates={n_updates} equal batches")
        size = rows // n_updates
        metrics: Mapping[str, float] = {}
        for i in range(n_updates):
            part = {k: v[i * size:(i + 1) * size] for k, v in batch.items()}
            metrics = self._update(part) if self.trains_encoder else self.awac.update(part)
        return metrics

    def _update(self, batch: Mapping[str, torch.Tensor]) -> Mapping[str, float]:
        device = self.device
        shift = self.encoder_config.shift_px
        image = random_shift(batch["image"].to(device), shift, self.aug_generator)
        next_image = random_shift(batch["next_image"].to(device), shift, self.aug_generator)
        assert self.encoder_optimizer is not None
        self.encoder_optimizer.zero_grad(set_to_none=True)
        features = self.encoder(image)  # with gradients: the critic's loss reaches them
        with torch.no_grad():
            next_features = self.encoder(next_image)
        vectors = {"obs": torch.cat([batch["obs"].to(device), features], dim=1),
                   "next_obs": torch.cat([batch["next_obs"].to(device), next_features], dim=1),
                   "action": batch["action"], "reward": batch["reward"], "done": batch["done"]}
        metrics = self.awac.update(vectors)
        self.encoder_optimizer.step()
        return metrics

    # ---- persistence -------------------------------------------------------------------------
    def state_dict(self) -> dict:
        state = self.awac.state_dict()
        state["encoder"] = encoder_state(self.encoder, self.encoder_config)
        state["aug_generator"] = self.aug_generator.get_state()
        if self.encoder_optimizer is not None:
            state["encoder_optimizer"] = self.encoder_optimizer.state_dict()
        return state

    def load_state_dict(self, state: dict) -> None:
        self.awac.load_state_dict(state)
        self.load_encoder_state(state)

    def load_encoder_state(self, state: dict) -> None:
        """The encoder's weights, optimiser and augmentation stream from ``state_dict()``'s."""
        encoder, _ = encoder_from_state(state["encoder"], "checkpoint encoder")
        self.encoder.load_state_dict(encoder.state_dict())
        if self.encoder_optimizer is not None and "encoder_optimizer" in state:
            self.encoder_optimizer.load_state_dict(state["encoder_optimizer"])
        saved = state.get("aug_generator")
        if saved is not None and saved.numel() == self.aug_generator.get_state().numel():
            self.aug_generator.set_state(saved)

    def checkpoint_extra(self) -> dict[str, Any]:
        """What ``load_pixel_agent`` needs to rebuild this agent (save_checkpoint's extra)."""
        return {PIXELS_EXTRA: {"state_dim": self.state_dim, "act_dim": self.act_dim,
                               "view": to_dict(self.view),
                               "encoder": to_dict(self.encoder_config)}}

    def acting_copy(self) -> tuple[ConvEncoder, torch.nn.Module]:
        """A frozen CPU copy of (encoder, the policy that acts now) for a policy snapshot."""
        encoder = copy.deepcopy(self.encoder).to("cpu").eval().requires_grad_(False)
        policy = copy.deepcopy(self.guard.acting_policy(self.actor)).to("cpu")
        return encoder, policy


def is_pixel_checkpoint(checkpoint: Mapping[str, Any]) -> bool:
    return PIXELS_EXTRA in (checkpoint.get("extra") or {})


def load_pixel_agent(checkpoint: Mapping[str, Any], config: AWACConfig, seed: int = 0
                     ) -> PixelAgent:
    """A PixelAgent from ``load_checkpoint``'s dict: weights, optimisers, encoder, normaliser."""
    spec = checkpoint["extra"][PIXELS_EXTRA]
    encoder_config = checkpoint_encoder(checkpoint)
    frozen = None
    if encoder_config.kind == "frozen":  # the checkpoint carries its weights: no file needed
        frozen, _ = encoder_from_state(checkpoint["agent"]["encoder"], "checkpoint encoder")
    agent = PixelAgent(int(spec["state_dim"]), int(spec["act_dim"]), checkpoint_view(checkpoint),
                       config, encoder_config, seed=seed, frozen=frozen)
    # the AWAC part through restore_agent: networks of another config are refused by name
    restore_agent({**checkpoint, "obs_dim": agent.awac.obs_dim}, agent.awac)
    agent.load_encoder_state(checkpoint["agent"])
    return agent


def checkpoint_view(checkpoint: Mapping[str, Any]) -> ImageObservationConfig:
    """The camera view a pixel checkpoint's policy was trained on."""
    return from_dict(ImageObservationConfig, checkpoint["extra"][PIXELS_EXTRA]["view"],
                     source=str(checkpoint.get("path", "checkpoint")), prefix="extra.pixels.view")


def checkpoint_encoder(checkpoint: Mapping[str, Any]) -> EncoderConfig:
    return from_dict(EncoderConfig, checkpoint["extra"][PIXELS_EXTRA]["encoder"],
                     source=str(checkpoint.get("path", "checkpoint")),
                     prefix="extra.pixels.encoder")


class PixelPolicySnapshot:
    """A frozen copy of a pixel agent's acting policy, for acting only (the control loop, the
    POLICY topic): its encoder (torch, CPU: a conv net is torch's job) and a ``PolicySnapshot`` of
    the policy on [vector, features] (numpy forward, as for a state task). ``act`` takes an env's
    observation {"state", "rgb"[, "depth"]} or {"state", "image"}."""

    def __init__(self, encoder: ConvEncoder, head: Any, view: ImageObservationConfig,
                 encoder_config: EncoderConfig) -> None:
        self.encoder = encoder.to("cpu").eval().requires_grad_(False)
        self.head, self.view, self.encoder_config = head, view, encoder_config
        self.version, self.hidden_sizes = head.version, head.hidden_sizes
        self.obs_dim = head.obs_dim - encoder.feature_dim  # the task's vector
        self.act_dim = head.act_dim
        if tuple(encoder.image_shape) != view.shape:
            raise ValueError(f"policy v{self.version}: the encoder reads {encoder.image_shape} "
                             f"images, the view is {view.shape}")

    @property
    def uses_numpy(self) -> bool:
        return self.head.uses_numpy

    @classmethod
    def from_agent(cls, agent: PixelAgent, version: int | None = None) -> PixelPolicySnapshot:
        from robot_rl.learning.background import PolicySnapshot

        encoder = copy.deepcopy(agent.encoder)
        return cls(encoder, PolicySnapshot.from_agent(agent, version), agent.view,
                   agent.encoder_config)

    def act(self, obs: Mapping[str, Any], rng: np.random.Generator | None = None) -> np.ndarray:
        state = np.asarray(obs["state"], np.float32).reshape(-1)
        if state.shape[0] != self.obs_dim:
            raise ValueError(f"PixelPolicySnapshot v{self.version}: observation has "
                             f"{state.shape[0]} values, the policy expects {self.obs_dim}")
        image = np.asarray(obs["image"]) if "image" in obs else \
            network_image(np.asarray(obs["rgb"]), obs.get("depth"), self.view)
        if image.shape != self.view.shape or image.dtype != np.uint8:
            raise ValueError(f"PixelPolicySnapshot v{self.version}: image {image.shape} "
                             f"{image.dtype}, expected the view's {self.view.shape} uint8")
        with torch.inference_mode():
            features = self.encoder(torch.from_numpy(image[None]))[0].numpy()
        return self.head.act(np.concatenate([state, features]), rng)

    def arrays(self) -> dict[str, np.ndarray]:
        """The head's arrays (``PolicySnapshot.arrays``) and ``encoder.<name>`` for the encoder."""
        out = dict(self.head.arrays())
        for name, tensor in self.encoder.state_dict().items():
            out[f"encoder.{name}"] = tensor.detach().cpu().numpy()
        return out

    def meta(self) -> dict[str, Any]:
        """What rebuilds the encoder from the arrays (travels as the weights' metadata)."""
        return {"view": to_dict(self.view), "encoder": to_dict(self.encoder_config)}

    @classmethod
    def from_arrays(cls, version: int, hidden_sizes: tuple[int, ...],
                    arrays: Mapping[str, np.ndarray], meta: Mapping[str, Any]
                    ) -> PixelPolicySnapshot:
        """The snapshot ``arrays()`` and ``meta()`` describe; ValueError naming what is
        missing, misshapen or not finite."""
        from robot_rl.learning.background import PolicySnapshot

        head = PolicySnapshot.from_arrays(version, hidden_sizes, dict(arrays))
        try:
            view = from_dict(ImageObservationConfig, meta["view"], source=f"policy v{version}",
                             prefix="pixels.view")
            encoder_config = from_dict(EncoderConfig, meta["encoder"],
                                       source=f"policy v{version}", prefix="pixels.encoder")
        except KeyError as err:
            raise ValueError(f"policy v{version}: pixel weights without {err}") from None
        encoder = ConvEncoder(view.shape, encoder_config)
        state = encoder.state_dict()
        loaded = {}
        for name, template in state.items():
            key = f"encoder.{name}"
            if key not in arrays:
                raise ValueError(f"policy v{version}: no array {key!r}")
            value = np.asarray(arrays[key], np.float32)
            if value.shape != tuple(template.shape):
                raise ValueError(f"policy v{version}: {key} is {value.shape}, the encoder of "
                                 f"{encoder_config.channels} channels needs "
                                 f"{tuple(template.shape)}")
            if not np.all(np.isfinite(value)):
                raise ValueError(f"policy v{version}: values that are not finite in {key}")
            loaded[name] = torch.from_numpy(value.copy()).to(template.dtype)
        encoder.load_state_dict(loaded)
        return cls(encoder, head, view, encoder_config)
