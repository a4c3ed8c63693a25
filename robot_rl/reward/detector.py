"""Success from a classifier, held for k frames: what a task's reward and termination read.

``step(frame)`` once per control step with the frame the step's reward judges (the observation
after the action; for an image classifier a mapping that holds the view after the action,
``camera_color``); it returns whether success holds now: the classifier's probability at or above
the threshold on the last ``debounce_frames`` frames in a row. That is the step's success (reward 0
under the sparse reward, and the end of the episode where the task ends at success), as the twin's
rule is "within tolerance now". ``fired``: whether it held at any step of this episode (the
episode's success). ``reset`` at each episode's start.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np


class SuccessDetector:
    """``classifier``: a ``SuccessClassifier`` or an ``ImageSuccessClassifier`` (its ``features``,
    ``probability``, ``threshold`` and ``debounce_frames``)."""

    def __init__(self, classifier: Any, threshold: float | None = None,
                 debounce_frames: int | None = None) -> None:
        self.classifier = classifier
        self.threshold = classifier.threshold if threshold is None else float(threshold)
        self.debounce_frames = (classifier.debounce_frames if debounce_frames is None
                                else int(debounce_frames))
        if not 0.0 <= self.threshold <= 1.0 or self.debounce_frames < 1:
            raise ValueError(f"success detector: threshold in [0, 1] and debounce_frames >= 1, "
                             f"got {self.threshold}, {self.debounce_frames}")
        self.run = 0               # frames in a row at or above the threshold
        self.fired = False         # the episode has succeeded
        self.last_probability = float("nan")

    def reset(self) -> None:
        self.run, self.fired, self.last_probability = 0, False, float("nan")

    def step(self, frame: Mapping[str, np.ndarray] | np.ndarray) -> bool:
        """Whether this frame completes (or continues) k frames of success."""
        p = float(self.classifier.probability(self.classifier.features(frame)))
        self.last_probability = p
        self.run = self.run + 1 if p >= self.threshold else 0
        now = self.run >= self.debounce_frames
        self.fired = self.fired or now
        return now
