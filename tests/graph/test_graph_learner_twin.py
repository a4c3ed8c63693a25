"""The learner runs episodes on the twin through the safety node, all separate processes over real
DDS: one robot, and two twins in two namespaces feeding one learner."""

from __future__ import annotations

import csv
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from graph_probe import Probe, node_cmd, params, stop
from helpers.backends import both_backends
from test_graph_learner import Lines, quick_dataset  # noqa: F401 - the fixture is used by name

from robot_rl.agent.events import decode_event
from robot_rl.data import EpisodeStore
from robot_rl.nodes.topics import robot_topics
from robot_rl.robot_config import load_robot
from robot_rl.ros import messages as m
from robot_rl.ros.qos import QOS_DEFAULT
from robot_rl.tasks.drawer import DrawerTask


def start_station(spawn: Any, namespace: str, robot: str = "dclaw") -> list[subprocess.Popen]:
    """A twin and its safety node in ``namespace``; OBJECT_STATE remapped to the station's."""
    object_topic = robot_topics(namespace).object_state
    remaps = ["-r", f"__ns:={namespace}", "-r", f"/object/state:={object_topic}"]
    twin = spawn(node_cmd("robot_rl.sim_twin.node", *remaps, *params(publish_rate_hz=50.0, robot=robot)),
                 stderr=subprocess.DEVNULL)
    safety = spawn(node_cmd("robot_rl.nodes.safety", *remaps, *params(robot=robot)),
                   stderr=subprocess.DEVNULL)
    return [twin, safety]


def run_graph(spawn: Any, tmp_path: Path, dataset: Path | str, namespaces: list[str],
              episodes_each: int, timeout_s: float, robot: str = "dclaw",
              **learner_params: Any) -> tuple[dict[str, list[dict]], Path]:
    processes = [p for ns in namespaces for p in start_station(spawn, ns, robot)]
    run_dir = tmp_path / "run"
    learner = spawn(node_cmd("robot_rl.nodes.learner", *params(**{
        "profile": "quick", "pretrain_dataset": dataset, "pretrain_updates": 50,
        "run_dir": run_dir, "namespaces": "[" + ", ".join(namespaces) + "]",
        "reset_timeout_s": 2.0, "log_every_episodes": 1, "robot": robot, **learner_params})),
        stderr=subprocess.PIPE, text=True)
    lines = Lines(learner)
    probe = Probe("/")
    ends: dict[str, list[dict]] = {}
    gated: dict[str, list[Any]] = {}
    for ns in namespaces:
        names = robot_topics(ns)
        ends[ns] = []
        gated[ns] = probe.listen(ns, m.JointState, names.command, QOS_DEFAULT)
        probe.node.create_subscription(
            m.String, names.episode,
            lambda msg, ns=ns: ends[ns].append(e) if (e := decode_event(msg.data))["event"]
            == "end" else None, QOS_DEFAULT)
    try:
        probe.wait_until(lambda: all(len(e) >= episodes_each for e in ends.values()), timeout_s,
                         what=f"{episodes_each} finished episodes per robot "
                              f"(learner said: {lines.seen[-3:]})")
        assert all(gated[ns] for ns in namespaces)  # the twins were driven through safety
    finally:
        probe.destroy()
    assert stop(learner, 30) == 0
    lines.wait_for(r"checkpoint at update \d+", 5)
    for proc in processes:
        assert stop(proc) == 0
    return ends, run_dir


@both_backends
def test_learner_runs_labelled_episodes_on_the_twin(ros_domain: int, spawn: Any, tmp_path: Path,
                                                    quick_dataset: Path) -> None:  # noqa: F811
    ends, run_dir = run_graph(spawn, tmp_path, quick_dataset, ["/hand"], 2, 90)
    labels = [e["success"] for e in ends["/hand"]]
    assert all(isinstance(s, bool) for s in labels)
    assert [e["episode"] for e in ends["/hand"][:2]] == [0, 1]
    store = EpisodeStore.open(run_dir / "online.zarr")
    assert store.n_episodes >= 2
    stored = [store.episode_info(i) for i in range(2)]
    assert [s["success"] for s in stored] == labels[:2]
    assert all(s["robot_namespace"] == "/hand" for s in stored)
    with open(run_dir / "learner" / "metrics.csv", newline="") as f:  # TensorBoard's twin
        logged = [float(r["value"]) for r in csv.DictReader(f) if r["name"] == "episode_success"]
    assert logged == [float(store.episode_info(i)["success"]) for i in range(store.n_episodes)]


@pytest.mark.slow
def test_two_twins_feed_one_learner(ros_domain: int, spawn: Any, tmp_path: Path,
                                    quick_dataset: Path) -> None:  # noqa: F811
    ends, run_dir = run_graph(spawn, tmp_path, quick_dataset, ["/r1/hand", "/r2/hand"], 1, 120)
    store = EpisodeStore.open(run_dir / "online.zarr")
    namespaces = {store.episode_info(i)["robot_namespace"] for i in range(store.n_episodes)}
    assert namespaces == {"/r1/hand", "/r2/hand"}


def test_learner_runs_drawer_episodes_on_the_arm_twin(ros_domain: int, spawn: Any,
                                                      tmp_path: Path) -> None:
    """The drawer's observation holds the hook tip and the handle, which no simulator reads for
    the learner here: it computes them by forward kinematics (agent.sites). From scratch, no
    dataset: this is about the graph carrying a whole drawer episode, not about learning."""
    ends, run_dir = run_graph(spawn, tmp_path, "", ["/arm"], 1, 90, robot="arm6",
                              task="drawer", config="drawer")
    assert isinstance(ends["/arm"][0]["success"], bool)
    store = EpisodeStore.open(run_dir / "online.zarr")
    observations = store.episode(0, ["observation"])["observation"]
    task = DrawerTask(load_robot("arm6"))
    assert observations.shape[1] == task.observation_size and np.isfinite(observations).all()
    ee = task.field(observations, "ee_position_m")  # in front of the arm's base, and moving
    assert (ee[:, 0] > 0.0).all() and np.ptp(ee, axis=0).max() > 1e-3
    handle = ee + task.field(observations, "handle_from_ee_m")  # the cabinet's handle stands
    assert np.allclose(handle[:, 0], handle[0, 0] - task.field(observations, "opening_m")[:, 0]
                       + task.field(observations, "opening_m")[0, 0], atol=1e-5)
