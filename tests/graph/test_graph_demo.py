"""``robot-rl demo`` on the graph: the launch file's twin, safety and learner nodes as processes
over real DDS. Demonstrations in, pretraining, online fine-tuning through the safety node, a budget
after which the learner stops by itself, and nothing left running."""

from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from graph_probe import Probe
from test_graph_learner import quick_dataset  # noqa: F401 - the fixture is used by name

from robot_rl.data import EpisodeStore
from robot_rl.learning import load_checkpoint
from robot_rl.nodes import topics
from robot_rl.pipeline.graph_demo import (
    SIM_TIME,
    _Graph,
    curve_window,
    evaluation_curve,
    interval_curve,
    online_curve,
    read_episode_log,
    read_status,
    safety_counters,
)
from robot_rl.ros import messages as m
from robot_rl.ros.launch import pid_alive, started_pids
from robot_rl.ros.qos import QOS_DEFAULT
from robot_rl.run_config import load_pipeline_config

REPO = Path(__file__).resolve().parents[2]


def _reap_nodes(log_path: Path) -> None:
    """On a failure the runner is SIGKILLed by ``spawn``: its nodes (own sessions) go too."""
    for pid in started_pids(log_path.read_text()) if log_path.exists() else []:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)


def test_curve_and_counters_from_what_the_nodes_write() -> None:
    episodes = [{"env_steps": str(40 * (i + 1)), "success": str(i % 2),
                 "episode_return": str(-i)} for i in range(6)]
    window = curve_window(len(episodes))
    assert window == 3
    curve = online_curve(episodes, window)
    assert [p.env_steps for p in curve] == [120, 160, 200, 240]
    assert [p.success_rate for p in curve] == pytest.approx([1 / 3, 2 / 3, 1 / 3, 2 / 3])
    assert curve[-1].mean_return == pytest.approx(-4.0)
    values = [("status", "clipped"), ("state_age_s", "0.0100"), ("commands", "12"),
              ("verdict_hold", "3"), ("last_rebase_joints", "f0_base")]
    assert safety_counters(values) == {"commands": 12, "verdict_hold": 3}


def test_evaluation_rounds_and_exploring_intervals_from_what_the_learner_writes() -> None:
    rows = [{"round": str(r), "env_steps": str(at), "success": str(s), "episode_return": str(-k)}
            for r, at in ((0, 0), (1, 120), (2, 250))
            for k, s in enumerate((1, 0, r % 2))]
    curve = evaluation_curve(rows)
    assert [(p.env_steps, p.episodes) for p in curve] == [(0, 3), (120, 3), (250, 3)]
    assert [p.success_rate for p in curve] == pytest.approx([1 / 3, 2 / 3, 1 / 3])
    assert curve[0].mean_return == pytest.approx(-1.0)
    # exploring episodes by the interval between evaluations their last step falls in
    episodes = [{"env_steps": str(60 * (i + 1)), "success": str(int(i >= 2)),
                 "episode_return": "-1"} for i in range(4)]
    points = interval_curve(episodes, [p.env_steps for p in curve])
    assert [(p.env_steps, p.episodes, p.success_rate) for p in points] == [(120, 2, 0.0),
                                                                          (250, 2, 1.0)]


def test_learner_from_the_launch_file_pretrains_fine_tunes_and_stops_by_itself(
        ros_domain: int, spawn: Any, tmp_path: Path, quick_dataset: Path) -> None:  # noqa: F811
    try:
        _fine_tune_from_the_launch_file(spawn, tmp_path, quick_dataset)
    except BaseException:
        _reap_nodes(tmp_path / "launch.log")
        raise


def _fine_tune_from_the_launch_file(spawn: Any, tmp_path: Path, dataset: Path) -> None:
    run_dir = tmp_path / "run"
    budget = 60  # about one episode (at most 60 steps each)
    runner = spawn([sys.executable, "-m", "robot_rl.ros.launch", "robot_rl", "valve.launch.yaml",
                    "mode:=twin", "profile:=quick", f"pretrain_dataset:={dataset}",
                    f"run_dir:={run_dir}", f"max_online_env_steps:={budget}",
                    "updates_per_env_step:=-1"],
                   stdout=(tmp_path / "launch.log").open("w"), stderr=subprocess.STDOUT)
    probe = Probe()
    gated = probe.listen("command", m.JointState, topics.COMMAND, QOS_DEFAULT)
    try:
        probe.wait_until(lambda: (read_status(run_dir / "status.json") or {}).get("phase")
                         == "done" or runner.poll() is not None, 90,
                         what=f"the learner to finish; {(tmp_path / 'launch.log').read_text()}")
    finally:
        probe.destroy()
    log_path = tmp_path / "launch.log"
    deadline = time.monotonic() + 15
    while "process [learner] finished cleanly" not in log_path.read_text():
        assert time.monotonic() < deadline, log_path.read_text()  # status done: it exits now
        time.sleep(0.05)
    assert runner.poll() is None, log_path.read_text()  # twin and safety go on
    assert gated  # the twin was driven through the safety node
    status = read_status(run_dir / "status.json")
    config = load_pipeline_config("valve", profile="quick")
    offline = load_checkpoint(run_dir / "offline.pt")["counters"]
    assert offline["offline_updates"] == config.pretrain.updates
    assert offline["online_updates"] == 0 and not offline["online_started"]
    final = load_checkpoint(run_dir / "learner.pt")["counters"]
    assert final == {k: status[k] for k in final}
    assert budget <= final["env_steps"] < budget + 60  # whole episodes, then stop
    assert final["online_updates"] >= final["env_steps"]  # 1 update per env step: all done
    store = EpisodeStore.open(run_dir / "online.zarr")
    logged = read_episode_log(run_dir / "episodes.csv")
    assert store.n_steps == final["env_steps"] == int(logged[-1]["env_steps"])
    assert [bool(int(e["success"])) for e in logged] == \
        [store.episode_info(i)["success"] for i in range(store.n_episodes)]

    runner.send_signal(signal.SIGINT)
    assert runner.wait(timeout=15) == 0
    pids = started_pids((tmp_path / "launch.log").read_text())
    assert len(pids) == 3 and not [p for p in pids if pid_alive(p)]


@pytest.mark.slow
def test_robot_rl_demo_runs_on_the_graph(ros_domain: int, spawn: Any, tmp_path: Path) -> None:
    try:
        _demo_on_the_graph(spawn, tmp_path / "demo")
    except BaseException:
        _reap_nodes(tmp_path / "demo" / "graph.log")
        raise


def _demo_on_the_graph(spawn: Any, out: Path) -> None:
    started = time.monotonic()
    demo = spawn([sys.executable, "-m", "robot_rl.cli", "demo", "--profile", "quick", "--quiet",
                  "--out", str(out)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                 text=True, cwd=REPO)
    output, _ = demo.communicate(timeout=300)
    assert demo.returncode == 0, output[-3000:]
    report = json.loads((out / "report.json").read_text())
    assert report["mode"].startswith("graph")
    assert (report["backend"], report["time_mode"]) == ("dds", SIM_TIME)
    markdown = (out / "report.md").read_text()
    assert f"Backend: dds; time: {SIM_TIME}" in markdown and "x real time" in markdown
    for key in ("offline_success_rate", "finetuned_success_rate", "demo_success_rate"):
        assert 0.0 <= report[key] <= 1.0
    config = load_pipeline_config("valve", profile="quick")
    assert report["eval_episodes"] == config.eval.episodes
    online = EpisodeStore.open(out / "online.zarr")
    assert online.n_steps >= config.finetune.env_steps  # the budget, on the twin
    # the curve is the graph's evaluations: at 0, past every eval_every_env_steps, at the end
    curve = report["curve"]
    assert curve[0]["env_steps"] == 0 and curve[-1]["env_steps"] == online.n_steps
    assert len(curve) >= config.finetune.env_steps // config.finetune.eval_every_env_steps + 1
    assert all(p["episodes"] == config.eval.episodes for p in curve)
    assert (report["offline_success_rate"], report["finetuned_success_rate"]) == \
        (curve[0]["success_rate"], curve[-1]["success_rate"])
    assert report["online_curve"][-1]["env_steps"] == online.n_steps
    # the speed-up is reported, not asserted: a loaded machine ran this quick demo at 0.7x real
    # time (the figures come from make demo and bench/lockstep_speedup.py)
    assert report["clock"]["lockstep_timeouts"] == 0 and report["clock"]["speedup"] > 0.0
    assert f"{report['clock']['speedup']:.1f}x real time" in markdown
    assert all(math.isfinite(t) for t in report["timings_s"].values())
    # the safety node's own counters, read from /diagnostics: every learner command went through
    assert report["safety"]["commands"] >= online.n_steps
    assert (out / "learning_curve.png").stat().st_size > 0
    pids = started_pids((out / "graph.log").read_text())
    assert len(pids) == 3 and not [p for p in pids if pid_alive(p)]
    assert "SIGKILL" not in (out / "graph.log").read_text()
    assert time.monotonic() - started < 300


def test_the_demo_notices_a_dead_node_from_the_lines_its_log_gained(tmp_path: Path) -> None:
    log = tmp_path / "graph.log"
    graph = _Graph(["true"], log)
    assert graph.died() == []  # no log yet
    log.write_text("[INFO] [launch]: process [twin] started with pid [1]\n"
                   "[ERROR] [launch]: process [lea")  # a line still being written
    assert graph.died() == []
    with open(log, "a") as out:
        out.write("rner] died [pid 2, exit code 1]\n[twin] still running\n")
    assert graph.died() == ["learner"]
    assert graph.died() == ["learner"]  # counted once, not again on the next poll
