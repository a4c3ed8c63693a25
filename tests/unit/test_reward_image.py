"""The success classifier on camera views: it learns a success picture from ~20 positives (and
not from shuffled labels), its file and export, the frame rule (the view of frame t is the next
row's in a transition store; an episode's last step has none), the refusal of a dataset whose
success views were never stored, the CLI, and the view reaching the detector on the graph's
episode machine and in process. With vector inputs beside the view (a goal the picture does not
show): it learns what the view alone cannot, its file, the frames' alignment, a missing key."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from helpers.reward import view_store
from test_agent_episode import TwinRobot, run_episode

from robot_rl.agent.episode import EpisodeConfig, EpisodeMachine, Phase
from robot_rl.agent.frames import ViewFrame
from robot_rl.cli import main
from robot_rl.data import DatasetError
from robot_rl.reward import (
    FrameLabels,
    ImageClassifierConfig,
    ImageSuccessClassifier,
    SuccessDetector,
    evaluate_classifier,
    load_classifier,
    train_image_classifier,
)
from robot_rl.reward.classifier import fit_classifier
from robot_rl.reward.image_classifier import ImageFrames, ImageInput
from robot_rl.reward.labels import labelled_image_frames, view_frames
from robot_rl.robot_config import load_robot
from robot_rl.tasks.camera import ImageObservationConfig
from robot_rl.tasks.valve import ValveTask

SIZE = 32
VIEW = ImageObservationConfig(width=SIZE, height=SIZE)
INPUT = ImageInput("camera_color", VIEW)


def _scenes(n_episodes: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Episodes of 26 cluttered views (noise and dim rectangles; half of them also a white
    square at the bottom right: bright is not enough), the last one a success: a white square
    at the top left."""
    rng = np.random.default_rng(seed)
    images, labels, ids = [], [], []
    for k in range(n_episodes):
        for t in range(26):
            image = rng.integers(0, 90, (SIZE, SIZE, 3)).astype(np.uint8)
            for _ in range(3):
                y, x = rng.integers(0, SIZE - 6, 2)
                h, w = rng.integers(3, 7, 2)
                image[y:y + h, x:x + w] = rng.integers(0, 170, 3)
            if rng.random() < 0.5:
                image[20:28, 20:28] = 255
            success = t == 25
            if success:
                image[4:12, 4:12] = 255
            images.append(image)
            labels.append(success)
            ids.append(k)
    return np.stack(images), np.asarray(labels), np.asarray(ids)


def test_twenty_success_views_train_a_classifier_that_holds_on_new_episodes(
        one_torch_thread: None) -> None:
    x, y, ids = _scenes(20, seed=0)
    config = ImageClassifierConfig(updates=150, cv_folds=3)
    model = fit_classifier(x, y, ids, INPUT, config, trainer=train_image_classifier)
    assert model.meta["success_frames"] == 20 and model.meta["threshold_cv"]["folds"] == 3
    test_x, test_y, test_ids = _scenes(30, seed=1)
    scores = evaluate_classifier(model, test_x, test_y, test_ids)
    assert scores["frames"]["precision"] >= 0.9 and scores["frames"]["recall"] >= 0.9, scores
    # the same frames with their labels shuffled teach nothing that holds on new episodes
    shuffled = np.random.default_rng(2).permutation(y)
    blind = train_image_classifier(x, shuffled, INPUT, ImageClassifierConfig(
        updates=150, threshold=model.threshold))
    frames = evaluate_classifier(blind, test_x, test_y, test_ids)["frames"]
    assert not (frames["precision"] >= 0.9 and frames["recall"] >= 0.9), frames
    assert frames["recall"] < 0.5 or not frames["precision"] >= 0.5, frames


def test_the_file_loads_back_exports_and_refuses_what_is_not_one(
        tmp_path: Path, one_torch_thread: None) -> None:
    x, y, _ = _scenes(4, seed=3)
    config = ImageClassifierConfig(updates=5, threshold=0.6, debounce_frames=2)
    model = train_image_classifier(x, y, INPUT, config, {"note": "test"})
    again = train_image_classifier(x, y, INPUT, config, {"note": "test"})  # seeded
    np.testing.assert_array_equal(again.probability(x), model.probability(x))
    path = model.save(tmp_path / "c.safetensors")
    loaded = load_classifier(path)
    assert isinstance(loaded, ImageSuccessClassifier) and loaded.kind == "image"
    np.testing.assert_array_equal(loaded.probability(x), model.probability(x))
    assert (loaded.threshold, loaded.debounce_frames, loaded.meta["note"]) == (0.6, 2, "test")
    assert loaded.view == VIEW and loaded.inputs == ["camera_color"]
    # a full camera frame is cut to the view; a frame without the view is named
    full = np.repeat(np.repeat(x[0], 2, axis=0), 2, axis=1)
    assert loaded.features({"camera_color": full}).shape == (SIZE, SIZE, 3)
    with pytest.raises(ValueError, match="without the view 'camera_color'"):
        loaded.features(np.zeros(3, np.float32))
    with pytest.raises(DatasetError, match="already exists"):
        model.save(path)
    import torch
    exported = torch.export.load(str(model.export(tmp_path / "c.pt2"))).module()
    np.testing.assert_allclose(exported(torch.from_numpy(x[:5])).numpy(), model.probability(x[:5]),
                               rtol=1e-5, atol=1e-6)
    damaged = tmp_path / "damaged.safetensors"
    damaged.write_bytes(path.read_bytes()[:300])
    from safetensors.numpy import load_file, save_file
    arrays = load_file(str(path))
    arrays.pop(next(iter(arrays)))
    headless = tmp_path / "missing.safetensors"
    save_file(arrays, str(headless), metadata={"format": "robot_rl.success_classifier.image/1"})
    for bad, message in ((damaged, "damaged.safetensors: not a success classifier file"),
                         (headless, "missing.safetensors: success classifier file \\(image\\) "
                                    "is damaged")):
        with pytest.raises(DatasetError, match=message) as err:
            load_classifier(bad)
        assert "\n" not in str(err.value)


def test_the_view_of_frame_t_is_the_next_rows_and_the_last_step_has_none(tmp_path: Path) -> None:
    store = view_store(tmp_path / "t.zarr", [4, 3], [[1], [2]])
    views, valid = view_frames(store, "camera_color")
    # row t holds the view the policy acted on (observation t); frame t is the state after
    # action t: the view of row t + 1 of the same episode
    assert views[:, 0, 0, 0].tolist()[:3] == [1, 2, 3] and views[4:6, 0, 0, 0].tolist() == [11, 12]
    assert valid.tolist() == [True, True, True, False, True, True, False]
    labels = FrameLabels.from_reward(store)
    assert labels.episodes == {0: [(1, 1)], 1: [(2, 2)]}
    images, flags, ids, left_out = labelled_image_frames(store, labels, "camera_color")
    assert images[:, 0, 0, 0].tolist() == [1, 2, 3, 11, 12] and left_out == 2
    assert flags.tolist() == [False, True, False, False, False] and ids.tolist() == [0, 0, 0, 1, 1]
    plain = view_store(tmp_path / "p.zarr", [4, 3], [[1], [2]], transitions=False)
    views, valid = view_frames(plain, "camera_color")   # plain rows: frame t is row t
    assert views[:, 0, 0, 0].tolist() == [0, 1, 2, 3, 10, 11, 12] and valid.all()
    with pytest.raises(DatasetError, match="'reward' is not a camera view"):
        view_frames(store, "reward")


def test_a_dataset_that_ended_at_each_success_is_refused_with_the_cure(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = view_store(tmp_path / "end.zarr", [5, 5, 5], [[4], [4], []])  # ends at success
    labels = FrameLabels.from_reward(store)
    with pytest.raises(DatasetError, match="none of the 2 success frames has a stored view.*"
                                           "terminate_on_success false"):
        labelled_image_frames(store, labels, "camera_color")
    store.close()
    path = labels.save(tmp_path / "l.yaml")
    assert main(["reward", "train", str(tmp_path / "end.zarr"), "--labels", str(path), "-o",
                 str(tmp_path / "c.safetensors"), "--input", "camera_color"]) == 1
    err = capsys.readouterr().err
    assert "terminate_on_success false" in err and len(err.strip().splitlines()) == 1


def test_label_train_eval_export_on_views(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                          one_torch_thread: None) -> None:
    # the robot holds at the goal: frames 5-8 of even episodes are successes, none is the last
    store = view_store(tmp_path / "v.zarr", [10] * 8,
                       [[5, 6, 7, 8] if k % 2 == 0 else [] for k in range(8)])
    data = str(store.path)
    store.close()
    labels, model = tmp_path / "l.yaml", tmp_path / "c.safetensors"
    assert main(["reward", "label", data, "-o", str(labels), "--from-reward",
                 "--episodes", "0-5"]) == 0
    capsys.readouterr()
    assert main(["reward", "train", data, "--labels", str(labels), "-o", str(model),
                 "--input", "camera_color", "--updates", "10", "--threshold", "0.5"]) == 0
    out = capsys.readouterr().out
    assert "image classifier on 'camera_color' (16x16), 12 success and 42 failure" in out
    assert "(6 labelled frames without a view left out)" in out
    classifier = load_classifier(model)
    assert classifier.kind == "image" and classifier.threshold == 0.5
    assert main(["reward", "eval", str(model), data, "--from-reward", "--episodes", "6-7",
                 "--json"]) == 0
    scores = json.loads(capsys.readouterr().out)["frames"]
    assert scores["tp"] + scores["fn"] == 4 and sum(map(scores.get, ("tp", "fp", "fn", "tn"))) == 18
    assert main(["reward", "export", str(model), "-o", str(tmp_path / "c.pt2")]) == 0
    assert "(N, 16, 16, 3) uint8 views -> (N,) probabilities" in capsys.readouterr().out
    # the view and a vector beside it: train, eval and export read both
    assert main(["reward", "train", data, "--labels", str(labels), "-o", str(model),
                 "--input", "camera_color", "--input", "observation[0:1]", "--updates", "10",
                 "--threshold", "0.5", "--overwrite"]) == 0
    assert "on 'camera_color' (16x16) and ['observation[0:1]'] (1 values)" in \
        capsys.readouterr().out
    assert load_classifier(model).vectors == [("observation", 0, 1)]
    assert main(["reward", "eval", str(model), data, "--from-reward", "--episodes", "6-7",
                 "--json"]) == 0
    scores = json.loads(capsys.readouterr().out)["frames"]
    assert scores["tp"] + scores["fn"] == 4
    assert main(["reward", "export", str(model), "-o", str(tmp_path / "v.pt2")]) == 0
    assert "uint8 views and (N, 1) float32 vectors (observation[0:1])" in capsys.readouterr().out
    assert main(["reward", "train", data, "--labels", str(labels), "-o", str(model),
                 "--input", "camera_color", "--input", "camera_color", "--overwrite"]) != 0
    assert "reads one camera view" in capsys.readouterr().err


# ---- vector inputs beside the view -------------------------------------------------------------
CORNERS = ((4, 4), (4, 20), (20, 4), (20, 20))
GOAL_INPUT = ImageInput("camera_color", VIEW, (("observation", 0, 2),))


def _goal_scenes(n_episodes: int, seed: int) -> tuple[ImageFrames, np.ndarray, np.ndarray]:
    """Episodes of 24 noisy views with a white square in one of four corners, each episode with
    a goal corner given as a vector (cos, sin of goal * 90 degrees; episode k's goal is k mod 4):
    a frame is a success when the square is at the goal. Every view is a success for a quarter
    of the goals, so the view alone cannot tell."""
    rng = np.random.default_rng(seed)
    images, vectors, labels, ids = [], [], [], []
    for k in range(n_episodes):
        goal = k % 4
        for _ in range(24):
            image = rng.integers(0, 90, (SIZE, SIZE, 3)).astype(np.uint8)
            where = int(rng.integers(4))
            y, x = CORNERS[where]
            image[y:y + 8, x:x + 8] = 255
            images.append(image)
            vectors.append([np.cos(goal * np.pi / 2), np.sin(goal * np.pi / 2)])
            labels.append(where == goal)
            ids.append(k)
    return (ImageFrames(np.stack(images), np.asarray(vectors, np.float32)), np.asarray(labels),
            np.asarray(ids))


def test_a_goal_beside_the_view_is_learnt_where_the_view_alone_cannot_tell(
        one_torch_thread: None) -> None:
    x, y, ids = _goal_scenes(20, seed=0)
    test_x, test_y, test_ids = _goal_scenes(30, seed=1)
    config = ImageClassifierConfig(updates=200, cv_folds=3)
    both = fit_classifier(x, y, ids, GOAL_INPUT, config, trainer=train_image_classifier)
    frames = evaluate_classifier(both, test_x, test_y, test_ids)["frames"]
    assert frames["precision"] >= 0.9 and frames["recall"] >= 0.9, frames
    view = fit_classifier(x.images, y, ids, INPUT, config, trainer=train_image_classifier)
    frames = evaluate_classifier(view, test_x.images, test_y, test_ids)["frames"]
    assert not (frames["precision"] >= 0.9 and frames["recall"] >= 0.9), frames
    assert frames["precision"] < 0.5, frames  # a quarter of the views are successes


def test_a_file_with_vector_inputs_loads_back_exports_and_names_a_missing_key(
        tmp_path: Path, one_torch_thread: None) -> None:
    x, y, _ = _goal_scenes(4, seed=2)
    model = train_image_classifier(x, y, GOAL_INPUT, ImageClassifierConfig(
        updates=5, threshold=0.6, head_hidden=(8,)))
    np.testing.assert_allclose(model.vector_mean, x.vectors.mean(axis=0), rtol=1e-6)
    np.testing.assert_allclose(model.vector_std, np.maximum(x.vectors.std(axis=0), 1e-3),
                               rtol=1e-6)
    loaded = load_classifier(model.save(tmp_path / "g.safetensors"))
    assert loaded.vectors == [("observation", 0, 2)] and loaded.head_hidden == (8,)
    assert loaded.inputs == ["camera_color", "observation[0:2]"]
    np.testing.assert_array_equal(loaded.vector_mean, model.vector_mean)
    np.testing.assert_array_equal(loaded.vector_std, model.vector_std)
    np.testing.assert_array_equal(loaded.probability(x), model.probability(x))
    # a frame as the callers give it: the view and the observation vector
    frame = {"camera_color": x.images[3], "observation": np.r_[x.vectors[3], 7.0]}
    features = loaded.features(frame)
    assert isinstance(features, ImageFrames)
    assert loaded.probability(features) == pytest.approx(float(model.probability(x[3:4])[0]))
    with pytest.raises(ValueError, match="classifier input 'observation' is missing from the "
                                         "frame"):
        loaded.features({"camera_color": x.images[3]})
    with pytest.raises(ValueError, match="'observation' has 1 values"):
        loaded.features({"camera_color": x.images[3], "observation": np.zeros(1)})
    with pytest.raises(ValueError, match="not views alone"):
        loaded.probability(x.images)
    import torch
    exported = torch.export.load(str(loaded.export(tmp_path / "g.pt2"))).module()
    np.testing.assert_allclose(
        exported(torch.from_numpy(x.images[:5]), torch.from_numpy(x.vectors[:5])).numpy(),
        model.probability(x[:5]), rtol=1e-5, atol=1e-6)
    # a file of a view alone keeps the first layout (no vector metadata): it loads as before
    alone = train_image_classifier(x.images, y, INPUT, ImageClassifierConfig(updates=1))
    from safetensors import safe_open
    with safe_open(str(alone.save(tmp_path / "a.safetensors")), "np") as handle:
        assert "vectors" not in handle.metadata() and "head.weight" in set(handle.keys())
    assert load_classifier(tmp_path / "a.safetensors").vectors == []


def test_a_frames_vector_is_its_next_observation_beside_the_view_of_the_next_row(
        tmp_path: Path) -> None:
    store = view_store(tmp_path / "t.zarr", [4, 3], [[1], [2]])
    labels = FrameLabels.from_reward(store)
    frames, flags, ids, left_out = labelled_image_frames(store, labels, "camera_color",
                                                         [("observation", 0, 1)])
    # frame t: next_observation[t] (10 k + t + 1) and the view of row t + 1 (the same number);
    # each episode's last step has no view and is left out of both
    assert frames.images[:, 0, 0, 0].tolist() == [1, 2, 3, 11, 12] and left_out == 2
    assert frames.vectors[:, 0].tolist() == [1, 2, 3, 11, 12]
    assert flags.tolist() == [False, True, False, False, False]


class _Seen:
    """A success model that keeps every frame it is given (and never fires)."""

    def __init__(self) -> None:
        self.frames: list = []

    def reset(self) -> None:
        self.frames.clear()

    def step(self, frame) -> bool:
        self.frames.append(frame)
        return False


def test_the_episode_machine_gives_the_detector_the_view_after_each_action() -> None:
    task = ValveTask(load_robot("dclaw"), {"observation": "pixels", "episode_length_steps": 6})
    robot = TwinRobot(task)
    seen = _Seen()
    machine = EpisodeMachine(task, EpisodeConfig(seed=3), success_model=seen)
    views: list[np.ndarray] = []

    def view(now_s: float) -> ViewFrame:  # each tick's view tells its tick
        views.append(np.full(task.image.shape, len(views), np.uint8))
        return ViewFrame(now_s, views[-1], None)

    try:
        finished, _, _ = run_episode(machine, robot, lambda obs: np.zeros(9, np.float32),
                                     max_ticks=100, frame=view)
    finally:
        robot.twin.close()
    assert finished is not None and machine.phase is Phase.IDLE
    steps = finished.steps
    assert len(seen.frames) == finished.length == 6
    for t, frame in enumerate(seen.frames):
        assert set(frame) == {"observation", "camera_color"}
        np.testing.assert_array_equal(frame["observation"], steps["next_observation"][t])
        # the view after action t: the one step t + 1 acted on (never step t's own)
        after = steps["camera_color"][t + 1] if t + 1 < finished.length else views[-1]
        np.testing.assert_array_equal(frame["camera_color"], after)
        assert not np.array_equal(frame["camera_color"], steps["camera_color"][t])


def test_the_in_process_episode_gives_the_detector_the_view_after_each_action() -> None:
    """``pipeline.hil.run_online_episode`` on the valve's pixel twin: frame t is
    {observation: next_observation[t], camera_color: the view the env returned after action t}
    (the view step t + 1 acts on), never the view action t was chosen on."""
    from robot_rl.pipeline.hil import run_online_episode
    from robot_rl.pipeline.rollout import GatedEnv
    from robot_rl.run_config import load_pipeline_config

    config = load_pipeline_config(
        "valve", ["env_kwargs={config: {observation: pixels, episode_length_steps: 6}}"],
        "bench_tiny")
    env = GatedEnv(config)
    views: list[np.ndarray] = []  # every view the env returns, in order: reset's, then each step's
    step = env.env.step

    def recording_step(action):
        out = step(action)
        views.append(np.array(out[0]["rgb"]))
        return out

    env.env.step = recording_step
    seen = _Seen()
    try:
        episode = run_online_episode(env, lambda obs: np.full(9, 0.5, np.float32), seed=3,
                                     success_model=seen)
    finally:
        env.close()
    steps = episode.steps
    assert len(seen.frames) == episode.length == len(views) == 6
    for t, frame in enumerate(seen.frames):
        assert set(frame) == {"observation", "camera_color"}
        np.testing.assert_array_equal(frame["observation"], steps["next_observation"][t])
        np.testing.assert_array_equal(frame["camera_color"], views[t])
        if t + 1 < episode.length:  # the view step t + 1 acted on, as the episode keeps it
            np.testing.assert_array_equal(frame["camera_color"], steps["camera_color"][t + 1])
        assert not np.array_equal(frame["camera_color"], steps["camera_color"][t])


def test_an_image_classifier_is_refused_for_a_task_without_a_view(
        tmp_path: Path, one_torch_thread: None) -> None:
    from robot_rl.pipeline.hil import configured_detector
    from robot_rl.run_config import load_pipeline_config

    x, y, _ = _scenes(2, seed=4)
    path = train_image_classifier(x, y, INPUT, ImageClassifierConfig(updates=1)).save(
        tmp_path / "img.safetensors")
    config = load_pipeline_config("valve", ["reward.source=classifier",
                                            f"reward.classifier={path}"], "bench_tiny")
    with pytest.raises(ValueError, match="img.safetensors: an image success classifier .* the "
                                         "task has no camera view"):
        configured_detector(config, task_has_view=False)
    detector = configured_detector(config, task_has_view=True)
    assert isinstance(detector, SuccessDetector)
    assert isinstance(detector.step({"camera_color": x[0]}), bool)
