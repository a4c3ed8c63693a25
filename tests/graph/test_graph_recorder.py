"""The recorder node as a process over real DDS: episodes from EPISODE events, sampled topics,
and crash safety (SIGKILL mid-episode leaves earlier episodes intact and the store openable)."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import numpy as np
from graph_probe import read_line_containing
from helpers.backends import both_backends
from helpers.processes import python_cmd

from robot_rl.agent.events import encode_event
from robot_rl.agent.tasks import make_task
from robot_rl.data import EpisodeStore
from robot_rl.data.transition_arrays import action_mode_extra
from robot_rl.nodes import topics
from robot_rl.robot_config import load_robot, robot_digest
from robot_rl.ros import messages as m
from robot_rl.ros.qos import QOS_DEFAULT, QOS_SENSOR_DATA
from robot_rl.ros.runtime import make_node

RECORDER = "import sys; from robot_rl.nodes.recorder import main; sys.exit(main())"
NAMES = list(load_robot("dclaw").joint_names)
HOME = np.tile([0.0, -0.27, -0.97], 3)


class FakeRobot:
    """The test's side of the graph: a robot's topics, with known values."""

    def __init__(self) -> None:
        self.node = make_node("fake_robot", "/hand", argv=[])
        self.joints = self.node.create_publisher(m.JointState, topics.JOINT_STATES,
                                                 QOS_SENSOR_DATA)
        self.object = self.node.create_publisher(m.JointState, topics.OBJECT_STATE,
                                                 QOS_SENSOR_DATA)
        self.command = self.node.create_publisher(m.JointState, topics.COMMAND, QOS_DEFAULT)
        self.episode = self.node.create_publisher(m.String, topics.EPISODE, QOS_DEFAULT)
        self.tick = 0

    def stream(self, seconds: float) -> None:
        """Joint states in reversed name order (the recorder must reorder), 50 Hz."""
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.tick += 1
            position = HOME + 0.001 * self.tick
            self.joints.publish(m.joint_state(NAMES[::-1], position[::-1], np.zeros(9),
                                              np.full(9, 0.1)))
            self.object.publish(m.joint_state(["valve"], [0.01 * self.tick], [0.2]))
            self.command.publish(m.joint_state(NAMES, position + 0.05))
            self.node.spin_once(0.02)

    def event(self, name: str, episode: int, **fields: Any) -> None:
        self.episode.publish(m.String(data=encode_event(name, episode, **fields)))


def wait_for_episodes(path: Path, n: int, robot: FakeRobot, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        if (path / ".zgroup").exists() and EpisodeStore.open(path).n_episodes >= n:
            return
        assert time.monotonic() < deadline, f"{path}: fewer than {n} episodes committed"
        robot.stream(0.1)


@both_backends
def test_recorder_commits_discards_and_survives_sigkill(ros_domain: int, spawn: Any,
                                                        tmp_path: Path) -> None:
    path = tmp_path / "rec.zarr"
    recorder = spawn(python_cmd(RECORDER, "--ros-args", "-r", "__ns:=/hand",
                                "-p", f"store:={path}", "-p", "operator:=alice"),
                     stderr=subprocess.PIPE, text=True)
    assert recorder.stderr is not None
    read_line_containing(recorder.stderr, "recording /hand/joint_states")
    os.set_blocking(recorder.stderr.fileno(), False)
    robot = FakeRobot()
    try:
        deadline = time.monotonic() + 15
        while robot.episode.matched_count() < 1 or robot.command.matched_count() < 1:
            assert time.monotonic() < deadline, "recorder never subscribed"
            robot.stream(0.05)
        robot.stream(0.3)
        robot.event("reset", 0, goal=1.0)
        robot.event("start", 0, goal=1.0, seed=11)
        robot.stream(0.8)
        robot.event("end", 0, success=True)
        robot.event("start", 1, goal=0.5)
        robot.stream(0.5)
        robot.event("discard", 1)
        robot.event("start", 2, goal=-1.0)
        robot.stream(0.8)
        robot.event("end", 2, success=False)
        wait_for_episodes(path, 2, robot)
        robot.event("start", 3, goal=0.0)
        robot.stream(1.5)  # rows of episode 3 reach the disk (flushes every 10 steps)
        os.killpg(recorder.pid, signal.SIGKILL)
        recorder.wait(timeout=5)
    finally:
        robot.node.destroy()

    store = EpisodeStore.open(path, "a")  # recovers the torn episode 3
    assert store.recovery is not None and store.recovery.dropped_steps > 0
    assert store.n_episodes == 2
    infos = [store.episode_info(i) for i in range(2)]
    assert [(i["episode"], i["success"], i["goal"]) for i in infos] == [(0, True, 1.0),
                                                                        (2, False, -1.0)]
    assert infos[0]["operator"] == "alice" and infos[0]["seed"] == 11
    assert infos[0]["calibration_digest"] == robot_digest("dclaw")
    assert {"software_version", "robot", "task"} <= set(infos[0])
    for index in range(2):
        steps = store.episode(index)
        assert 5 <= len(steps["stamp_s"]) <= 25  # about 0.8 s at 20 Hz
        offset = steps["joint_position_rad"] - HOME  # calibration order restored
        np.testing.assert_allclose(offset - offset[:, :1], 0.0, atol=1e-6)
        np.testing.assert_allclose(steps["command_rad"] - steps["joint_position_rad"], 0.05,
                                   atol=0.03)
        assert np.all(np.diff(steps["stamp_s"]) > 0)
        assert steps["observation"].shape[1] == 49 and steps["action"].shape[1] == 9
        assert set(np.unique(steps["reward"])) <= {-1.0, 0.0}


def test_recorder_refuses_a_store_of_another_robot_and_leaves_it_as_it_was(
        ros_domain: int, tmp_path: Path) -> None:
    path = tmp_path / "arm.zarr"
    valve_mode = action_mode_extra(make_task("valve", load_robot("dclaw")).actions.mode)
    EpisodeStore.create(path, robot="arm6", task="drawer", calibration_digest=robot_digest("arm6"),
                        units={"stamp_s": "s"}, extra=valve_mode).close()
    before = sorted(p.relative_to(path) for p in path.rglob("*"))
    done = subprocess.run(python_cmd(RECORDER, "--ros-args", "-r", "__ns:=/hand",
                                     "-p", f"store:={path}"),
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    errors = [line for line in done.stderr.splitlines() if "DatasetError" in line]
    assert errors, done.stderr
    assert str(path) in errors[0] and "robot 'arm6' (this one: 'dclaw')" in errors[0]
    assert "appending would mix two datasets" in errors[0]
    assert sorted(p.relative_to(path) for p in path.rglob("*")) == before
    assert EpisodeStore.open(path).attrs["robot"] == "arm6"
