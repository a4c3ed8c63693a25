"""The launch files: every task and mode evaluates; valve in twin and hil mode runs and stops on SIGINT."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from graph_probe import Probe

from robot_rl.nodes import topics
from robot_rl.robot_config import load_robot
from robot_rl.ros import messages as m
from robot_rl.ros.launch import LaunchDescription, pid_alive, started_pids
from robot_rl.ros.qos import QOS_DEFAULT, QOS_SENSOR_DATA

LAUNCH_DIR = Path(__file__).resolve().parents[2] / "launch"
NAMES = list(load_robot("dclaw").joint_names)


@pytest.mark.parametrize("task, mode", [(t, mo) for t in ("valve", "drawer", "teleop_record")
                                        for mo in ("twin", "hil", "real")])
def test_every_task_and_mode_evaluates_with_safety_shutting_all_down(task: str,
                                                                      mode: str) -> None:
    desc = LaunchDescription.load(LAUNCH_DIR / f"{task}.launch.yaml", {"mode": mode})
    labels = {p.label: p for p in desc.processes}
    assert labels["safety"].shutdown_on_exit
    hardware = "twin" if mode == "twin" else "driver" if (task, mode) == ("drawer", "real") else \
        "dynamixel"  # C3: these and the safety node stop the graph (tests/unit/test_launch_rules)
    assert {p.label for p in desc.processes if p.shutdown_on_exit} == {"safety", hardware}
    assert ("twin" in labels) == (mode == "twin")
    expected = {"valve": "learner", "drawer": "learner", "teleop_record": "teleop"}[task]
    assert expected in labels
    namespace = "/arm" if task == "drawer" else "/hand"
    assert f"__ns:={namespace}" in labels["safety"].cmd
    if task != "teleop_record":  # the learner acts for this task's robot, not its defaults'
        learner = labels["learner"].cmd
        robot = "arm6" if task == "drawer" else "dclaw"
        for param in (f"task:={task}", f"robot:={robot}", f"namespaces:=[{namespace[1:]}]"):
            assert param in learner, (param, learner)


@pytest.mark.parametrize("task", ["valve", "drawer"])
def test_each_task_launch_hands_the_learner_arguments_to_the_learner(task: str) -> None:
    """The drawer's launch file once declared neither online budget (they reached the learner, but
    `--show-args` did not list them): both tasks declare the same."""
    given = {"learner_device": "cuda:1", "max_online_env_steps": "7", "updates_per_env_step": "0.5"}
    desc = LaunchDescription.load(LAUNCH_DIR / f"{task}.launch.yaml", {"mode": "twin", **given})
    assert set(given) <= {arg.name for arg in desc.declared_args}
    learner = {p.label: p for p in desc.processes}["learner"].cmd
    for param in ("trainer_device:=cuda:1", "max_online_env_steps:=7", "updates_per_env_step:=0.5"):
        assert param in learner, (param, learner)


def test_the_drawer_launch_plays_any_robot_and_takes_its_driver() -> None:
    """robot:=ur5e reaches the twin with the task whose scene it plays, and mode:=real takes
    the generic driver node for a robot whose driver a package provides."""
    desc = LaunchDescription.load(LAUNCH_DIR / "drawer.launch.yaml", {"robot": "ur5e"})
    twin = {p.label: p for p in desc.processes}["twin"].cmd
    assert "robot:=ur5e" in twin and "task:=drawer" in twin
    desc = LaunchDescription.load(LAUNCH_DIR / "drawer.launch.yaml",
                                  {"mode": "real", "robot": "ur5e", "driver": "robot_driver_node"})
    driver = {p.label: p for p in desc.processes}["driver"]
    assert "robot_rl.nodes.robot_driver" in " ".join(driver.cmd) and driver.shutdown_on_exit
    assert "robot:=ur5e" in driver.cmd


@pytest.mark.parametrize("mode, nodes", [("twin", 2), ("hil", 3)])
def test_valve_launch_runs_the_loop_and_stops_on_sigint(mode: str, nodes: int, ros_domain: int,
                                                       spawn: Any, tmp_path: Path) -> None:
    """twin: twin + safety. hil: the emulated bus (moved by the twin) + the real Dynamixel driver on
    the real SDK + safety. A raw command moves the joints only through the safety node."""
    # the ros2-launch form: package and file name, found through the package's share directory
    runner = spawn([sys.executable, "-m", "robot_rl.ros.launch", "robot_rl", "valve.launch.yaml",
                    f"mode:={mode}", "learner:=false", f"bus_link:={tmp_path / 'bus'}"],
                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(runner.stdout.readline, "")),
                              daemon=True)
    reader.start()
    probe = Probe()
    try:
        states = probe.listen("joints", m.JointState, topics.JOINT_STATES, QOS_SENSOR_DATA)
        status = probe.listen("status", m.String, topics.SAFETY_STATUS, QOS_DEFAULT)
        raw = probe.node.create_publisher(m.JointState, topics.COMMAND_RAW, QOS_DEFAULT)
        probe.wait_until(lambda: bool(states), 40.0, what=f"joint states; output:\n{lines}")
        target = np.zeros(len(NAMES))
        target[NAMES.index("f0_tip")] = -0.3
        # reached, whether the twin started at zero (hil) or at the task's start (twin)
        probe.wait_until(lambda: abs(states[-1].position[2] + 0.3) < 0.05, 15.0,
                         lambda: raw.publish(m.joint_state(NAMES, target)), 0.05,
                         what="the twin to follow a raw command through safety")
        assert status[-1].data in ("pass", "clipped")
    finally:
        probe.destroy()
    pids = started_pids("".join(lines))
    assert len(pids) == nodes  # learner:=false
    runner.send_signal(signal.SIGINT)  # every node stops on SIGINT itself: none escalated below
    assert runner.wait(timeout=30) == 0, "".join(lines[-30:])
    assert not [pid for pid in pids if pid_alive(pid)]
    reader.join(timeout=2)
    escalated = [line for line in lines if "SIGTERM" in line or "SIGKILL" in line]
    assert not escalated, "".join(lines[-40:])


def test_pixels_launches_the_twins_view_stream(ros_domain: int, spawn: Any) -> None:
    """``pixels:=true``: the twin launched by the valve's file publishes the task's view (what a
    pixel learner, actor and recorder subscribe to)."""
    runner = spawn([sys.executable, "-m", "robot_rl.ros.launch", "robot_rl", "valve.launch.yaml",
                    "mode:=twin", "learner:=false", "pixels:=true"],
                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(runner.stdout.readline, "")),
                              daemon=True)
    reader.start()
    probe = Probe("/")
    try:
        views = probe.listen("view", m.Image, topics.camera_topic(topics.CAMERA, topics.VIEW_COLOR),
                             QOS_SENSOR_DATA)
        probe.wait_until(lambda: bool(views), 40.0, what=f"the view stream; output:\n{lines}")
        assert m.image_to_numpy(views[-1]).shape == (64, 64, 3)
    finally:
        probe.destroy()
    runner.send_signal(signal.SIGINT)
    assert runner.wait(timeout=30) == 0, "".join(lines[-30:])
    reader.join(timeout=2)


@pytest.mark.parametrize("task", ["valve", "drawer"])
def test_sim_time_reaches_every_twin_mode_node_and_real_hardware_refuses_it(task: str) -> None:
    """use_sim_time:=true lockstep:=true: every node on /clock, the twin in lockstep, the learner
    waiting for its updates; by default, the wall clock everywhere. The real and hil files accept
    use_sim_time false only (ROS 2 launch's own choice check refuses anything else)."""
    desc = LaunchDescription.load(LAUNCH_DIR / f"{task}.launch.yaml",
                                  {"mode": "twin", "use_sim_time": "true", "lockstep": "true"})
    cmds = {p.label: p.cmd for p in desc.processes}
    for label in ("twin", "safety", "learner"):
        assert "use_sim_time:=true" in cmds[label], (label, cmds[label])
    assert "lockstep:=true" in cmds["twin"] and "wait_for_updates:=true" in cmds["learner"]
    wall = {p.label: p.cmd for p in LaunchDescription.load(
        LAUNCH_DIR / f"{task}.launch.yaml", {"mode": "twin"}).processes}
    for label in ("twin", "safety", "learner"):
        assert "use_sim_time:=false" in wall[label], (label, wall[label])
    for mode in ("real", "hil"):
        entries = yaml.safe_load((LAUNCH_DIR / f"{task}_{mode}.launch.yaml").read_text())
        arg = next(e["arg"] for e in entries["launch"]
                   if "arg" in e and e["arg"]["name"] == "use_sim_time")
        assert (arg["default"], arg["choice"]) == ("false", [{"value": "false"}])


def test_ros2_launch_refuses_sim_time_on_real_hardware() -> None:
    """Through ROS 2 Jazzy's own launch system (where its sources are installed: CI's rclpy
    job): the real mode with use_sim_time:=true stops with a one-line error before any node."""
    launch = pytest.importorskip("launch", reason="ROS 2 Jazzy's launch (../shared/"
                                 "ros2-launch-jazzy) is not installed in this venv")
    pytest.importorskip("launch_ros", reason="launch_ros (with rclpy) is not installed")
    from launch.actions import IncludeLaunchDescription
    from launch.launch_description_sources import AnyLaunchDescriptionSource

    service = launch.LaunchService()
    service.include_launch_description(IncludeLaunchDescription(
        AnyLaunchDescriptionSource(str(LAUNCH_DIR / "valve.launch.yaml")),
        launch_arguments=[("mode", "real"), ("use_sim_time", "true")]))
    assert service.run() != 0
