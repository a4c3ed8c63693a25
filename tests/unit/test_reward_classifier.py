"""The learned reward's pure parts: labels and their file, classifier inputs, training with a
cross-validated threshold, evaluation, the classifier file and its export, the debounced detector."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from helpers.reward import store as _store

from robot_rl.data import DatasetError
from robot_rl.reward import (
    ClassifierConfig,
    FrameLabels,
    SuccessClassifier,
    SuccessDetector,
    evaluate_classifier,
    frame_features,
    load_classifier,
    train_classifier,
)
from robot_rl.reward.classifier import fit_classifier, parse_inputs


def test_ranges_are_checked_against_the_dataset_and_the_file_round_trips(tmp_path: Path) -> None:
    store = _store(tmp_path / "d.zarr", [10, 12, 8])
    labels = FrameLabels.from_ranges(store, {0: [(8, 9)], 2: [(7, 7)]}, failure=[1])
    assert labels.episodes == {0: [(8, 9)], 1: [], 2: [(7, 7)]} and labels.success_frames == 3
    path = labels.save(tmp_path / "labels.yaml")
    with pytest.raises(DatasetError, match="labels.yaml: already exists; pass --overwrite"):
        labels.save(path)
    again = FrameLabels.load(path)
    assert again.episodes == labels.episodes and again.steps == 30
    rows, flags, ids = again.frames(store)
    assert len(rows) == 30 and flags.sum() == 3 and rows[flags].tolist() == [8, 9, 29]
    with pytest.raises(DatasetError, match=r"episode 1: success range 3-12 is not within its "
                                           r"frames 0-11"):
        FrameLabels.from_ranges(store, {1: [(3, 12)]})
    with pytest.raises(DatasetError, match=r"episode 5 does not exist \(the dataset has "
                                           r"episodes 0-2\)"):
        FrameLabels.from_ranges(store, {5: [(0, 0)]})
    other = _store(tmp_path / "other.zarr", [10, 12])
    with pytest.raises(DatasetError, match="made for a dataset of 30 steps"):
        again.frames(other)
    (tmp_path / "bad.yaml").write_text("episodes: {0: [[1]]}\n")
    with pytest.raises(DatasetError, match=r"bad.yaml: labels: episode 0: expected a list of "
                                           r"\[first, last\] pairs"):
        FrameLabels.load(tmp_path / "bad.yaml")


def test_automatic_labels_follow_the_reward_and_shift_for_plain_rows(tmp_path: Path) -> None:
    store = _store(tmp_path / "t.zarr", [10, 10])
    labels = FrameLabels.from_reward(store)
    assert labels.episodes == {0: [(8, 9)], 1: []}   # next_observation 0.9 and 1.0
    plain = _store(tmp_path / "p.zarr", [10, 10], transitions=False)
    # row t is the state at t; reward t judges row t + 1 (the last row's successor is unknown)
    assert FrameLabels.from_reward(plain).episodes == {0: [(9, 9)], 1: []}
    features = frame_features(store, [("observation", 0, 1)])
    np.testing.assert_allclose(features[:10, 0], np.linspace(0.1, 1.0, 10), atol=1e-6)


def test_inputs_are_keys_slices_or_named_fields() -> None:
    layout = {"a": slice(0, 2), "b": slice(2, 5)}
    widths = {"observation": 5, "rgb_feat": 3}
    assert parse_inputs(["observation.b", "observation[0:1]", "rgb_feat"], widths, layout) == [
        ("observation", 2, 5), ("observation", 0, 1), ("rgb_feat", 0, 3)]
    for spec, message in (("observation.c", "no field 'c'"), ("depth", "no key 'depth'"),
                          ("observation[3:9]", "columns 3:9 are not within"),
                          ("observation[", "expected KEY")):
        with pytest.raises(ValueError, match=message):
            parse_inputs([spec], widths, layout)
    with pytest.raises(ValueError, match="needs the task"):
        parse_inputs(["observation.a"], widths, None)


def _problem(n_episodes: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Success iff x0 > 0.8, in 2-D with a distractor; one success frame per episode."""
    rng = np.random.default_rng(seed)
    xs, ys, ids = [], [], []
    for k in range(n_episodes):
        x0 = np.r_[rng.uniform(0.0, 0.75, 25), rng.uniform(0.82, 1.0, 1)]
        xs.append(np.stack([x0, rng.normal(size=26)], axis=1))
        ys.append(x0 > 0.8)
        ids.append(np.full(26, k))
    return np.concatenate(xs).astype(np.float32), np.concatenate(ys), np.concatenate(ids)


def test_twenty_success_frames_train_a_classifier_that_holds_on_new_episodes(
        one_torch_thread: None) -> None:
    x, y, ids = _problem(20, seed=0)
    inputs = [("observation", 0, 2)]
    config = ClassifierConfig(hidden_sizes=(16,), updates=400, cv_folds=4)
    model = fit_classifier(x, y, ids, inputs, config)
    assert 0.05 <= model.threshold <= 0.99 and model.meta["threshold_cv"]["folds"] == 4
    assert model.meta["success_frames"] == 20
    test_x, test_y, test_ids = _problem(30, seed=1)
    scores = evaluate_classifier(model, test_x, test_y, test_ids)
    assert scores["frames"]["recall"] >= 0.9 and scores["frames"]["precision"] >= 0.9
    again = fit_classifier(x, y, ids, inputs, config)       # seeded: the same model
    np.testing.assert_array_equal(again.probability(test_x), model.probability(test_x))
    with pytest.raises(ValueError, match="needs success and failure frames"):
        train_classifier(x, np.zeros(len(x), bool), inputs, config)


def _rule(threshold: float = 0.5, debounce: int = 1) -> SuccessClassifier:
    """A hand-set classifier: logit = 40 * (x0 - 0.8), on column 0 of the observation."""
    return SuccessClassifier([("observation", 0, 1)], np.zeros(1), np.ones(1),
                             [(np.array([[40.0]]), np.array([-32.0]))], threshold, debounce,
                             {"note": "test"})


def test_evaluation_counts_frames_and_episodes() -> None:
    model = _rule()
    x = np.array([[0.1], [0.9], [0.95], [0.1], [0.85], [0.2], [0.9], [0.3]], np.float32)
    y = np.array([0, 0, 1, 0, 0, 0, 1, 1], bool)
    ids = np.array([0, 0, 0, 1, 1, 2, 2, 2])
    scores = evaluate_classifier(model, x, y, ids)
    assert scores["frames"] | {} == {**scores["frames"], "tp": 2, "fp": 2, "fn": 1, "tn": 3}
    # episode 0 fired at frame 1, before its success at 2 (early); 1 fired without success
    assert scores["episodes"] == {"tp": 2, "fp": 1, "fn": 0, "tn": 0, "early_detections": 1,
                                  "accuracy": 2 / 3}
    strict = evaluate_classifier(model, x, y, ids, debounce_frames=2)
    assert strict["episodes"]["tp"] == 1 and strict["episodes"]["fp"] == 0


def test_the_file_loads_back_exports_and_refuses_what_is_not_one(tmp_path: Path) -> None:
    model = _rule(0.7, 3)
    path = model.save(tmp_path / "c.safetensors")
    loaded = load_classifier(path)
    x = np.linspace(0, 1, 11, dtype=np.float32).reshape(-1, 1)
    np.testing.assert_allclose(loaded.probability(x), model.probability(x))
    assert (loaded.threshold, loaded.debounce_frames, loaded.meta) == (0.7, 3, {"note": "test"})
    with pytest.raises(DatasetError, match="already exists"):
        model.save(path)
    import torch
    exported = torch.export.load(str(model.export(tmp_path / "c.pt2"))).module()
    np.testing.assert_allclose(exported(torch.from_numpy(x)).numpy(), model.probability(x),
                               rtol=1e-5, atol=1e-6)
    (tmp_path / "junk.safetensors").write_bytes(b"not a classifier")
    with pytest.raises(DatasetError, match="junk.safetensors: not a success classifier file"):
        load_classifier(tmp_path / "junk.safetensors")


def test_the_detector_needs_k_frames_in_a_row() -> None:
    detector = SuccessDetector(_rule(), debounce_frames=2)
    frames = [0.9, 0.1, 0.9, 0.95, 0.1]
    assert [detector.step(np.array([v], np.float32)) for v in frames] == [
        False, False, False, True, False]
    assert detector.fired
    detector.reset()
    assert not detector.fired and not detector.step(np.array([0.9], np.float32))
    assert SuccessDetector(_rule()).step(np.array([0.9], np.float32))  # k = 1: the frame alone
    with pytest.raises(ValueError, match="debounce_frames >= 1"):
        SuccessDetector(_rule(), debounce_frames=0)
