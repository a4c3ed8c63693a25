"""A learned reward: success labels for recorded frames, a success classifier trained on them, and
a debounced detector that gives a task its reward and success from the classifier.

``labels``: which frames of which episodes show success (ranges a person marks, or automatic labels
from a ground-truth reward); ``classifier``: the model (inputs, normaliser, MLP, threshold,
debounce), training, evaluation (precision, recall, confusion), its file and its export;
``detector``: success held for k frames, per episode. Pure numpy at run time (torch only to train
and export): the acting side evaluates it as it evaluates its policy.
"""

from __future__ import annotations

from robot_rl.reward.classifier import (
    ClassifierConfig,
    SuccessClassifier,
    evaluate_classifier,
    load_classifier,
    train_classifier,
)
from robot_rl.reward.detector import SuccessDetector
from robot_rl.reward.labels import FrameLabels, frame_features
from robot_rl.reward.study import study_classifier

__all__ = ["ClassifierConfig", "FrameLabels", "SuccessClassifier", "SuccessDetector",
           "evaluate_classifier", "frame_features", "load_classifier", "study_classifier",
           "train_classifier"]
