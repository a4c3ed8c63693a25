"""The success classifier: inputs, a normaliser, a small MLP, a threshold and a debounce.

Inputs are columns of a frame's keys, written ``observation`` (all of it), ``observation[20:22]``
(columns 20-21) or ``observation.error_cos_sin`` (a field of the task's observation layout, for
which the task is needed); several inputs are concatenated. The model: inputs standardised with
the training frames' mean and std, an MLP (ReLU) to one logit, p = sigmoid(logit). A frame shows
success when p >= ``threshold``; an episode succeeds once ``debounce_frames`` frames in a row do
(``detector.SuccessDetector``): one noisy frame must not end an episode as a success.

Training: full-batch Adam on the binary cross-entropy with the positive class weighted by
negatives / positives (about 20 success frames against hundreds of failures), weight decay
against over-fitting so few examples. Seeded: the same labels give the same model.

The file is safetensors: arrays (``layers.{i}.weight`` (out, in), ``layers.{i}.bias``, ``mean``,
``std``) and JSON metadata (inputs, threshold, debounce, what it was trained on). Numbers only,
loaded without pickle. ``export`` writes a ``torch.export`` program (raw inputs -> probability)
for use outside robot_rl.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load_file, save_file

from robot_rl.data import DatasetError

CLASSIFIER_FORMAT = "robot_rl.success_classifier/1"
Input = tuple[str, int, int]  # key, first column, stop column
_SLICE = re.compile(r"^(?P<key>[A-Za-z_][\w]*)(\[(?P<a>\d*):(?P<b>\d*)\])?$")


@dataclass(frozen=True)
class ClassifierConfig:
    """How a classifier is trained, and its default threshold and debounce."""

    hidden_sizes: tuple[int, ...] = field(default=(64, 64), metadata={
        "help": "MLP hidden layers"})
    updates: int = field(default=2000, metadata={"range": (1, 1_000_000),
                                                 "help": "full-batch Adam steps"})
    lr: float = field(default=1e-3, metadata={"range": (1e-6, 1.0)})
    weight_decay: float = field(default=1e-3, metadata={"range": (0.0, 1.0)})
    threshold: float = field(default=0.0, metadata={
        "range": (0.0, 1.0), "help": "a frame shows success when p >= threshold; 0: chosen by "
                                     "cross-validation over the labelled episodes"})
    cv_folds: int = field(default=5, metadata={
        "range": (2, 100), "help": "folds (of episodes) for choosing the threshold"})
    debounce_frames: int = field(default=1, metadata={
        "range": (1, 1000), "help": "success once this many frames in a row show it (1: the "
                                    "frame alone, as the tasks' own rules judge; more where "
                                    "success lasts and single frames are noisy)"})
    seed: int = field(default=0, metadata={"range": (0, 2**31 - 1)})


def parse_inputs(specs: Sequence[str], widths: Mapping[str, int],
                 layout: Mapping[str, slice] | None = None,
                 layouts: Mapping[str, Mapping[str, slice]] | None = None) -> list[Input]:
    """``observation``, ``observation[a:b]`` or ``observation.<field>`` into (key, start, stop);
    ``widths``: each key's values per frame. A named field is looked up in ``layouts[key]`` where
    given (a pixel dataset's ``observation`` and ``state_observation`` have different layouts),
    else in ``layout``."""
    inputs = []
    for spec in specs:
        key, dot, name = spec.partition(".")
        if dot:
            layout = (layouts or {}).get(key, layout)
            if layout is None:
                raise ValueError(f"classifier input '{spec}': a named field needs the task "
                                 "(--task) for its observation layout")
            if name not in layout:
                raise ValueError(f"classifier input '{spec}': the task's observation has no "
                                 f"field '{name}'; fields: {sorted(layout)}")
            part = layout[name]
            inputs.append((key, int(part.start), int(part.stop)))
            continue
        match = _SLICE.match(spec)
        if match is None:
            raise ValueError(f"classifier input '{spec}': expected KEY, KEY[a:b] or "
                             "observation.FIELD")
        key = match["key"]
        if key not in widths:
            raise ValueError(f"classifier input '{spec}': no key '{key}'; keys: {sorted(widths)}")
        start = int(match["a"] or 0)
        stop = int(match["b"]) if match["b"] else widths[key]
        if not 0 <= start < stop <= widths[key]:
            raise ValueError(f"classifier input '{spec}': columns {start}:{stop} are not within "
                             f"'{key}''s {widths[key]}")
        inputs.append((key, start, stop))
    if not inputs:
        raise ValueError("classifier: at least one input is needed")
    return inputs


def input_vector(inputs: Sequence[Input], values: Mapping[str, Any]) -> np.ndarray:
    """One frame's inputs (float32, concatenated) from its keys; ValueError naming a missing key
    or one with fewer values than an input's columns."""
    parts = []
    for key, start, stop in inputs:
        if key not in values or values[key] is None:
            raise ValueError(f"classifier input '{key}' is missing from the frame (it has "
                             f"{sorted(values)})")
        flat = np.asarray(values[key], np.float32).reshape(-1)
        if stop > flat.size:
            raise ValueError(f"classifier input '{key}[{start}:{stop}]': the frame's '{key}' "
                             f"has {flat.size} values")
        parts.append(flat[start:stop])
    return np.concatenate(parts)


class SuccessClassifier:
    """Numpy inference of a trained classifier (see the module)."""

    kind = "vector"

    def __init__(self, inputs: Sequence[Input], mean: np.ndarray, std: np.ndarray,
                 layers: Sequence[tuple[np.ndarray, np.ndarray]], threshold: float,
                 debounce_frames: int, meta: Mapping[str, Any] | None = None) -> None:
        self.inputs = [(str(k), int(a), int(b)) for k, a, b in inputs]
        self.mean = np.asarray(mean, np.float32)
        self.std = np.asarray(std, np.float32)
        self.layers = [(np.asarray(w, np.float32), np.asarray(b, np.float32)) for w, b in layers]
        width = sum(b - a for _, a, b in self.inputs)
        if self.mean.shape != (width,) or self.layers[0][0].shape[1] != width:
            raise ValueError(f"classifier: inputs are {width} wide but the normaliser has "
                             f"{self.mean.shape} and the first layer {self.layers[0][0].shape}")
        if not 0.0 <= threshold <= 1.0 or debounce_frames < 1:
            raise ValueError(f"classifier: threshold in [0, 1] and debounce_frames >= 1, got "
                             f"{threshold}, {debounce_frames}")
        self.threshold, self.debounce_frames = float(threshold), int(debounce_frames)
        self.meta = dict(meta or {})

    @property
    def width(self) -> int:
        return int(self.mean.shape[0])

    def features(self, frame: Mapping[str, np.ndarray] | np.ndarray) -> np.ndarray:
        """One frame's input vector from its keys (an array alone is the ``observation``)."""
        values = {"observation": frame} if isinstance(frame, np.ndarray) else frame
        return input_vector(self.inputs, values)

    def probability(self, features: np.ndarray) -> np.ndarray:
        """p(success) of one feature vector (a float) or a batch (N,)."""
        x = (np.asarray(features, np.float32) - self.mean) / self.std
        single = x.ndim == 1
        x = x.reshape(1, -1) if single else x
        *hidden, head = self.layers
        for weight, bias in hidden:
            x = np.maximum(x @ weight.T + bias, 0.0)
        logit = (x @ head[0].T + head[1]).reshape(-1)
        p = 1.0 / (1.0 + np.exp(-np.clip(logit, -60.0, 60.0)))
        return p[0] if single else p

    # ---- the file ------------------------------------------------------------------------
    def save(self, path: str | os.PathLike[str], overwrite: bool = False) -> Path:
        path = Path(path)
        if path.exists() and not overwrite:
            raise DatasetError(path, "already exists; pass --overwrite to replace it")
        arrays = {"mean": self.mean, "std": self.std}
        for i, (weight, bias) in enumerate(self.layers):
            arrays[f"layers.{i}.weight"], arrays[f"layers.{i}.bias"] = weight, bias
        header = {"format": CLASSIFIER_FORMAT, "inputs": json.dumps(self.inputs),
                  "threshold": repr(self.threshold),
                  "debounce_frames": str(self.debounce_frames), "meta": json.dumps(self.meta)}
        tmp = path.with_name(f".{path.name}.tmp")
        save_file({k: np.ascontiguousarray(v) for k, v in arrays.items()}, str(tmp),
                  metadata=header)
        os.replace(tmp, path)
        return path

    def export(self, path: str | os.PathLike[str], overwrite: bool = False) -> Path:
        """A ``torch.export`` program (``.pt2``): (N, width) raw inputs -> (N,) probabilities,
        for use without robot_rl (``torch.export.load(path).module()(x)``)."""
        import torch

        path = Path(path)
        if path.exists() and not overwrite:
            raise DatasetError(path, "already exists; pass --overwrite to replace it")
        module = _torch_classifier(self).eval().requires_grad_(False)
        example = torch.zeros(2, self.width)
        batch = torch.export.Dim("batch")
        program = torch.export.export(module, (example,), dynamic_shapes=({0: batch},))
        tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")  # the archive keeps its suffix
        torch.export.save(program, str(tmp))
        os.replace(tmp, path)
        return path


def load_classifier(path: str | os.PathLike[str]) -> Any:
    """A classifier file: a ``SuccessClassifier`` (vector inputs) or, by the file's format string,
    an ``image_classifier.ImageSuccessClassifier``; DatasetError naming the file if it is neither.
    One entry point for every caller (the CLI, the learner node, the in-process pipeline)."""
    path = Path(path)
    try:
        arrays = load_file(str(path))
        with open(path, "rb") as handle:
            length = int.from_bytes(handle.read(8), "little")
            header = json.loads(handle.read(length)).get("__metadata__") or {}
    except (OSError, SafetensorError, ValueError, UnicodeDecodeError) as err:
        raise DatasetError(path, f"not a success classifier file: {err}") from err
    from robot_rl.reward.image_classifier import IMAGE_CLASSIFIER_FORMAT, image_classifier_from

    if header.get("format") == IMAGE_CLASSIFIER_FORMAT:
        return image_classifier_from(path, arrays, header)
    if header.get("format") != CLASSIFIER_FORMAT:
        raise DatasetError(path, f"not a success classifier file (format "
                                 f"{header.get('format')!r}, expected {CLASSIFIER_FORMAT!r} or "
                                 f"{IMAGE_CLASSIFIER_FORMAT!r})")
    try:
        n_layers = len([k for k in arrays if k.endswith(".weight")])
        layers = [(arrays[f"layers.{i}.weight"], arrays[f"layers.{i}.bias"])
                  for i in range(n_layers)]
        return SuccessClassifier(json.loads(header["inputs"]), arrays["mean"], arrays["std"],
                                 layers, float(header["threshold"]),
                                 int(header["debounce_frames"]), json.loads(header["meta"]))
    except (KeyError, ValueError, TypeError, IndexError) as err:
        raise DatasetError(path, f"success classifier file is damaged: {err}") from err


def train_classifier(features: np.ndarray, labels: np.ndarray, inputs: Sequence[Input],
                     config: ClassifierConfig | None = None,
                     meta: Mapping[str, Any] | None = None) -> SuccessClassifier:
    """Fits the MLP on labelled frames (see the module)."""
    import torch
    from torch import nn

    from robot_rl.learning.networks import MLP

    config = config or ClassifierConfig()
    x = np.asarray(features, np.float32)
    y = np.asarray(labels, bool).reshape(-1)
    positives, negatives = int(y.sum()), int((~y).sum())
    if x.ndim != 2 or len(x) != len(y):
        raise ValueError(f"train_classifier: features {x.shape} and labels {y.shape} differ")
    if positives == 0 or negatives == 0:
        raise ValueError(f"train_classifier: needs success and failure frames, got {positives} "
                         f"and {negatives}")
    mean = x.mean(axis=0)
    std = np.maximum(x.std(axis=0), 1e-3)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        net = MLP(x.shape[1], 1, config.hidden_sizes)
    inputs_t = torch.from_numpy((x - mean) / std)
    targets = torch.from_numpy(y.astype(np.float32))
    loss_fn = nn.BCEWithLogitsLoss(pos_weight=torch.tensor(negatives / positives))
    optimizer = torch.optim.Adam(net.parameters(), lr=config.lr,
                                 weight_decay=config.weight_decay)
    for _ in range(config.updates):
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(net(inputs_t).squeeze(-1), targets)
        loss.backward()
        optimizer.step()
    layers = [(layer.weight.detach().numpy().copy(), layer.bias.detach().numpy().copy())
              for layer in net.layers]
    info = {"success_frames": positives, "failure_frames": negatives,
            "final_loss": float(loss.detach()), **(meta or {})}
    return SuccessClassifier(inputs, mean, std, layers, config.threshold or 0.5,
                             config.debounce_frames, info)


class Trainer(Protocol):
    """What ``fit_classifier`` trains with: ``train_classifier`` (vectors) or
    ``image_classifier.train_image_classifier`` (views); the config is the trainer's own (a
    dataclass with ``threshold``, ``cv_folds`` and ``seed``)."""

    def __call__(self, features: np.ndarray, labels: np.ndarray, inputs: Any, config: Any,
                 meta: Mapping[str, Any] | None = None) -> Any: ...


def fit_classifier(features: np.ndarray, labels: np.ndarray, episode_ids: np.ndarray,
                   inputs: Any, config: Any = None,
                   meta: Mapping[str, Any] | None = None,
                   trainer: Trainer | None = None) -> Any:
    """``trainer`` (default ``train_classifier``) on every labelled frame, with the threshold
    chosen (when the config's is 0) by cross-validation: the labelled episodes in ``cv_folds``
    groups, each predicted by a model trained on the others; the threshold maximises F0.5 of those
    predictions (precision weighs twice recall: a false success ends an episode with a reward it
    did not earn, a missed one only delays it). Ties go to the higher threshold. The same rule
    for every kind of classifier: only the trainer differs."""
    trainer = trainer or train_classifier
    config = config or ClassifierConfig()
    y = np.asarray(labels, bool)
    ids = np.asarray(episode_ids)
    cv: dict[str, Any] = {}
    threshold = config.threshold
    if not threshold:
        threshold, cv = _cross_validated_threshold(features, y, ids, inputs, config, trainer)
    final = trainer(features, y, inputs, dataclasses.replace(config, threshold=threshold),
                    {**(meta or {}), "threshold_cv": cv})
    return final


def _cross_validated_threshold(features: np.ndarray, y: np.ndarray, ids: np.ndarray,
                               inputs: Any, config: Any, trainer: Trainer = train_classifier
                               ) -> tuple[float, dict[str, Any]]:
    episodes = np.unique(ids)
    folds = min(config.cv_folds, len(episodes))
    if folds < 2:
        return 0.5, {"folds": 0, "note": "one labelled episode: threshold 0.5"}
    order = np.random.default_rng(config.seed).permutation(episodes)
    groups = np.array_split(order, folds)
    out_of_fold = np.full(len(y), np.nan)
    for group in groups:
        held = np.isin(ids, group)
        if y[~held].all() or not y[~held].any():
            continue  # a fold whose rest lacks a class teaches nothing
        model = trainer(features[~held], y[~held], inputs, config)
        out_of_fold[held] = model.probability(features[held])
    scored = ~np.isnan(out_of_fold)
    best, best_score = 0.5, -1.0
    for candidate in np.linspace(0.05, 0.99, 95):
        predicted = out_of_fold[scored] >= candidate
        tp = np.sum(predicted & y[scored])
        fp, fn = np.sum(predicted & ~y[scored]), np.sum(~predicted & y[scored])
        score = 1.25 * tp / max(1.25 * tp + 0.25 * fn + fp, 1e-9)  # F0.5
        if score >= best_score:
            best, best_score = float(candidate), float(score)
    return round(best, 4), {"folds": folds, "f05": best_score, "frames_scored": int(scored.sum())}


def evaluate_classifier(classifier: Any, features: np.ndarray, labels: np.ndarray,
                        episode_ids: np.ndarray, threshold: float | None = None,
                        debounce_frames: int | None = None) -> dict[str, Any]:
    """Frame and episode scores on labelled frames (ideally of held-out episodes).

    frames: confusion (tp, fp, fn, tn), precision, recall, accuracy at the threshold. episodes:
    an episode is a success (truth) if any frame is labelled so; detected if the debounced
    detector fires anywhere in it; ``early_detections``: detected episodes that fired before the
    first true success frame (for a task that ends at success, the episode would have ended
    there with a reward it did not earn)."""
    threshold = classifier.threshold if threshold is None else threshold
    k = classifier.debounce_frames if debounce_frames is None else debounce_frames
    y = np.asarray(labels, bool)
    predicted = classifier.probability(features) >= threshold
    tp, fp = int(np.sum(predicted & y)), int(np.sum(predicted & ~y))
    fn, tn = int(np.sum(~predicted & y)), int(np.sum(~predicted & ~y))
    episodes = {"tp": 0, "fp": 0, "fn": 0, "tn": 0}
    early = 0
    ids = np.asarray(episode_ids)
    for episode in np.unique(ids):
        mine = ids == episode
        fired = _first_run(predicted[mine], k)
        truth = np.flatnonzero(y[mine])
        key = ("t" if (fired is not None) == bool(truth.size) else "f") + \
              ("p" if fired is not None else "n")
        episodes[key] += 1
        early += int(fired is not None and truth.size > 0 and fired < truth[0])
    return {"threshold": threshold, "debounce_frames": k,
            "frames": {"tp": tp, "fp": fp, "fn": fn, "tn": tn,
                       "precision": tp / (tp + fp) if tp + fp else float("nan"),
                       "recall": tp / (tp + fn) if tp + fn else float("nan"),
                       "accuracy": (tp + tn) / max(1, len(y))},
            "episodes": {**episodes, "early_detections": early,
                         "accuracy": (episodes["tp"] + episodes["tn"]) / max(1, len(np.unique(ids)))}}


def _first_run(flags: np.ndarray, k: int) -> int | None:
    """Index of the frame at which ``k`` True in a row first complete, or None."""
    run = 0
    for i, flag in enumerate(flags):
        run = run + 1 if flag else 0
        if run >= k:
            return i
    return None


def _torch_module_class() -> Any:
    import torch
    from torch import nn

    class TorchClassifier(nn.Module):
        def __init__(self, classifier: SuccessClassifier) -> None:
            super().__init__()
            self.register_buffer("mean", torch.from_numpy(classifier.mean.copy()))
            self.register_buffer("std", torch.from_numpy(classifier.std.copy()))
            self.layers = nn.ModuleList()
            for weight, bias in classifier.layers:
                layer = nn.Linear(weight.shape[1], weight.shape[0])
                with torch.no_grad():
                    layer.weight.copy_(torch.from_numpy(weight))
                    layer.bias.copy_(torch.from_numpy(bias))
                self.layers.append(layer)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = (x - self.mean) / self.std
            *hidden, head = self.layers
            for layer in hidden:
                x = torch.relu(layer(x))
            return torch.sigmoid(head(x)).squeeze(-1)

    return TorchClassifier


def _torch_classifier(classifier: SuccessClassifier) -> Any:
    return _torch_module_class()(classifier)
