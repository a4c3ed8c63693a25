"""The learner on the lockstep twin through the safety node, all in sim time, processes over real
DDS: learning per step as in process (it waits for the updates it owes after each episode), and
evaluation rounds on the graph, recorded apart from the exploring episodes."""

from __future__ import annotations

import csv
import subprocess
from pathlib import Path
from typing import Any

import pytest
from graph_probe import Probe, node_cmd, params, stop
from test_graph_learner import Lines, quick_dataset  # noqa: F401 - the fixture is used by name

from robot_rl.agent.events import decode_event
from robot_rl.data import EpisodeStore
from robot_rl.ros import messages as m
from robot_rl.ros.qos import QOS_DEFAULT

pytestmark = pytest.mark.graph
PRETRAIN_UPDATES = 40
BUDGET = 150        # online env steps: three episodes of at most 60
EVAL_EVERY = 100
EVAL_EPISODES = 2


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as stream:
        return list(csv.DictReader(stream))


def test_learner_waits_for_its_updates_and_evaluates_on_the_graph(
        ros_domain: int, spawn: Any, tmp_path: Path, quick_dataset: Path) -> None:  # noqa: F811
    sim = {"robot": "dclaw", "use_sim_time": True}
    remaps = ["-r", "__ns:=/hand"]
    # a missing answer mid-run would stall the run this long and count as a timeout; the
    # unanswered step after the learner's last episode does not reach it within the test
    twin = spawn(node_cmd("robot_rl.sim_twin.node", *remaps, *params(**sim, lockstep=True,
                                                           lockstep_timeout_s=60.0)),
                 stderr=subprocess.DEVNULL)
    safety = spawn(node_cmd("robot_rl.nodes.safety", *remaps, *params(**sim)),
                   stderr=subprocess.DEVNULL)
    run_dir = tmp_path / "run"
    learner = spawn(node_cmd("robot_rl.nodes.learner", *remaps, *params(
        **sim, profile="quick", pretrain_dataset=quick_dataset,
        pretrain_updates=PRETRAIN_UPDATES, run_dir=run_dir, updates_per_env_step=1.0,
        wait_for_updates=True, max_online_env_steps=BUDGET, eval_every_env_steps=EVAL_EVERY,
        eval_episodes=EVAL_EPISODES, log_every_episodes=1)), stderr=subprocess.PIPE, text=True)
    lines = Lines(learner)
    probe = Probe()
    resets: list[dict] = []
    probe.node.create_subscription(
        m.String, "/hand/episode",
        lambda msg: resets.append(e) if (e := decode_event(msg.data))["event"] == "reset"
        else None, QOS_DEFAULT)
    clock: dict[str, float] = {}

    def on_diagnostics(msg: m.DiagnosticArray) -> None:
        for status in msg.status:
            if status.name == "twin: dclaw clock":
                clock.update({kv.key: float(kv.value) for kv in status.values})

    probe.node.create_subscription(m.DiagnosticArray, "/diagnostics", on_diagnostics,
                                   QOS_DEFAULT)
    try:
        probe.wait_until(lambda: learner.poll() is not None, 240,
                         what=f"the learner to finish by itself; it said {lines.seen[-3:]}")
        probe.spin_for(1.5)  # the twin's diagnostics, once a wall second
    finally:
        probe.destroy()
    assert learner.returncode == 0, lines.seen[-5:]
    assert clock["lockstep_timeouts"] == 0  # every step answered, resets included

    # learning per step as in process: each online episode acted with the policy of every
    # update owed to the steps before it (one per step), no more and no fewer
    episodes = read_csv(run_dir / "episodes.csv")
    acted_before = 0
    for episode in episodes:
        assert int(episode["policy_version"]) == PRETRAIN_UPDATES + acted_before, episodes
        acted_before = int(episode["env_steps"])
    assert BUDGET <= acted_before < BUDGET + 60

    # evaluation rounds at 0, after 100 steps, and at the end; never training data
    evaluations = read_csv(run_dir / "evaluations.csv")
    rounds = sorted({(int(e["round"]), int(e["env_steps"])) for e in evaluations})
    marks = [int(e["env_steps"]) for e in episodes]
    first_past_100 = min(s for s in marks if s >= EVAL_EVERY)
    assert rounds == [(0, 0), (1, first_past_100), (2, acted_before)]
    assert [e["draw"] for e in evaluations] == [str(d) for d in range(EVAL_EPISODES)] * 3
    for e in evaluations:  # the policy of the updates owed when the round opened
        assert int(e["policy_version"]) == PRETRAIN_UPDATES + int(e["env_steps"])
    store = EpisodeStore.open(run_dir / "online.zarr")
    assert store.n_episodes == len(episodes) and store.n_steps == acted_before
    assert {store.episode_info(i)["kind"] for i in range(store.n_episodes)} == {"online"}
    # one reset per episode (the twin teleports on each: a second would cut into the episode)
    assert len([r["episode"] for r in resets]) == len({r["episode"] for r in resets})
    # every round started from the same states
    eval_episodes = {int(e["episode"]) for e in evaluations}
    starts = [r["joint_positions_rad"] for r in resets if r["episode"] in eval_episodes]
    assert starts[:EVAL_EPISODES] == starts[EVAL_EPISODES:2 * EVAL_EPISODES] == \
        starts[2 * EVAL_EPISODES:]
    assert stop(safety) == 0
    assert stop(twin) == 0
