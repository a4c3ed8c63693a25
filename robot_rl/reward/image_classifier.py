"""The success classifier on a camera view: the project's conv encoder and a linear head.

Input: one view key of a frame (``camera_color``: the task's view, uint8 (height, width, 3)), as
the network reads it (``tasks.camera.network_image``, colour only). A full camera frame (another
size than the view) is first cut and resized to the view (``tasks.camera.preprocess_color``), so a
graph that hands over full frames judges the same picture. The view's config travels in the
file's metadata: inference needs no task.

Model: ``learning.encoders.ConvEncoder`` (the pixel policy's encoder: strided convs, linear,
LayerNorm, tanh), then a linear layer to one logit; p = sigmoid(logit). Torch on the CPU at
inference, as ``PixelPolicySnapshot`` runs its encoder: a conv net is torch's job.

Training (``train_image_classifier``), and the rule behind each choice:

- Adam on the binary cross-entropy, success weighted by negatives / positives: about 20 success
  frames stand against thousands of failures. The weighting is done by sampling: every minibatch
  holds as many success as failure frames, which in expectation is the full data's loss with
  ``pos_weight = negatives / positives`` (up to a constant); a uniform minibatch of 64 would hold
  a success frame once in four batches, and each would be seen a handful of times.
- DrQ's random shift (``learning.encoders.random_shift``, ``encoder.shift_px``) on every training
  image: with 20 positives, a shift of a few pixels is what keeps the net from learning them by
  heart (HIL-SERL's classifiers are trained with the same augmentation).
- A modest, fixed number of minibatch updates (``updates``): CPU training of a few thousand 64x64
  frames takes seconds, and the threshold's cross-validation trains ``cv_folds`` more models.
- Seeded (weights, minibatches, shifts): the same frames and labels give the same model.

The threshold and debounce are chosen as for the vector classifier
(``classifier.fit_classifier`` with this trainer: cross-validated F0.5).

The file is safetensors with its own format string (``IMAGE_CLASSIFIER_FORMAT``): arrays = the
module's state dict, metadata = the view key, the view config, the encoder config, threshold,
debounce and what it was trained on. ``classifier.load_classifier`` reads both kinds.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from robot_rl.data import DatasetError
from robot_rl.tasks.camera import ImageObservationConfig, network_images, preprocess_color

IMAGE_CLASSIFIER_FORMAT = "robot_rl.success_classifier.image/1"
VIEW_KEYS = ("camera_color",)
_BATCH = 256  # frames per forward at inference (bounded memory on a long evaluation)

if TYPE_CHECKING:  # the encoders module imports torch: loaded only where a net is built
    from robot_rl.learning.encoders import EncoderConfig


def _encoder_config() -> EncoderConfig:
    from robot_rl.learning.encoders import EncoderConfig

    return EncoderConfig()


@dataclass(frozen=True)
class ImageClassifierConfig:
    """How an image classifier is trained, and its default threshold and debounce."""

    encoder: EncoderConfig = field(default_factory=_encoder_config, metadata={
        "help": "the conv encoder (the pixel policy's; shift_px: DrQ's random shift)"})
    updates: int = field(default=400, metadata={"range": (1, 1_000_000),
                                                "help": "minibatch Adam steps"})
    batch_size: int = field(default=64, metadata={"range": (2, 4096),
                                                  "help": "frames per step, half of them success"})
    lr: float = field(default=1e-3, metadata={"range": (1e-6, 1.0)})
    weight_decay: float = field(default=1e-4, metadata={"range": (0.0, 1.0)})
    threshold: float = field(default=0.0, metadata={
        "range": (0.0, 1.0), "help": "0: chosen by cross-validation (fit_classifier)"})
    cv_folds: int = field(default=5, metadata={"range": (2, 100)})
    debounce_frames: int = field(default=1, metadata={"range": (1, 1000)})
    seed: int = field(default=0, metadata={"range": (0, 2**31 - 1)})


@dataclass(frozen=True)
class ImageInput:
    """What an image classifier reads: a view key and the view its frames are."""

    key: str
    view: ImageObservationConfig


def color_view(view: ImageObservationConfig) -> ImageObservationConfig:
    """The view as an image classifier reads it: colour only (depth, if declared, is not read)."""
    return replace(view, depth=False)


def view_from_store(attrs_view: Mapping[str, Any] | None, frame_shape: tuple[int, ...]
                    ) -> ImageObservationConfig:
    """The view a store's frames are: the store's own record (``attrs.extra.view``) or, for a
    store that names none, a view of the frames' size."""
    from robot_rl.config import from_dict

    if attrs_view:
        return color_view(from_dict(ImageObservationConfig, dict(attrs_view),
                                    source="the dataset's view", prefix="view"))
    height, width = int(frame_shape[0]), int(frame_shape[1])
    return ImageObservationConfig(width=width, height=height)


def _net_class() -> Any:
    import torch
    from torch import nn

    from robot_rl.learning.encoders import ConvEncoder

    class ImageSuccessNet(nn.Module):
        """uint8 views (B, H, W, 3) -> success logits (B,)."""

        def __init__(self, view: ImageObservationConfig, encoder: EncoderConfig) -> None:
            super().__init__()
            self.encoder = ConvEncoder(view.shape, encoder)
            self.head = nn.Linear(encoder.feature_dim, 1)

        def forward(self, images: torch.Tensor) -> torch.Tensor:
            return self.head(self.encoder(images)).squeeze(-1)

    return ImageSuccessNet


def _probability_module(net: Any) -> Any:
    import torch
    from torch import nn

    class Probability(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = net

        def forward(self, images: torch.Tensor) -> torch.Tensor:
            return torch.sigmoid(self.net(images))

    return Probability()


class ImageSuccessClassifier:
    """Inference of a trained image classifier (see the module); the duck interface of
    ``classifier.SuccessClassifier`` that ``SuccessDetector`` and the callers use."""

    kind = "image"

    def __init__(self, key: str, view: ImageObservationConfig, encoder: EncoderConfig,
                 state: Mapping[str, Any] | None, threshold: float, debounce_frames: int,
                 meta: Mapping[str, Any] | None = None, net: Any = None) -> None:
        import torch

        if key not in VIEW_KEYS:
            raise ValueError(f"image classifier: input '{key}' is not a view key {VIEW_KEYS}")
        if not 0.0 <= threshold <= 1.0 or debounce_frames < 1:
            raise ValueError(f"classifier: threshold in [0, 1] and debounce_frames >= 1, got "
                             f"{threshold}, {debounce_frames}")
        self.key, self.view, self.encoder_config = key, color_view(view), encoder
        if net is None:
            net = _net_class()(self.view, encoder)
            net.load_state_dict({k: torch.as_tensor(np.asarray(v)) for k, v in
                                 (state or {}).items()})
        self.net = net.to("cpu").eval().requires_grad_(False)
        self.threshold, self.debounce_frames = float(threshold), int(debounce_frames)
        self.meta = dict(meta or {})

    @property
    def inputs(self) -> list[str]:
        return [self.key]

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return self.view.shape

    def image(self, color: np.ndarray) -> np.ndarray:
        """A colour frame -> the network's image: the view as it is, or a full frame cut and
        resized to the view."""
        color = np.asarray(color)
        if color.ndim != 3 or color.shape[2] != 3 or color.dtype != np.uint8:
            raise ValueError(f"image classifier: '{self.key}' must be (H, W, 3) uint8, got "
                             f"{color.shape} {color.dtype}")
        if color.shape[:2] != (self.view.height, self.view.width):
            color = preprocess_color(color, self.view)
        return network_images(color[None], None, self.view)[0]

    def features(self, frame: Mapping[str, np.ndarray] | np.ndarray) -> np.ndarray:
        """One frame's network image, from its view key (a bare observation vector has no view)."""
        if not isinstance(frame, Mapping):
            raise ValueError(f"image classifier: the frame is an observation vector without the "
                             f"view '{self.key}' (a state task, or a caller that does not pass "
                             "the camera view)")
        if self.key not in frame or frame[self.key] is None:
            raise ValueError(f"image classifier: input '{self.key}' is missing from the frame "
                             f"(it has {sorted(frame)})")
        return self.image(frame[self.key])

    def probability(self, features: np.ndarray) -> Any:
        """p(success) of one network image (H, W, 3) (a float) or a batch (N, H, W, 3) (N,)."""
        import torch

        x = np.asarray(features, np.uint8)
        single = x.ndim == 3
        x = x[None] if single else x
        if x.shape[1:] != self.image_shape:
            raise ValueError(f"image classifier: images {x.shape[1:]}, expected the view's "
                             f"{self.image_shape}")
        out = np.empty(len(x), np.float32)
        with torch.inference_mode():
            for start in range(0, len(x), _BATCH):
                batch = torch.from_numpy(np.ascontiguousarray(x[start:start + _BATCH]))
                out[start:start + _BATCH] = torch.sigmoid(self.net(batch)).numpy()
        return float(out[0]) if single else out

    # ---- the file ------------------------------------------------------------------------
    def save(self, path: str | os.PathLike[str], overwrite: bool = False) -> Path:
        from safetensors.numpy import save_file

        from robot_rl.config import to_dict

        path = Path(path)
        if path.exists() and not overwrite:
            raise DatasetError(path, "already exists; pass --overwrite to replace it")
        arrays = {k: np.ascontiguousarray(v.detach().cpu().numpy())
                  for k, v in self.net.state_dict().items()}
        header = {"format": IMAGE_CLASSIFIER_FORMAT, "key": self.key,
                  "view": json.dumps(to_dict(self.view)),
                  "encoder": json.dumps(to_dict(self.encoder_config)),
                  "threshold": repr(self.threshold),
                  "debounce_frames": str(self.debounce_frames), "meta": json.dumps(self.meta)}
        tmp = path.with_name(f".{path.name}.tmp")
        save_file(arrays, str(tmp), metadata=header)
        os.replace(tmp, path)
        return path

    def export(self, path: str | os.PathLike[str], overwrite: bool = False) -> Path:
        """A ``torch.export`` program (``.pt2``): the network's images, uint8 (N, height, width, 3)
        of the view (not full camera frames: cut those with ``tasks.camera.preprocess_color``
        first) -> (N,) probabilities (``torch.export.load(path).module()(x)``)."""
        import torch

        path = Path(path)
        if path.exists() and not overwrite:
            raise DatasetError(path, "already exists; pass --overwrite to replace it")
        module = _probability_module(self.net).eval().requires_grad_(False)
        example = torch.zeros((2, *self.image_shape), dtype=torch.uint8)
        batch = torch.export.Dim("batch")
        program = torch.export.export(module, (example,), dynamic_shapes=({0: batch},))
        tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
        torch.export.save(program, str(tmp))
        os.replace(tmp, path)
        return path


def image_classifier_from(path: Path, arrays: Mapping[str, np.ndarray],
                          header: Mapping[str, str]) -> ImageSuccessClassifier:
    """The classifier a file of ``IMAGE_CLASSIFIER_FORMAT`` holds; DatasetError naming it if
    damaged."""
    from robot_rl.config import ConfigError, from_dict
    from robot_rl.learning.encoders import EncoderConfig

    try:
        view = from_dict(ImageObservationConfig, json.loads(header["view"]), source=str(path),
                         prefix="view")
        encoder = from_dict(EncoderConfig, json.loads(header["encoder"]), source=str(path),
                            prefix="encoder")
        return ImageSuccessClassifier(header["key"], view, encoder, arrays,
                                      float(header["threshold"]), int(header["debounce_frames"]),
                                      json.loads(header["meta"]))
    except (KeyError, ValueError, TypeError, RuntimeError, ConfigError) as err:
        text = " ".join(str(err).split())  # one line: torch's load errors span several
        raise DatasetError(path, f"success classifier file (image) is damaged: "
                                 f"{text[:300]}") from err


def train_image_classifier(images: np.ndarray, labels: np.ndarray, inputs: ImageInput,
                           config: ImageClassifierConfig | None = None,
                           meta: Mapping[str, Any] | None = None) -> ImageSuccessClassifier:
    """Fits the encoder and head on labelled network images (N, H, W, 3) uint8 (see the
    module)."""
    import torch
    from torch import nn

    from robot_rl.learning.encoders import random_shift

    config = config or ImageClassifierConfig()
    view = color_view(inputs.view)
    x = torch.from_numpy(np.ascontiguousarray(np.asarray(images, np.uint8)))
    y = np.asarray(labels, bool).reshape(-1)
    if x.dim() != 4 or len(x) != len(y) or tuple(x.shape[1:]) != view.shape:
        raise ValueError(f"train_image_classifier: images {tuple(x.shape)} and labels {y.shape} "
                         f"(the view is {view.shape})")
    positives, negatives = np.flatnonzero(y), np.flatnonzero(~y)
    if positives.size == 0 or negatives.size == 0:
        raise ValueError(f"train_image_classifier: needs success and failure frames, got "
                         f"{positives.size} and {negatives.size}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        net = _net_class()(view, config.encoder)
    generator = torch.Generator().manual_seed(config.seed)
    pos_t, neg_t = torch.from_numpy(positives), torch.from_numpy(negatives)
    half = config.batch_size // 2
    targets = torch.cat([torch.ones(half), torch.zeros(config.batch_size - half)])
    loss_fn = nn.BCEWithLogitsLoss()  # balanced batches: pos_weight is in the sampling
    optimizer = torch.optim.Adam(net.parameters(), lr=config.lr,
                                 weight_decay=config.weight_decay)
    loss = torch.zeros(())
    for _ in range(config.updates):
        index = torch.cat([
            pos_t[torch.randint(0, len(pos_t), (half,), generator=generator)],
            neg_t[torch.randint(0, len(neg_t), (config.batch_size - half,), generator=generator)]])
        batch = random_shift(x[index], config.encoder.shift_px, generator)
        loss = loss_fn(net(batch), targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    info = {"success_frames": int(positives.size), "failure_frames": int(negatives.size),
            "final_loss": float(loss.detach()), "updates": config.updates, **(meta or {})}
    return ImageSuccessClassifier(inputs.key, view, config.encoder, None,
                                  config.threshold or 0.5, config.debounce_frames, info, net=net)


def check_task_view(classifier: Any, task_has_view: bool, path: str | os.PathLike[str]) -> None:
    """Refuses (ValueError) an image classifier for a task without a camera view (a state task):
    it would have nothing to judge, and each step would fail; one line naming the file and the
    missing view."""
    if getattr(classifier, "kind", "vector") == "image" and not task_has_view:
        raise ValueError(f"{path}: an image success classifier (reads the view "
                         f"'{classifier.key}') but the task has no camera view (state "
                         f"observations): run the task with observation: pixels, or train a "
                         f"classifier on its observation vector")
