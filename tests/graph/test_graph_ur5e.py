"""The third robot on the graph: drawer.launch.yaml with robot:=ur5e starts the UR5e's twin (its
drawer scene), the safety node with the UR5e's limits and workspace, and the learner, which runs
drawer episodes through the supervisor. Separate processes over real DDS, started by the launch
runner as a user would."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import numpy as np
from graph_probe import Probe

from robot_rl.agent.events import decode_event
from robot_rl.data import EpisodeStore
from robot_rl.nodes import topics
from robot_rl.robot_config import load_robot
from robot_rl.ros import messages as m
from robot_rl.ros.launch import pid_alive, started_pids
from robot_rl.ros.qos import QOS_DEFAULT, QOS_SENSOR_DATA
from robot_rl.tasks.drawer import DrawerTask


def test_the_drawer_launch_runs_the_ur5e(ros_domain: int, spawn: Any, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    runner = spawn([sys.executable, "-m", "robot_rl.ros.launch", "robot_rl", "drawer.launch.yaml",
                    "mode:=twin", "robot:=ur5e", "profile:=quick", f"run_dir:={run_dir}"],
                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    threading.Thread(target=lambda: lines.extend(iter(runner.stdout.readline, "")),
                     daemon=True).start()
    probe = Probe("/arm")
    ends: list[dict] = []
    try:
        states = probe.listen("joints", m.JointState, topics.JOINT_STATES, QOS_SENSOR_DATA)
        gated = probe.listen("gated", m.JointState, topics.COMMAND, QOS_DEFAULT)
        probe.node.create_subscription(
            m.String, topics.EPISODE,
            lambda msg: ends.append(e) if (e := decode_event(msg.data))["event"] == "end" else None,
            QOS_DEFAULT)
        probe.wait_until(lambda: len(ends) >= 1, 150.0,
                         what=f"a finished episode; launch output:\n{''.join(lines[-30:])}")
        assert list(states[-1].name) == list(load_robot("ur5e").joint_names)
        assert len(gated) > 20 and isinstance(ends[0]["success"], bool)
    finally:
        probe.destroy()
    pids = started_pids("".join(lines))
    assert len(pids) == 3  # twin, safety, learner
    runner.send_signal(2)
    assert runner.wait(timeout=60) == 0, "".join(lines[-30:])
    assert not [pid for pid in pids if pid_alive(pid)]
    assert "twin of ur5e (drawer)" in "".join(lines)
    store = EpisodeStore.open(run_dir / "online.zarr")
    assert store.attrs["robot"] == "ur5e"
    task = DrawerTask(load_robot("ur5e"))
    observations = store.episode(0, ["observation"])["observation"]
    assert observations.shape[1] == task.observation_size
    handle = task.field(observations, "ee_position_m") + task.field(observations,
                                                                    "handle_from_ee_m")
    # the learner's kinematics put the handle where the UR5e's scene has it (0.46 m, closed)
    np.testing.assert_allclose(handle[0], [0.46 - observations[0, task.layout["opening_m"]][0],
                                           0.0, 0.2], atol=1e-4)
