"""A valve policy from pixels on the graph, every node a process over real DDS: the twin publishes
the task's view stream, the learner pretrains a PixelAgent, acts on [proprioception, view] and
stores each step's view; the actor acts from a pixel checkpoint; without a camera nothing moves
and the reason is named."""

from __future__ import annotations

import csv
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from graph_probe import Probe, node_cmd, params, stop
from helpers.pixels import PixelRun, make_pixel_run
from test_graph_learner import Lines

from robot_rl.agent.episode import success_frame
from robot_rl.agent.events import decode_event
from robot_rl.agent.weights import snapshot_from_bytes
from robot_rl.data import EpisodeStore
from robot_rl.learning.checkpoint import load_checkpoint
from robot_rl.learning.pixel_agent import PixelPolicySnapshot, is_pixel_checkpoint
from robot_rl.nodes import topics
from robot_rl.nodes.topics import robot_topics
from robot_rl.reward import SuccessDetector, load_classifier
from robot_rl.ros import messages as m
from robot_rl.ros.qos import QOS_DEFAULT, QOS_LATCHED, QOS_SENSOR_DATA

VIEW_TOPIC = topics.camera_topic(topics.CAMERA, topics.VIEW_COLOR)
TIMEOUT_S = 150.0  # process starts, a pretrain and a 60-step episode on a loaded 2-core machine


@pytest.fixture(scope="module")
def pixel_run(tmp_path_factory: pytest.TempPathFactory) -> PixelRun:
    return make_pixel_run(tmp_path_factory.mktemp("pixels"))


def start_twin_with_view(spawn: Any, view: bool = True) -> list[subprocess.Popen]:
    """The twin (with the valve's view stream, or no camera at all) and the safety node."""
    camera = {"view_task": "valve", "view_rate_hz": 30.0} if view else {}
    twin = spawn(node_cmd("robot_rl.sim_twin.node", "-r", "__ns:=/hand",
                          *params(publish_rate_hz=50.0, **camera)), stderr=subprocess.DEVNULL)
    safety = spawn(node_cmd("robot_rl.nodes.safety", "-r", "__ns:=/hand"),
                   stderr=subprocess.DEVNULL)
    return [twin, safety]


def test_the_learner_learns_and_acts_from_the_twins_view(ros_domain: int, spawn: Any,
                                                        tmp_path: Path,
                                                        pixel_run: PixelRun) -> None:
    station = start_twin_with_view(spawn)
    run_dir = tmp_path / "run"
    probe = Probe("/")
    views = probe.listen("view", m.Image, VIEW_TOPIC, QOS_SENSOR_DATA)
    weights = probe.listen("policy", m.UInt8MultiArray, topics.POLICY, QOS_LATCHED)
    ends: list[dict] = []
    probe.node.create_subscription(
        m.String, robot_topics("/hand").episode,
        lambda msg: ends.append(e) if (e := decode_event(msg.data))["event"] == "end" else None,
        QOS_DEFAULT)
    learner = spawn(node_cmd("robot_rl.nodes.learner", *params(
        config=pixel_run.config, pretrain_dataset=pixel_run.dataset, pretrain_updates=20,
        run_dir=run_dir, reset_timeout_s=2.0, log_every_episodes=1, trainer_threads=1)),
        stderr=subprocess.PIPE, text=True)
    lines = Lines(learner)
    try:
        lines.wait_for(r"camera /camera/view/color/image_raw \(64x64 view\)", TIMEOUT_S)
        probe.wait_until(lambda: len(ends) >= 1, TIMEOUT_S,
                         what=f"a finished episode (learner said: {lines.seen[-3:]})")
    finally:
        probe.destroy()
    assert stop(learner, 30) == 0
    lines.wait_for(r"checkpoint at update \d+", 5)
    for proc in station:
        assert stop(proc) == 0
    store = EpisodeStore.open(run_dir / "online.zarr")
    dataset = EpisodeStore.open(pixel_run.dataset)
    assert store.attrs["extra"]["view"] == dataset.attrs["extra"]["view"]
    steps = store.episode(0, ["observation", "camera_color"])
    frames = steps["camera_color"]
    assert frames.shape == (len(steps["observation"]), 64, 64, 3) and frames.dtype == np.uint8
    assert steps["observation"].shape[1] == 29  # the pixel task's vector: no valve in it
    # every stored view is one the twin published on the view stream, byte for byte
    published = {m.image_to_numpy(msg).tobytes() for msg in views}
    assert all(frame.tobytes() in published for frame in frames)
    assert len({frame.tobytes() for frame in frames}) > 1
    assert is_pixel_checkpoint(load_checkpoint(run_dir / "learner.pt"))
    snapshot, _ = snapshot_from_bytes(weights[-1].data)  # POLICY carries the encoder
    assert isinstance(snapshot, PixelPolicySnapshot) and snapshot.obs_dim == 29


def test_with_an_image_classifier_the_learner_needs_no_object_state(
        ros_domain: int, spawn: Any, tmp_path: Path, pixel_run: PixelRun) -> None:
    """A cell with no sensor on the object: the learner's object-state topic has no publisher,
    and a pixel task with an image success classifier still learns and acts: each stored step's
    reward is the classifier's on the view after it, and no true success is claimed."""
    labels, model = tmp_path / "labels.yaml", tmp_path / "success.safetensors"
    cli = [str(Path(sys.executable).parent / "robot-rl"), "reward"]
    # any labels do: the test is what the learner does with the classifier, not its accuracy
    subprocess.run([*cli, "label", str(pixel_run.dataset), "-o", str(labels), "--success",
                    "0:3-6", "--failure", "1"], check=True, stdout=subprocess.DEVNULL)
    subprocess.run([*cli, "train", str(pixel_run.dataset), "--labels", str(labels), "-o",
                    str(model), "--input", "camera_color", "--hidden", "8", "--updates", "20"],
                   check=True, stdout=subprocess.DEVNULL)
    station = start_twin_with_view(spawn)
    run_dir = tmp_path / "run"
    learner = spawn(node_cmd("robot_rl.nodes.learner", *params(
        config=pixel_run.config, pretrain_dataset=pixel_run.dataset, pretrain_updates=20,
        run_dir=run_dir, reset_timeout_s=2.0, log_every_episodes=1, trainer_threads=1,
        reward_classifier=model, object_topics=["/nowhere/object/state"])),
        stderr=subprocess.PIPE, text=True)
    lines = Lines(learner)
    lines.wait_for(r"/nowhere/object/state \(optional\)", TIMEOUT_S)
    lines.wait_for(r"episode", TIMEOUT_S)
    store_path = run_dir / "online.zarr"
    deadline = time.monotonic() + TIMEOUT_S
    while not (store_path.exists() and EpisodeStore.open(store_path).n_episodes >= 1):
        assert time.monotonic() < deadline, f"no online episode stored: {lines.seen[-3:]}"
        time.sleep(0.5)
    assert stop(learner, 30) == 0
    for proc in station:
        assert stop(proc) == 0
    store = EpisodeStore.open(store_path)
    detector = SuccessDetector(load_classifier(model))
    steps = store.episode(0, ["next_observation", "reward", "camera_color"])
    detector.reset()
    said = [detector.step(success_frame(obs, view)) for obs, view in
            zip(steps["next_observation"][:-1], steps["camera_color"][1:])]
    np.testing.assert_array_equal(steps["reward"][:-1], np.where(said, 0.0, -1.0))
    assert "true_success" not in store.episode_info(0)
    with open(run_dir / "episodes.csv", newline="") as f:
        assert next(csv.DictReader(f))["true_success"] == ""


def test_the_recorder_stores_a_pixel_dataset_that_pretrains(ros_domain: int, spawn: Any,
                                                            tmp_path: Path,
                                                            pixel_run: PixelRun) -> None:
    """Demonstrations recorded on the graph for a pixel policy: the recorder stores each row's
    view (one the twin published, byte for byte), the task's vector and the next one, and the
    store pretrains a pixel agent as the twin's in-process dataset does."""
    from robot_rl.pipeline import stages
    from robot_rl.run_config import load_pipeline_config

    station = start_twin_with_view(spawn)
    probe = Probe("/")
    views = probe.listen("view", m.Image, VIEW_TOPIC, QOS_SENSOR_DATA)
    store_path = tmp_path / "demos.zarr"
    recorder = spawn(node_cmd("robot_rl.nodes.recorder", "-r", "__ns:=/hand", *params(
        store=store_path, observation="pixels")), stderr=subprocess.PIPE, text=True)
    Lines(recorder).wait_for(r"recording the view /camera/view/color/image_raw \(64x64\)",
                             TIMEOUT_S)
    actor = spawn(node_cmd("robot_rl.nodes.actor", *params(
        checkpoint=pixel_run.checkpoint, observation="pixels", max_episodes=1,
        reset_timeout_s=2.0)), stderr=subprocess.PIPE, text=True)
    try:  # spinning all along: the probe sees every view the recorder could have stored
        probe.wait_until(lambda: actor.poll() is not None, TIMEOUT_S,
                         what="the actor's one episode")
        probe.wait_until(lambda: store_path.exists() and
                         EpisodeStore.open(store_path).n_episodes >= 1, 30,
                         what="the recorded episode committed")
    finally:
        probe.destroy()
    assert actor.returncode == 0 and stop(recorder) == 0
    for proc in station:
        assert stop(proc) == 0
    store = EpisodeStore.open(store_path)
    reference = EpisodeStore.open(pixel_run.dataset)
    assert store.attrs["extra"]["view"] == reference.attrs["extra"]["view"]
    steps = store.episode(0, ["observation", "next_observation", "state_observation",
                              "camera_color"])
    n = len(steps["observation"])
    assert n > 1 and steps["camera_color"].shape == (n, 64, 64, 3)
    assert steps["observation"].shape[1] == 29  # the pixel task's vector: no valve in it
    assert steps["state_observation"].shape[1] == reference.episode(
        0, ["state_observation"])["state_observation"].shape[1]
    np.testing.assert_array_equal(steps["next_observation"][:-1], steps["observation"][1:])
    published = {m.image_to_numpy(msg).tobytes() for msg in views}
    assert all(frame.tobytes() in published for frame in steps["camera_color"])
    config = load_pipeline_config(str(pixel_run.config))
    checkpoint = stages.pretrain(config, store_path, tmp_path / "pretrained", progress=False)
    assert is_pixel_checkpoint(load_checkpoint(checkpoint))


def test_the_actor_acts_from_a_pixel_checkpoint(ros_domain: int, spawn: Any, tmp_path: Path,
                                               pixel_run: PixelRun) -> None:
    station = start_twin_with_view(spawn)
    log = tmp_path / "episodes.csv"
    actor = spawn(node_cmd("robot_rl.nodes.actor", *params(
        checkpoint=pixel_run.checkpoint, observation="pixels", max_episodes=1, episode_log=log,
        reset_timeout_s=2.0)), stderr=subprocess.PIPE, text=True)
    lines = Lines(actor)
    lines.wait_for(r"acting from pixels on 1 torch thread", TIMEOUT_S)  # the encoder's
    lines.wait_for(r"1 episodes done \(max_episodes 1\)", TIMEOUT_S)     # wake-ups cost p99
    assert actor.wait(30) == 0
    for proc in station:
        assert stop(proc) == 0
    with open(log, newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 1 and int(rows[0]["steps"]) > 1


def test_without_a_camera_the_actor_sends_nothing_and_says_why(ros_domain: int, spawn: Any,
                                                              pixel_run: PixelRun) -> None:
    station = start_twin_with_view(spawn, view=False)
    probe = Probe("/")
    raw = probe.listen("raw", m.JointState, robot_topics("/hand").command_raw, QOS_DEFAULT)
    actor = spawn(node_cmd("robot_rl.nodes.actor", *params(
        checkpoint=pixel_run.checkpoint, observation="pixels", reset_timeout_s=2.0)),
        stderr=subprocess.PIPE, text=True)
    lines = Lines(actor)
    try:
        lines.wait_for(r"/hand: episode 0 waits to start: no frame: no camera frame received yet",
                       TIMEOUT_S)
        probe.spin_for(0.5)  # anything already sent would have arrived by now
    finally:
        probe.destroy()
    assert raw == []
    assert stop(actor) == 0
    for proc in station:
        assert stop(proc) == 0


def test_a_pixel_checkpoint_is_refused_for_a_state_task(ros_domain: int, spawn: Any,
                                                       pixel_run: PixelRun) -> None:
    actor = spawn(node_cmd("robot_rl.nodes.actor", *params(
        checkpoint=pixel_run.checkpoint, observation="state")),
        stderr=subprocess.PIPE, text=True)
    _, err = actor.communicate(timeout=60)
    assert actor.returncode != 0
    assert "a policy that acts on the camera view; task valve observes state" in err
