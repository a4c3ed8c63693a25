"""The learned-reward study's classifier (bench/hil_study.py): few labels, held-out evaluation.

Labelled: the first ``label_episodes`` successful episodes of the dataset, every frame of them
(their success frames, and their failure frames); the labels are the dataset's ground-truth reward,
standing in for a person who marks each episode's success range. Held out: every other episode,
scored against its ground truth. A second classifier on proprioception alone (joint positions and
velocities, fingertips from forward kinematics) is trained and scored the same way, to say whether
the robot's own sensing would suffice.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from robot_rl.data import EpisodeStore
from robot_rl.registry import env_id_task, make_task
from robot_rl.reward.classifier import (
    ClassifierConfig,
    evaluate_classifier,
    fit_classifier,
    parse_inputs,
)
from robot_rl.reward.detector import SuccessDetector
from robot_rl.reward.labels import FrameLabels, frame_features
from robot_rl.robot_config import load_robot

STATE_INPUTS = ("observation.error_cos_sin",)
PROPRIO_INPUTS = ("observation.joint_position_rad", "observation.joint_velocity_rad_s",
                  "observation.fingertip_position_m")


def study_classifier(config: Any, dataset: Path, run_dir: Path, label_episodes: int,
                     classifier_config: ClassifierConfig | None = None
                     ) -> tuple[SuccessDetector, dict[str, Any]]:
    """(the detector on the state classifier, what the study reports about both classifiers)."""
    task = make_task(env_id_task(config.env_id), load_robot(config.robot))
    classifier_config = classifier_config or ClassifierConfig(seed=config.seed)
    with EpisodeStore.open(dataset, "r") as store:
        successful = [i for i in range(store.n_episodes) if store.episode_info(i).get("success")]
        labelled = successful[:label_episodes]
        held_out = [i for i in range(store.n_episodes) if i not in labelled]
        train = FrameLabels.from_reward(store, labelled)
        test = FrameLabels.from_reward(store, held_out)
        widths = {"observation": task.observation_size}
        report: dict[str, Any] = {"label_episodes": len(labelled),
                                  "label_success_frames": train.success_frames,
                                  "held_out_episodes": len(held_out)}
        classifiers = {}
        for name, specs in (("state", STATE_INPUTS), ("proprioception", PROPRIO_INPUTS)):
            inputs = parse_inputs(specs, widths, task.layout)
            features = frame_features(store, inputs)
            rows, flags, ids = train.frames(store)
            classifier = fit_classifier(features[rows], flags, ids, inputs, classifier_config,
                                        {"inputs_named": list(specs), "dataset": str(dataset),
                                         "labelled_episodes": labelled})
            rows, flags, ids = test.frames(store)
            report[f"{name}_classifier"] = evaluate_classifier(classifier, features[rows], flags,
                                                               ids)
            report[f"{name}_classifier"]["label_failure_frames"] = \
                classifier.meta["failure_frames"]
            classifiers[name] = classifier
    classifiers["state"].save(run_dir / "classifier.safetensors", overwrite=True)
    return SuccessDetector(classifiers["state"]), report
