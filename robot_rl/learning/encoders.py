"""Image encoders for pixel tasks: a small strided conv net, DrQ's random shift, and a frozen
encoder trained here (self-supervised), never downloaded.

``kind: conv`` (the default, SERL's): the encoder is trained by the critic's loss alone, with every
image randomly shifted by up to ``shift_px`` pixels (DrQ, Kostrikov et al. 2020: replicate-pad,
then crop back at a random offset, drawn per image); the actor reads its features detached (as in
DrQ and SERL), so the policy's loss never reshapes them. The next observation's features come from
the same encoder without gradients (DrQ-v2 keeps no target encoder).

``kind: frozen``: an encoder trained beforehand by :func:`train_frozen_encoder` (an autoencoder on
the frames of a dataset: reconstruct each frame from its features), saved to a file and loaded
from it; its features are computed once per frame when a frame enters the replay, so updates cost
what they cost without images. Its weights travel inside every checkpoint made with it.

Why a 4x4 stride-4 first layer (patches that tile the image, as a ViT's do), two stride-2 3x3
layers and 64x64 views: on the project's 2-core CPU DrQ's own encoder (3x3, stride 2 then 1, 32
channels, 84x84) makes about one update a second (shared/PLATFORM.md); four stride-2 3x3 layers on
64x64 about three, this one five to seven (bench/pixel_throughput.py, one thread, batch 256, a
busy machine).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

ENCODER_KINDS = ("conv", "frozen")
FROZEN_FORMAT = 1


@dataclass(frozen=True)
class EncoderConfig:
    """The image encoder of a pixel task (ignored by state tasks)."""

    kind: str = field(default="conv", metadata={
        "choices": ENCODER_KINDS,
        "help": "conv: trained with the critic (DrQ random shifts); frozen: a file made by "
                "robot_rl.learning.encoders.train_frozen_encoder, features computed once per frame"})
    channels: tuple[int, ...] = field(default=(16, 32, 32), metadata={
        "range": (1, 512), "help": "output channels of each conv layer"})
    strides: tuple[int, ...] = field(default=(4, 2, 2), metadata={
        "range": (1, 8), "help": "stride of each conv layer (as many as channels); kernels are "
                                 "3x3, or stride x stride above 3 (patches that tile the image)"})
    feature_dim: int = field(default=50, metadata={
        "range": (1, 4096), "help": "features after the conv stack (linear, LayerNorm, tanh)"})
    shift_px: int = field(default=4, metadata={
        "range": (0, 32), "help": "DrQ random shift: pad by this many pixels, crop back at a "
                                  "random offset (0: no augmentation)"})
    lr: float = field(default=3e-4, metadata={"range": (1e-6, 1e-1),
                                              "help": "Adam learning rate of a conv encoder"})
    frozen_path: str = field(default="", metadata={
        "help": "kind frozen: the encoder file (train_frozen_encoder's output)"})

    def __post_init__(self) -> None:
        if len(self.channels) != len(self.strides) or not self.channels:
            raise ValueError(f"channels {self.channels} and strides {self.strides} must name the "
                             "same number (at least one) of conv layers")


class ConvEncoder(nn.Module):
    """uint8 images (B, H, W, C), channels last as cameras give them -> features
    (B, feature_dim) in [-1, 1].

    Pixels are scaled to [-0.5, 0.5] inside, so the replay keeps one byte per value and the
    network sees centred inputs. Conv layers: 3x3 (or stride x stride), ReLU; then flatten,
    linear, LayerNorm and tanh (DrQ's head: the LayerNorm keeps the features' scale fixed while
    the critic reshapes them)."""

    def __init__(self, image_shape: Sequence[int], config: EncoderConfig) -> None:
        super().__init__()
        height, width, channels = (int(v) for v in image_shape)
        self.image_shape = (height, width, channels)
        self.feature_dim = config.feature_dim
        layers: list[nn.Module] = []
        for out, stride in zip(config.channels, config.strides):
            kernel = _kernel(stride)
            layers += [nn.Conv2d(channels, out, kernel, stride=stride,
                                 padding=_padding(stride)), nn.ReLU()]
            channels = out
            height, width = _conv_out(height, stride), _conv_out(width, stride)
        self.convs = nn.Sequential(*layers)
        self.flat_dim = channels * height * width
        self.head = nn.Sequential(nn.Linear(self.flat_dim, config.feature_dim),
                                  nn.LayerNorm(config.feature_dim), nn.Tanh())

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        # channels first and contiguous: oneDNN's convolutions ran several times slower here on
        # a channels-last (permuted) float input
        x = images.permute(0, 3, 1, 2).contiguous().float() * (1.0 / 255.0) - 0.5
        return self.head(self.convs(x).flatten(1))


def _kernel(stride: int) -> int:
    """3x3, or stride x stride for a stride over 3 (patches that tile: no pixel skipped)."""
    return max(3, stride)


def _padding(stride: int) -> int:
    return (_kernel(stride) - stride + 1) // 2


def _conv_out(size: int, stride: int) -> int:
    return (size + 2 * _padding(stride) - _kernel(stride)) // stride + 1


def random_shift(images: torch.Tensor, pad: int, generator: torch.Generator) -> torch.Tensor:
    """DrQ's augmentation: each image (B, H, W, C) padded by ``pad`` (edge pixels repeated) and
    cut back to its size at an offset drawn uniformly in [0, 2 * pad] each way, per image.

    On the CPU each image is padded by OpenCV and cut by a slice, whole pixel rows at a time:
    bench/pixel_throughput.py measured a batch of 256 64x64 views at about a tenth of the time of
    one gather with per-pixel indices (the form used on a GPU)."""
    if pad <= 0:
        return images
    batch, height, width, _ = images.shape
    offsets = torch.randint(0, 2 * pad + 1, (batch, 2), generator=generator,
                            device=generator.device)
    if images.device.type != "cpu" or images.dtype != torch.uint8:
        return _gather_shift(images, pad, offsets.to(images.device))
    import cv2

    source = images.numpy()
    out = np.empty_like(source)
    for i, (dy, dx) in enumerate(offsets.tolist()):
        padded = cv2.copyMakeBorder(source[i], pad, pad, pad, pad, cv2.BORDER_REPLICATE)
        out[i] = padded[dy:dy + height, dx:dx + width].reshape(out[i].shape)
    return torch.from_numpy(out)


def _gather_shift(images: torch.Tensor, pad: int, offsets: torch.Tensor) -> torch.Tensor:
    """The same shift as one gather with clamped indices (any device and dtype)."""
    batch, height, width, _ = images.shape
    device = images.device
    dy, dx = (offsets[:, :1] - pad), (offsets[:, 1:] - pad)
    rows = (dy + torch.arange(height, device=device)).clamp_(0, height - 1)[:, :, None]
    cols = (dx + torch.arange(width, device=device)).clamp_(0, width - 1)[:, None, :]
    index = torch.arange(batch, device=device)[:, None, None]
    return images[index, rows, cols]


# ---- the frozen encoder: an autoencoder trained on recorded frames ---------------------------
class ConvDecoder(nn.Module):
    """features -> images (B, C, H, W) in [-0.5, 0.5]: the encoder's layers in reverse, as
    transposed convs (4x4 for a stride of 2: each doubles its input, cut to the size the encoder
    had there; oneDNN runs these several times faster here than upsampling plus a 3x3 conv)."""

    def __init__(self, encoder: ConvEncoder, config: EncoderConfig) -> None:
        super().__init__()
        height, width, channels = encoder.image_shape
        sizes = [(height, width)]
        for stride in config.strides:
            sizes.append((_conv_out(sizes[-1][0], stride), _conv_out(sizes[-1][1], stride)))
        self.start = (config.channels[-1], *sizes[-1])
        self.sizes = sizes[-2::-1]  # the size each decoder layer cuts its output to
        self.linear = nn.Linear(config.feature_dim, encoder.flat_dim)
        ins = list(config.channels[::-1])
        outs = [*config.channels[::-1][1:], channels]
        self.convs = nn.ModuleList(
            nn.ConvTranspose2d(a, b, stride, stride=stride) if stride > 2
            else nn.ConvTranspose2d(a, b, 4, stride=2, padding=1) if stride == 2
            else nn.ConvTranspose2d(a, b, 3, padding=1)
            for a, b, stride in zip(ins, outs, config.strides[::-1]))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.linear(features)).reshape(-1, *self.start)
        for i, (conv, (height, width)) in enumerate(zip(self.convs, self.sizes)):
            x = conv(x)[..., :height, :width]
            if i < len(self.convs) - 1:
                x = F.relu(x)
        return x


@dataclass
class FrozenTraining:
    """What train_frozen_encoder did: the loss it started and ended at, and its steps."""

    steps: int
    first_loss: float
    last_loss: float


def train_frozen_encoder(frames: np.ndarray, config: EncoderConfig, *, steps: int = 2000,
                         batch_size: int = 64, seed: int = 0,
                         log: Any = None) -> tuple[ConvEncoder, FrozenTraining]:
    """An encoder trained to reconstruct ``frames`` (N, H, W, C) uint8 from its features
    (squared error, DrQ's random shift on the input, an L2 pull on the features as in SAC-AE);
    nothing but the frames is used, so any recording (a real cell's too) can train one."""
    frames_t = torch.from_numpy(np.ascontiguousarray(frames))
    if frames_t.dim() != 4 or frames_t.dtype != torch.uint8 or not len(frames_t):
        raise ValueError(f"train_frozen_encoder: expected (N, H, W, C) uint8 frames, got "
                         f"{tuple(frames_t.shape)} {frames_t.dtype}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        encoder = ConvEncoder(frames_t.shape[1:], config)
        decoder = ConvDecoder(encoder, config)
    params = [*encoder.parameters(), *decoder.parameters()]
    optimizer = torch.optim.Adam(params, lr=1e-3)
    generator = torch.Generator().manual_seed(seed)
    first = last = math.nan
    for step in range(steps):
        idx = torch.randint(0, len(frames_t), (batch_size,), generator=generator)
        batch = frames_t[idx]
        target = batch.permute(0, 3, 1, 2).float() * (1.0 / 255.0) - 0.5
        features = encoder(random_shift(batch, config.shift_px, generator))
        loss = (decoder(features) - target).pow(2).mean() + 1e-6 * features.pow(2).sum(1).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        last = float(loss.detach())
        first = last if step == 0 else first
        if log is not None and (step + 1) % max(1, steps // 10) == 0:
            log(f"frozen encoder: step {step + 1}/{steps}, reconstruction loss {last:.5f}")
    encoder.eval().requires_grad_(False)
    return encoder, FrozenTraining(steps=steps, first_loss=first, last_loss=last)


def encoder_state(encoder: ConvEncoder, config: EncoderConfig) -> dict[str, Any]:
    """An encoder as plain data (tensors, numbers, strings): for checkpoints and files."""
    from robot_rl.config import to_dict

    return {"format": FROZEN_FORMAT, "image_shape": list(encoder.image_shape),
            "config": to_dict(config), "weights": encoder.state_dict()}


def encoder_from_state(state: dict[str, Any], where: str) -> tuple[ConvEncoder, EncoderConfig]:
    """The encoder saved by :func:`encoder_state`; ValueError naming ``where`` otherwise."""
    from robot_rl.config import ConfigError, from_dict

    try:
        if state.get("format") != FROZEN_FORMAT:
            raise ValueError(f"format {state.get('format')!r}, expected {FROZEN_FORMAT}")
        config = from_dict(EncoderConfig, state["config"], source=where)
        encoder = ConvEncoder(state["image_shape"], config)
        encoder.load_state_dict(state["weights"])
    except (KeyError, TypeError, ValueError, RuntimeError, ConfigError) as err:
        raise ValueError(f"{where}: not an image encoder this code can load: {err}") from None
    return encoder.eval().requires_grad_(False), config


def save_frozen_encoder(path: str | Path, encoder: ConvEncoder, config: EncoderConfig, *,
                        overwrite: bool = False) -> Path:
    """Writes the encoder (weights_only-loadable); refuses an existing file unless ``overwrite``."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; choose another path or pass --overwrite")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save(encoder_state(encoder, config), tmp)
    tmp.replace(path)
    return path


def load_frozen_encoder(path: str | Path) -> tuple[ConvEncoder, EncoderConfig]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"encoder.frozen_path: {path} does not exist (make one with "
                                "bench/pixel_study.py --train-encoder or "
                                "learning.encoders.train_frozen_encoder)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types for foreign or truncated files
        raise ValueError(f"{path}: not a loadable encoder file ({err})") from None
    if not isinstance(state, dict):
        raise ValueError(f"{path}: not an encoder file")
    return encoder_from_state(state, str(path))
