"""A learned reward: success labels for recorded frames, a success classifier trained on them, and
a debounced detector that gives a task its reward and success from the classifier.

``labels``: which frames of which episodes show success (ranges a person marks, or automatic labels
from a ground-truth reward); ``classifier``: the model (inputs, normaliser, MLP, threshold,
debounce), training, evaluation (precision, recall, confusion), its file and its export;
``detector``: success held for k frames, per episode. ``image_classifier``: the same on a camera
view (a conv encoder and a linear head; an MLP head where vector inputs, e.g. a goal,
sit beside the view). The vector classifier is pure numpy at run time (torch
only to train and export); the image classifier runs its conv net in torch on the CPU, as the
acting side runs a pixel policy's encoder.
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
from robot_rl.reward.image_classifier import (
    ImageClassifierConfig,
    ImageSuccessClassifier,
    train_image_classifier,
)
from robot_rl.reward.labels import FrameLabels, frame_features
from robot_rl.reward.study import study_classifier

__all__ = ["ClassifierConfig", "FrameLabels", "ImageClassifierConfig", "ImageSuccessClassifier",
           "SuccessClassifier", "SuccessDetector", "evaluate_classifier", "frame_features",
           "load_classifier", "study_classifier", "train_classifier", "train_image_classifier"]
