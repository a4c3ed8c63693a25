"""The success classifier on a camera view (and, optionally, vector inputs beside it).

Input: one view key of a frame (``camera_color``: the task's view, uint8 (height, width, 3)), as
the network reads it (``tasks.camera.network_image``, colour only). A full camera frame (another
size than the view) is first cut and resized to the view (``tasks.camera.preprocess_color``), so a
graph that hands over full frames judges the same picture. The view's config travels in the
file's metadata: inference needs no task.

Vector inputs beside the view (``vectors``): columns of the frame's other keys, parsed as the
vector classifier's (``classifier.parse_inputs``: ``observation.goal_cos_sin``,
``observation[a:b]``), for a success the view alone does not show (the valve's goal angle, drawn
anew each episode, is in the pixel task's observation vector and nowhere in the picture). A
frame is then ``{"camera_color": view, "observation": vector, ...}``; its inputs an
``ImageFrames`` (views and vectors, indexed together).

Model: ``learning.encoders.ConvEncoder`` (the pixel policy's encoder: strided convs, linear,
LayerNorm, tanh), then a linear layer to one logit; p = sigmoid(logit). With vector inputs, the
encoder's features concatenated with the vector standardised by the training frames' mean and std
(buffers of the module, so they are in the file and the export), then an MLP (``head_hidden``,
ReLU) to the logit: success is then a relation between the two (the valve's angle in the picture
against the goal in the vector), which a linear head, adding the view's evidence to the vector's,
cannot compare. Torch on the CPU at inference, as ``PixelPolicySnapshot`` runs its encoder: a
conv net is torch's job.

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
- Vector inputs are standardised with the training frames' mean and std (std at least 1e-3, as
  the vector classifier's); the shift applies to the views only.

The threshold and debounce are chosen as for the vector classifier
(``classifier.fit_classifier`` with this trainer: cross-validated F0.5).

The file is safetensors with its own format string (``IMAGE_CLASSIFIER_FORMAT``): arrays = the
module's state dict (with vector inputs: ``net.vector_mean`` and ``net.vector_std`` too),
metadata = the view key, the view config, the encoder config, the vector inputs and the head's
hidden sizes (absent in a file of a view alone, which loads as before), threshold, debounce and
what it was trained on. ``classifier.load_classifier`` reads both kinds.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from robot_rl.data import DatasetError
from robot_rl.reward.classifier import Input, input_vector
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
    head_hidden: tuple[int, ...] = field(default=(64,), metadata={
        "help": "hidden layers of the head over the view's features and the vector inputs (a "
                "view alone: a linear head)"})


@dataclass(frozen=True)
class ImageInput:
    """What an image classifier reads: a view key, the view its frames are, and the vector
    inputs beside it ((key, start, stop) as ``classifier.parse_inputs`` gives; none: the view
    alone)."""

    key: str
    view: ImageObservationConfig
    vectors: tuple[Input, ...] = ()


@dataclass(frozen=True)
class ImageFrames:
    """Frames of an image classifier with vector inputs: views (N, H, W, 3) uint8 and vectors
    (N, width) float32, or one frame's (H, W, 3) and (width,). Indexing takes both rows, as
    ``fit_classifier``'s folds and ``evaluate_classifier`` index an array of features."""

    images: np.ndarray
    vectors: np.ndarray

    def __post_init__(self) -> None:
        if len(self.images) != len(self.vectors) and np.ndim(self.images) == 4:
            raise ValueError(f"image frames: {len(self.images)} views and "
                             f"{len(self.vectors)} vectors")

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: Any) -> ImageFrames:
        return ImageFrames(self.images[index], self.vectors[index])


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
        """uint8 views (B, H, W, 3) (and raw vectors (B, width)) -> success logits (B,)."""

        def __init__(self, view: ImageObservationConfig, encoder: EncoderConfig,
                     vector_width: int = 0, head_hidden: Sequence[int] = ()) -> None:
            super().__init__()
            self.encoder = ConvEncoder(view.shape, encoder)
            self.vector_width = int(vector_width)
            if not self.vector_width:  # a view alone: a linear head (the first files' layout)
                self.head: nn.Module = nn.Linear(encoder.feature_dim, 1)
                return
            self.register_buffer("vector_mean", torch.zeros(self.vector_width))
            self.register_buffer("vector_std", torch.ones(self.vector_width))
            sizes = [encoder.feature_dim + self.vector_width, *head_hidden, 1]
            layers: list[nn.Module] = []
            for size_in, size_out in zip(sizes[:-1], sizes[1:]):
                layers += [nn.Linear(size_in, size_out), nn.ReLU()]
            self.head = nn.Sequential(*layers[:-1])

        def forward(self, images: torch.Tensor,
                    vectors: torch.Tensor | None = None) -> torch.Tensor:
            features = self.encoder(images)
            if self.vector_width:
                assert vectors is not None, "this classifier reads vectors beside the view"
                scaled = (vectors.float() - self.vector_mean) / self.vector_std
                features = torch.cat([features, scaled], dim=-1)
            return self.head(features).squeeze(-1)

    return ImageSuccessNet


def _probability_module(net: Any) -> Any:
    import torch
    from torch import nn

    class Probability(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = net

        def forward(self, images: torch.Tensor,
                    vectors: torch.Tensor | None = None) -> torch.Tensor:
            return torch.sigmoid(self.net(images, vectors))

    return Probability()


class ImageSuccessClassifier:
    """Inference of a trained image classifier (see the module); the duck interface of
    ``classifier.SuccessClassifier`` that ``SuccessDetector`` and the callers use."""

    kind = "image"

    def __init__(self, key: str, view: ImageObservationConfig, encoder: EncoderConfig,
                 state: Mapping[str, Any] | None, threshold: float, debounce_frames: int,
                 meta: Mapping[str, Any] | None = None, net: Any = None,
                 vectors: Sequence[Input] = (), head_hidden: Sequence[int] = ()) -> None:
        import torch

        if key not in VIEW_KEYS:
            raise ValueError(f"image classifier: input '{key}' is not a view key {VIEW_KEYS}")
        if not 0.0 <= threshold <= 1.0 or debounce_frames < 1:
            raise ValueError(f"classifier: threshold in [0, 1] and debounce_frames >= 1, got "
                             f"{threshold}, {debounce_frames}")
        self.key, self.view, self.encoder_config = key, color_view(view), encoder
        self.vectors = [(str(k), int(a), int(b)) for k, a, b in vectors]
        if any(k in VIEW_KEYS or not 0 <= a < b for k, a, b in self.vectors):
            raise ValueError(f"image classifier: vector inputs {self.vectors} must be columns "
                             f"start < stop of keys other than the view")
        self.head_hidden = tuple(int(v) for v in head_hidden) if self.vectors else ()
        if net is None:
            net = _net_class()(self.view, encoder, self.vector_width, self.head_hidden)
            net.load_state_dict({k: torch.as_tensor(np.asarray(v)) for k, v in
                                 (state or {}).items()})
        self.net = net.to("cpu").eval().requires_grad_(False)
        self.threshold, self.debounce_frames = float(threshold), int(debounce_frames)
        self.meta = dict(meta or {})

    @property
    def inputs(self) -> list[str]:
        """What it reads: the view key, then each vector input as KEY[a:b]."""
        return [self.key, *(f"{k}[{a}:{b}]" for k, a, b in self.vectors)]

    @property
    def vector_width(self) -> int:
        return sum(b - a for _, a, b in self.vectors)

    @property
    def vector_mean(self) -> np.ndarray | None:
        """The training frames' mean of the vector inputs (None: a view alone)."""
        return self.net.vector_mean.numpy().copy() if self.vectors else None

    @property
    def vector_std(self) -> np.ndarray | None:
        return self.net.vector_std.numpy().copy() if self.vectors else None

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

    def features(self, frame: Mapping[str, np.ndarray] | np.ndarray) -> np.ndarray | ImageFrames:
        """One frame's inputs from its keys: the network image (a view alone), or an
        ``ImageFrames`` of the image and the vector inputs. A bare observation vector has no
        view; a missing vector key is named."""
        if not isinstance(frame, Mapping):
            raise ValueError(f"image classifier: the frame is an observation vector without the "
                             f"view '{self.key}' (a state task, or a caller that does not pass "
                             "the camera view)")
        if self.key not in frame or frame[self.key] is None:
            raise ValueError(f"image classifier: input '{self.key}' is missing from the frame "
                             f"(it has {sorted(frame)})")
        image = self.image(frame[self.key])
        if not self.vectors:
            return image
        try:
            vector = input_vector(self.vectors, frame)
        except ValueError as err:
            raise ValueError(f"image classifier: {err}") from err
        return ImageFrames(image, vector)

    def probability(self, features: np.ndarray | ImageFrames) -> Any:
        """p(success) of one frame's inputs (a float) or a batch's (N,): network images (H, W, 3)
        or (N, H, W, 3), or with vector inputs an ``ImageFrames`` of images and vectors."""
        import torch

        if isinstance(features, ImageFrames):
            x, v = np.asarray(features.images, np.uint8), np.asarray(features.vectors, np.float32)
        else:
            x, v = np.asarray(features, np.uint8), None
        single = x.ndim == 3
        x = x[None] if single else x
        if x.shape[1:] != self.image_shape:
            raise ValueError(f"image classifier: images {x.shape[1:]}, expected the view's "
                             f"{self.image_shape}")
        if self.vectors:
            if v is None:
                raise ValueError(f"image classifier: reads {self.inputs}: give ImageFrames of "
                                 f"views and vectors, not views alone")
            v = v.reshape(len(x), -1)
            if v.shape[1] != self.vector_width:
                raise ValueError(f"image classifier: vectors of {v.shape[1]} values, expected "
                                 f"{self.vector_width} ({self.inputs[1:]})")
        out = np.empty(len(x), np.float32)
        with torch.inference_mode():
            for start in range(0, len(x), _BATCH):
                batch = torch.from_numpy(np.ascontiguousarray(x[start:start + _BATCH]))
                vectors = None if v is None or not self.vectors else \
                    torch.from_numpy(np.ascontiguousarray(v[start:start + _BATCH]))
                out[start:start + _BATCH] = torch.sigmoid(self.net(batch, vectors)).numpy()
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
                  **({"vectors": json.dumps(self.vectors),
                      "head_hidden": json.dumps(list(self.head_hidden))} if self.vectors else {}),
                  "threshold": repr(self.threshold),
                  "debounce_frames": str(self.debounce_frames), "meta": json.dumps(self.meta)}
        tmp = path.with_name(f".{path.name}.tmp")
        save_file(arrays, str(tmp), metadata=header)
        os.replace(tmp, path)
        return path

    def export(self, path: str | os.PathLike[str], overwrite: bool = False) -> Path:
        """A ``torch.export`` program (``.pt2``): the network's images, uint8 (N, height, width, 3)
        of the view (not full camera frames: cut those with ``tasks.camera.preprocess_color``
        first) -> (N,) probabilities (``torch.export.load(path).module()(x)``). With vector
        inputs it takes (images, vectors): the raw vectors float32 (N, width), the inputs'
        columns concatenated in ``inputs[1:]``'s order (standardised inside):
        ``module()(x, v)``."""
        import torch

        path = Path(path)
        if path.exists() and not overwrite:
            raise DatasetError(path, "already exists; pass --overwrite to replace it")
        module = _probability_module(self.net).eval().requires_grad_(False)
        example: tuple[Any, ...] = (torch.zeros((2, *self.image_shape), dtype=torch.uint8),)
        batch = torch.export.Dim("batch")
        dynamic: tuple[Any, ...] = ({0: batch},)
        if self.vectors:
            example += (torch.zeros((2, self.vector_width)),)
            dynamic += ({0: batch},)
        program = torch.export.export(module, example, dynamic_shapes=dynamic)
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
                                      json.loads(header["meta"]),
                                      vectors=json.loads(header.get("vectors", "[]")),
                                      head_hidden=json.loads(header.get("head_hidden", "[]")))
    except (KeyError, ValueError, TypeError, RuntimeError, ConfigError) as err:
        text = " ".join(str(err).split())  # one line: torch's load errors span several
        raise DatasetError(path, f"success classifier file (image) is damaged: "
                                 f"{text[:300]}") from err


def train_image_classifier(images: np.ndarray | ImageFrames, labels: np.ndarray,
                           inputs: ImageInput, config: ImageClassifierConfig | None = None,
                           meta: Mapping[str, Any] | None = None) -> ImageSuccessClassifier:
    """Fits the encoder and head on labelled network images (N, H, W, 3) uint8, or, for inputs
    with vectors, an ``ImageFrames`` of images and vectors (see the module)."""
    import torch
    from torch import nn

    from robot_rl.learning.encoders import random_shift

    config = config or ImageClassifierConfig()
    view = color_view(inputs.view)
    width = sum(b - a for _, a, b in inputs.vectors)
    vectors = None
    if isinstance(images, ImageFrames):
        images, vectors = images.images, np.asarray(images.vectors, np.float32)
    if width and (vectors is None or vectors.shape != (len(images), width)):
        raise ValueError(f"train_image_classifier: the inputs read {width} vector values beside "
                         f"the view; got vectors "
                         f"{None if vectors is None else vectors.shape} for {len(images)} views")
    x = torch.from_numpy(np.ascontiguousarray(np.asarray(images, np.uint8)))
    y = np.asarray(labels, bool).reshape(-1)
    if x.dim() != 4 or len(x) != len(y) or tuple(x.shape[1:]) != view.shape:
        raise ValueError(f"train_image_classifier: images {tuple(x.shape)} and labels {y.shape} "
                         f"(the view is {view.shape})")
    positives, negatives = np.flatnonzero(y), np.flatnonzero(~y)
    if positives.size == 0 or negatives.size == 0:
        raise ValueError(f"train_image_classifier: needs success and failure frames, got "
                         f"{positives.size} and {negatives.size}")
    head_hidden = config.head_hidden if width else ()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        net = _net_class()(view, config.encoder, width, head_hidden)
    v = None
    if width:
        assert vectors is not None
        v = torch.from_numpy(np.ascontiguousarray(vectors))
        with torch.no_grad():
            net.vector_mean.copy_(torch.from_numpy(vectors.mean(axis=0)))
            net.vector_std.copy_(torch.from_numpy(np.maximum(vectors.std(axis=0), 1e-3)))
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
        loss = loss_fn(net(batch, None if v is None else v[index]), targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    info = {"success_frames": int(positives.size), "failure_frames": int(negatives.size),
            "final_loss": float(loss.detach()), "updates": config.updates, **(meta or {})}
    return ImageSuccessClassifier(inputs.key, view, config.encoder, None,
                                  config.threshold or 0.5, config.debounce_frames, info, net=net,
                                  vectors=inputs.vectors, head_hidden=head_hidden)


def check_task_view(classifier: Any, task_has_view: bool, path: str | os.PathLike[str]) -> None:
    """Refuses (ValueError) an image classifier for a task without a camera view (a state task):
    it would have nothing to judge, and each step would fail; one line naming the file and the
    missing view."""
    if getattr(classifier, "kind", "vector") == "image" and not task_has_view:
        raise ValueError(f"{path}: an image success classifier (reads the view "
                         f"'{classifier.key}') but the task has no camera view (state "
                         f"observations): run the task with observation: pixels, or train a "
                         f"classifier on its observation vector")
