"""A human in the loop on the graph, all separate processes over real DDS: the twin, the safety node,
the learner, and the teleop node in its intervene role (a gamepad's Joy from the probe). The
operator's takeover reaches the robot through the learner and the supervisor and is recorded;
a success classifier gives the learner's reward."""

from __future__ import annotations

import csv
import os
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from graph_probe import Probe, node_cmd, params, stop
from test_graph_learner import REPO, Lines, quick_dataset  # noqa: F401 - the fixture by name
from test_graph_learner_twin import run_graph, start_station

from robot_rl.agent.events import decode_event
from robot_rl.data import EpisodeStore
from robot_rl.nodes import topics
from robot_rl.nodes.topics import robot_topics
from robot_rl.reward import SuccessDetector, load_classifier
from robot_rl.ros import messages as m
from robot_rl.ros.qos import QOS_DEFAULT, QOS_SENSOR_DATA

pytestmark = pytest.mark.graph
AXES_RELEASED = [0.0, 0.0, 1.0, 0.0, 0.0, 1.0]  # sticks centred, both triggers up (+1)


def joy(pulled: bool, stick: float = 0.0) -> m.Joy:
    """The gamepad: the right trigger (axis 5) held is the takeover; axis 4 moves a joint."""
    return m.Joy(axes=AXES_RELEASED[:4] + [stick, -1.0 if pulled else 1.0], buttons=[0] * 9)


def metric_rows(run_dir: Path, name: str) -> list[float]:
    with open(run_dir / "learner" / "metrics.csv", newline="") as f:  # TensorBoard's twin
        return [float(r["value"]) for r in csv.DictReader(f) if r["name"] == name]


def test_an_operator_takes_over_from_the_learner_through_the_supervisor(
        ros_domain: int, spawn: Any, tmp_path: Path, quick_dataset: Path) -> None:  # noqa: F811
    names = robot_topics("/hand")
    station = start_station(spawn, "/hand")
    run_dir = tmp_path / "run"
    learner = spawn(node_cmd("robot_rl.nodes.learner", *params(
        profile="quick", pretrain_dataset=quick_dataset, pretrain_updates=50, run_dir=run_dir,
        reset_timeout_s=2.0, log_every_episodes=1)), stderr=subprocess.PIPE, text=True)
    lines = Lines(learner)
    master, slave = os.openpty()  # the teleop node's terminal (a gamepad takes over by trigger)
    teleop = spawn(node_cmd("robot_rl.nodes.teleop", "-r", "__ns:=/hand", *params(
        device="gamepad", role="intervene", control_rate_hz=20.0, joint_speed_rad_s=0.5)),
        stdin=slave, stderr=subprocess.DEVNULL)
    os.close(slave)
    probe = Probe("/")
    try:
        pad = probe.node.create_publisher(m.Joy, topics.TELEOP_JOY, QOS_SENSOR_DATA)
        raw = probe.listen("raw", m.JointState, names.command_raw, QOS_DEFAULT)
        operator = probe.listen("operator", m.JointState, names.command_operator, QOS_DEFAULT)
        gated = probe.listen("gated", m.JointState, names.command, QOS_DEFAULT)
        events: list[dict] = []
        probe.node.create_subscription(m.String, names.episode,
                                       lambda msg: events.append(decode_event(msg.data)),
                                       QOS_DEFAULT)

        def ends() -> int:
            return sum(e["event"] == "end" for e in events)

        probe.wait_until(lambda: len(raw) >= 5, 120, lambda: pad.publish(joy(False)),
                         what=f"the learner acting (it said: {lines.seen[-3:]})")
        raw_before = len(raw)
        # take over for a stretch of one episode, moving f0_base; then release
        probe.wait_until(lambda: len(operator) >= 15, 20, lambda: pad.publish(joy(True, 1.0)),
                         what="the operator's targets")
        taken = len(raw)
        probe.wait_until(lambda: ends() >= 2, 120, lambda: pad.publish(joy(False)),
                         what="two finished episodes after the handback")
        assert gated  # the robot was driven through the supervisor
    finally:
        probe.destroy()
        os.close(master)
    assert stop(teleop) == 0
    assert stop(learner, 30) == 0
    for proc in station:
        assert stop(proc) == 0

    # the learner forwarded the operator's targets on COMMAND_RAW (one step each, the rule's)
    sent = np.array([msg.position for msg in raw[raw_before:taken + 5]])
    wanted = np.array([msg.position for msg in operator])
    forwarded = [np.min(np.abs(sent - w).max(axis=1)) < 1e-5 for w in wanted]
    assert sum(forwarded) >= 5, "operator targets never left the learner on COMMAND_RAW"

    store = EpisodeStore.open(run_dir / "online.zarr")
    assert "intervention" in store.keys
    flags = [store.episode(i, ["intervention"])["intervention"] for i in range(store.n_episodes)]
    infos = [store.episode_info(i) for i in range(store.n_episodes)]
    taken_over = [i for i, f in enumerate(flags) if f.any()]
    assert taken_over, "no stored step records the operator"
    assert any(not f.all() for f in flags)  # the policy acted too (before and after)
    assert all(infos[i]["takeovers"] >= 1 for i in taken_over)
    with open(run_dir / "episodes.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["intervention_steps"]) for r in rows[:len(flags)]] == \
        [int(f.sum()) for f in flags]
    rates = metric_rows(run_dir, "intervention_rate")
    assert rates[:len(flags)] == pytest.approx([float(f.mean()) for f in flags])
    assert metric_rows(run_dir, "intervention_rate_mean")


def test_the_learner_takes_reward_and_success_from_a_classifier(
        ros_domain: int, spawn: Any, tmp_path: Path, quick_dataset: Path) -> None:  # noqa: F811
    """A classifier trained with the CLI from the dataset's own reward: every stored online step's
    reward and termination are what the detector says on its observation, and the task's own
    success is logged beside it (true_success)."""
    labels, model = tmp_path / "labels.yaml", tmp_path / "success.safetensors"
    cli = [str(Path(os.sys.executable).parent / "robot-rl"), "reward"]
    subprocess.run([*cli, "label", str(quick_dataset), "-o", str(labels), "--from-reward"],
                   check=True, cwd=REPO, stdout=subprocess.DEVNULL)
    subprocess.run([*cli, "train", str(quick_dataset), "--labels", str(labels), "-o",
                    str(model), "--input", "observation.error_cos_sin", "--hidden", "16",
                    "--updates", "300"], check=True, cwd=REPO, stdout=subprocess.DEVNULL)
    _, run_dir = run_graph(spawn, tmp_path, quick_dataset, ["/hand"], 2, 120,
                           reward_classifier=model)
    store = EpisodeStore.open(run_dir / "online.zarr")
    detector = SuccessDetector(load_classifier(model))
    with open(run_dir / "episodes.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    for index in range(store.n_episodes):
        steps = store.episode(index, ["next_observation", "reward", "terminated"])
        detector.reset()
        said = np.array([detector.step(obs) for obs in steps["next_observation"]])
        np.testing.assert_array_equal(steps["reward"], np.where(said, 0.0, -1.0))
        np.testing.assert_array_equal(steps["terminated"], said)  # the valve ends at success
        info = store.episode_info(index)
        assert info["success"] == bool(said.any()) and isinstance(info["true_success"], bool)
        assert rows[index]["true_success"] == str(int(info["true_success"]))
    assert len(metric_rows(run_dir, "reward_false_success")) == store.n_episodes
