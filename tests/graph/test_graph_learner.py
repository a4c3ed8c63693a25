"""The learner and actor nodes as processes over real DDS: resume after SIGKILL, weights over
POLICY, acting only with weights. (With the twin and the safety node: test_graph_learner_twin.)"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import queue
import re
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from graph_probe import Probe, node_cmd, params, stop
from helpers.backends import both_backends

from robot_rl.agent.events import decode_event, encode_event
from robot_rl.agent.sites import SiteKinematics
from robot_rl.agent.weights import snapshot_to_bytes
from robot_rl.config import ConfigError, load_config
from robot_rl.learning import AWAC, load_checkpoint
from robot_rl.learning.background import PolicySnapshot
from robot_rl.nodes import topics
from robot_rl.nodes.topics import robot_topics
from robot_rl.nodes.trainer_link import TrainerFailed
from robot_rl.robot_config import load_robot
from robot_rl.ros import messages as m
from robot_rl.ros.qos import QOS_DEFAULT, QOS_LATCHED, QOS_SENSOR_DATA
from robot_rl.run_config import PipelineConfig, load_pipeline_config
from robot_rl.tasks.base import TaskState
from robot_rl.tasks.valve import ValveTask

REPO = Path(__file__).resolve().parents[2]
NAMES = list(load_robot("dclaw").joint_names)


class Lines:
    """A process's stderr, line by line, readable with a timeout."""

    def __init__(self, proc: subprocess.Popen) -> None:
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        assert proc.stderr is not None
        threading.Thread(target=self._pump, args=(proc.stderr,), daemon=True).start()

    def _pump(self, stream: Any) -> None:
        for line in stream:
            self.lines.put(line)

    def wait_for(self, pattern: str, timeout_s: float) -> re.Match[str]:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                line = self.lines.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"no line matching {pattern!r} in {timeout_s} s; "
                                     f"last lines: {self.seen[-8:]}") from None
            self.seen.append(line)
            found = re.search(pattern, line)
            if found:
                return found


@pytest.fixture(scope="session")
def quick_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny demonstration dataset made by the CLI, as a user would."""
    path = tmp_path_factory.mktemp("data") / "quick.zarr"
    subprocess.run(["robot-rl", "record", "--profile", "quick", "--quiet", "--out", str(path),
                    "--set", "dataset.noisy_trajectories=3"], check=True, cwd=REPO,
                   env={**os.environ, "PATH": f"{Path(os.sys.executable).parent}:"
                        f"{os.environ.get('PATH', '')}"})
    return path


def start_learner(spawn: Any, *ros_args: str, **values: Any) -> tuple[subprocess.Popen, Lines]:
    proc = spawn(node_cmd("robot_rl.nodes.learner", *ros_args,
                          *params(profile="quick", **values)),
                 stderr=subprocess.PIPE, text=True)
    return proc, Lines(proc)


def test_learner_resumes_after_sigkill(ros_domain: int, spawn: Any, tmp_path: Path,
                                       quick_dataset: Path) -> None:
    run_dir = tmp_path / "run"
    args = {"pretrain_dataset": quick_dataset, "pretrain_updates": 400, "run_dir": run_dir,
            "checkpoint_every_updates": 25}
    learner, lines = start_learner(spawn, **args)
    lines.wait_for(r"pretraining: 400 offline updates to go", 60)
    checkpoint = run_dir / "learner.pt"
    deadline = time.monotonic() + 60
    while not (checkpoint.exists() and load_checkpoint(checkpoint)["counters"]
               ["offline_updates"] >= 25):
        assert learner.poll() is None and time.monotonic() < deadline, lines.seen[-5:]
        time.sleep(0.05)
    os.killpg(learner.pid, signal.SIGKILL)
    learner.wait(timeout=5)
    saved = load_checkpoint(checkpoint)["counters"]["offline_updates"]
    assert saved < 400  # killed mid-pretraining

    learner, lines = start_learner(spawn, **args)
    resumed = int(lines.wait_for(r"resumed .*learner\.pt at update (\d+)", 60).group(1))
    assert resumed == saved
    lines.wait_for(rf"pretraining: {400 - saved} offline updates to go \(of 400\)", 10)
    lines.wait_for(r"pretraining: 400/400 updates", 60)
    assert stop(learner, 30) == 0
    state = load_checkpoint(checkpoint)
    assert state["counters"]["offline_updates"] == 400
    assert state["agent"]["num_updates"] >= 400 and state["counters"]["online_started"]


def children_of(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` (from /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:  # field 4, after "(comm)"
                found.append(int(entry.name))
    return found


def training_process(learner: subprocess.Popen, timeout_s: float = 30.0) -> int:
    """The pid of the learner's training process (python -m robot_rl.nodes.learner_training)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for pid in children_of(learner.pid):
            with contextlib.suppress(OSError):
                if b"robot_rl.nodes.learner_training" in Path(f"/proc/{pid}/cmdline").read_bytes():
                    return pid
        time.sleep(0.05)
    raise AssertionError(f"learner {learner.pid} started no training process in {timeout_s} s")


def gone(pid: int) -> bool:
    """Not running (a zombie, exited but not yet reaped by its parent, counts as gone)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads processes from /proc")
def test_training_process_dies_with_the_node_and_its_death_ends_the_node(
        ros_domain: int, spawn: Any, tmp_path: Path, quick_dataset: Path) -> None:
    """Training runs in a process of its own: it must not outlive a killed node (it would write
    to the run a restarted node resumes), and a node whose trainer died must say so and exit."""
    args = {"pretrain_dataset": quick_dataset, "pretrain_updates": 100_000,
            "run_dir": tmp_path / "run"}
    learner, lines = start_learner(spawn, **args)
    trainer = training_process(learner)
    lines.wait_for(r"pretraining: 100000 offline updates to go", 60)
    # trainer_nice (default 10): training yields the CPU to the control loop's processes
    own = os.getpriority(os.PRIO_PROCESS, 0)
    assert os.getpriority(os.PRIO_PROCESS, trainer) == min(19, own + 10)
    os.kill(learner.pid, signal.SIGKILL)  # the node alone, not its process group
    learner.wait(timeout=5)
    deadline = time.monotonic() + 10
    while not gone(trainer):
        assert time.monotonic() < deadline, "the training process outlived its node"
        time.sleep(0.05)

    learner, lines = start_learner(spawn, **args)
    trainer = training_process(learner)
    lines.wait_for(r"pretraining: \d+ offline updates to go", 60)
    os.kill(trainer, signal.SIGKILL)
    assert learner.wait(timeout=15) != 0
    lines.wait_for(r"trainer \(process\) ended without being asked \(exit code -9\)", 5)


class FakeRobot(Probe):
    """Publishes a constant joint and object state; answers resets like the twin node."""

    def __init__(self, namespace: str = "/hand") -> None:
        super().__init__(namespace)
        names = robot_topics(namespace)
        self.joints = self.node.create_publisher(m.JointState, names.joint_states,
                                                 QOS_SENSOR_DATA)
        self.object = self.node.create_publisher(m.JointState, names.object_state,
                                                 QOS_SENSOR_DATA)
        self.status = self.node.create_publisher(m.String, names.episode_status, QOS_DEFAULT)
        self.commands = self.listen("command", m.JointState, names.command_raw, QOS_DEFAULT)
        self.events: list[dict] = []
        self.node.create_subscription(m.String, names.episode, self._on_event, QOS_DEFAULT)
        self.position = np.tile([0.0, -0.27, -0.97], 3)
        self.stamps: dict[float, np.ndarray] = {}
        self.tick = 0

    def _on_event(self, msg: m.String) -> None:
        event = decode_event(msg.data)
        self.events.append(event)
        if event["event"] == "reset":
            self.status.publish(m.String(data=encode_event("reset_done", event["episode"])))

    def publish_state(self) -> None:
        self.tick += 1
        stamp = 1000.0 + 0.01 * self.tick
        position = self.position + 1e-3 * np.sin(self.tick)
        self.stamps[round(stamp, 6)] = position
        self.joints.publish(m.joint_state(NAMES, position, np.zeros(9), stamp_s=stamp))
        self.object.publish(m.joint_state(["valve"], [0.3], [0.0], stamp_s=stamp))


@both_backends
def test_actor_waits_for_weights_then_acts_with_them(ros_domain: int, spawn: Any) -> None:
    actor = spawn(node_cmd("robot_rl.nodes.actor",
                           *params(deterministic=True, reset_timeout_s=1.0)),
                  stderr=subprocess.PIPE, text=True)
    lines = Lines(actor)
    lines.wait_for(r"waiting for weights on /robot_rl/policy", 60)
    robot = FakeRobot()
    weights = robot.node.create_publisher(m.UInt8MultiArray, topics.POLICY, QOS_LATCHED)
    try:
        robot.wait_until(lambda: weights.matched_count() > 0, 20, robot.publish_state,
                         what="actor subscribed to POLICY")
        robot.spin_for(1.5, robot.publish_state)
        assert robot.events == [] and robot.commands == []  # nothing without weights

        task = ValveTask(load_robot("dclaw"))
        config = load_pipeline_config("valve", profile="quick")
        agent = AWAC(task.observation_size, task.n_joints, config.awac, seed=4)
        with torch.no_grad():  # a policy whose actions are far from zero, to be recognisable
            agent.actor.trunk.layers[-1].bias.fill_(0.5)
        snapshot = PolicySnapshot.from_agent(agent, version=7)
        # weights trained on absolute targets are refused by a task that takes steps
        weights.publish(m.UInt8MultiArray(data=snapshot_to_bytes(
            PolicySnapshot.from_agent(agent, version=6), task="valve", action_mode="absolute")))
        lines.wait_for(r"v6 were trained with absolute actions; task valve acts with velocity", 20)
        robot.spin_for(0.5, robot.publish_state)
        assert robot.commands == []
        weights.publish(m.UInt8MultiArray(data=snapshot_to_bytes(snapshot, task="valve",
                                                                 action_mode="velocity")))
        robot.wait_until(lambda: len(robot.commands) >= 3, 20, robot.publish_state,
                         what="commands from the actor")
        lines.wait_for(r"first weights received: v7", 5)
        assert [e["event"] for e in robot.events[:2]] == ["reset", "start"]
        reset = robot.events[0]
        first = robot.commands[0]
        assert list(first.name) == NAMES
        # recompute the first command from the joint state it answers (its stamp names it)
        position = robot.stamps[round(m.stamp_to_s(first.header.stamp), 6)]
        sites = SiteKinematics(task.calibration, task.required_sites)(position, 0.3)
        state = TaskState(position, np.zeros(9), 0.3, 0.0, sites_m=sites)
        targets0 = np.asarray(reset["joint_positions_rad"])
        obs = task.observation(state, reset["goal"], task.targets_to_action(targets0, targets0))
        expected = task.action_to_targets(snapshot.act(obs), targets0)
        np.testing.assert_allclose(first.position, expected, atol=1e-6)

        # a supervisor holding the reset pose: every velocity step starts from its COMMAND, so
        # no command strays more than one step from it (steps of ~0.07 rad would add up)
        gated = robot.node.create_publisher(m.JointState, robot_topics("/hand").command,
                                            QOS_DEFAULT)

        def state_and_hold() -> None:
            robot.publish_state()
            gated.publish(m.joint_state(NAMES, targets0, np.zeros(9)))

        # only commands answering states published after the first hold count: until the
        # actor's COMMAND subscription is matched and a hold reached it, its steps start from
        # its own targets, which run ahead (a discovery race that a busy machine exposed)
        robot.wait_until(lambda: gated.matched_count() > 0, 20, robot.publish_state,
                         what="actor subscribed to COMMAND")
        state_and_hold()
        after = 1000.0 + 0.01 * robot.tick + 1e-6  # the stamp of the state sent with it

        step_rad = float(task.actions.step_rad.max()) + 1e-6

        def offsets() -> list[float]:
            return [float(np.abs(np.asarray(c.position) - targets0).max())
                    for c in robot.commands if m.stamp_to_s(c.header.stamp) > after]

        def held(offsets_rad: list[float]) -> list[float]:
            """The commands from the first one within a step of the hold: a state and the hold
            are published together, and on rclpy the state may reach the actor first (no order
            is promised between two topics), so its answer still starts from the actor's own
            targets."""
            within = [i for i, offset in enumerate(offsets_rad) if offset <= step_rad]
            return offsets_rad[within[0]:] if within else []

        robot.wait_until(lambda: len(held(offsets())) >= 8, 20, state_and_hold,
                         what="commands while the supervisor holds")
        in_flight = len(offsets()) - len(held(offsets()))
        assert in_flight <= 3, offsets()  # an actor ignoring COMMAND drifts on, step by step
        assert max(held(offsets())) <= step_rad, offsets()
    finally:
        robot.destroy()
    assert stop(actor) == 0


def test_learner_takes_task_and_robot_from_its_config_and_refuses_a_contrary_task(
        ros_domain: int, tmp_path: Path) -> None:
    """The launch file once left task and robot at the valve defaults under the drawer config: the
    learner then died on the dataset's observation size. Now the config supplies the defaults, and
    a task that contradicts the config is named at start."""
    from robot_rl.nodes.learner import LearnerNode

    with pytest.raises(ValueError, match=r"task is 'valve' but config 'drawer' is for 'drawer'"):
        LearnerNode(["--ros-args", *params(config="drawer", task="valve",
                                           run_dir=tmp_path / "run"), "-r", "__ns:=/arm"])
    assert not (tmp_path / "run").exists()  # refused before it wrote anything

    # a profile that changes the environment (absolute actions) would act on another task
    with pytest.raises(ConfigError, match=r"env_kwargs .*'absolute'.* in-process runs only"):
        LearnerNode(["--ros-args", *params(config="valve", profile="bench_60k",
                                           run_dir=tmp_path / "run")])
    assert not (tmp_path / "run").exists()

    with pytest.raises(ValueError, match=r"'trainer' must be one of process, thread .*; got 'gpu', 10"):
        LearnerNode(["--ros-args", *params(config="drawer", trainer="gpu",
                                           run_dir=tmp_path / "run"), "-r", "__ns:=/arm"])

    with pytest.raises(ValueError, match=r"parameter trainer_device: 'gpu' is not one of cpu, "
                                         r"cuda, cuda:N or auto"):
        LearnerNode(["--ros-args", *params(config="drawer", trainer_device="gpu",
                                           run_dir=tmp_path / "run"), "-r", "__ns:=/arm"])
    assert not (tmp_path / "run").exists()
    if not torch.cuda.is_available():  # the training side names the setting, not a CUDA trace
        with pytest.raises(TrainerFailed, match=r"parameter trainer_device: 'cuda', but torch .* sees "
                                                r"no CUDA"):
            LearnerNode(["--ros-args", *params(config="drawer", trainer="thread", train=False,
                                               trainer_device="cuda", run_dir=tmp_path / "gpu",
                                               namespaces="[/arm]")])

    learner = LearnerNode(["--ros-args", *params(config="drawer", train=False, trainer="thread",
                                                 trainer_device="auto", run_dir=tmp_path / "ok",
                                                 namespaces="[/arm]")])
    try:
        assert learner.task.name == "drawer" and learner.shell.calibration.robot == "arm6"
        # the training side (a thread here) built the agent and sent the policy to act with
        deadline = time.monotonic() + 30
        while learner.trainer.snapshot is None:
            assert time.monotonic() < deadline and learner.trainer.error is None
            time.sleep(0.02)
        assert learner.trainer.snapshot.obs_dim == learner.task.observation_size
    finally:
        learner.close()
        learner.node.destroy()
    assert learner.trainer.final is not None and not learner.trainer.final["failed"]
    # the config it trained with, beside its metrics: the drawer's, with the device it was given
    saved = load_config(PipelineConfig, tmp_path / "ok" / "learner" / "config.yaml")
    assert saved == dataclasses.replace(load_pipeline_config("drawer"), awac=dataclasses.replace(
        load_pipeline_config("drawer").awac, device="auto"))


@pytest.mark.parametrize("trainer", ["process", "thread"])
def test_a_dataset_of_another_task_is_refused_by_name(ros_domain: int, tmp_path: Path,
                                                      quick_dataset: Path, trainer: str) -> None:
    """The training side loads the dataset; its refusal reaches the node with the file's name."""
    from robot_rl.nodes.learner import LearnerNode
    from robot_rl.nodes.trainer_link import TrainerFailed

    with pytest.raises(TrainerFailed, match=rf"trainer \({trainer}\): DatasetError: "
                                            rf"pretrain_dataset .*quick\.zarr: observations have "
                                            rf"\d+ values, task drawer makes \d+"):
        LearnerNode(["--ros-args", *params(config="drawer", trainer=trainer,
                                           pretrain_dataset=quick_dataset,
                                           run_dir=tmp_path / "run", namespaces="[/arm]")])
