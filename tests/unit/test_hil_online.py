"""Interventions in process, on the real twin and supervisor gate: who acted is recorded, the
handback cannot jump, operator steps reach both sides of the replay, and the study's harness runs."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from robot_rl.data import EpisodeStore
from robot_rl.pipeline import stages
from robot_rl.pipeline.hil import run_online_episode
from robot_rl.pipeline.report import Report
from robot_rl.pipeline.rollout import GatedEnv
from robot_rl.run_config import load_pipeline_config
from robot_rl.sim_twin.operator import OperatorRules, ScriptedOperator

REPO = Path(__file__).resolve().parents[2]


def _policy(obs: np.ndarray) -> np.ndarray:
    """A fixed function of the observation: deterministic, and not the expert."""
    return np.tanh(np.sin(np.arange(9) + 10.0 * obs[:9])).astype(np.float32)


def test_without_an_operator_the_episode_is_the_plain_one() -> None:
    config = load_pipeline_config("valve", profile="bench_tiny")
    env = GatedEnv(config)
    try:
        plain = env.run_episode(_policy, seed=11)
        mine = run_online_episode(env, _policy, seed=11)
    finally:
        env.close()
    assert mine.length == plain.length and mine.success == plain.success
    for key, value in plain.steps.items():
        np.testing.assert_array_equal(mine.steps[key], value, err_msg=key)
    assert not mine.steps["intervention"].any() and mine.info["takeovers"] == 0


class _Recorder:
    """Wraps the env's supervisor gate: what was asked (command_raw) and what it let through."""

    def __init__(self, gate) -> None:
        self.gate, self.raw, self.gated = gate, [], []

    def __call__(self, targets: np.ndarray, state: dict, time_s: float) -> np.ndarray:
        self.raw.append(np.array(targets))
        self.gated.append(np.array(self.gate(targets, state, time_s)))
        return self.gated[-1]


def test_the_expert_takes_over_when_stuck_and_hands_back_without_a_jump() -> None:
    """Absolute actions, where the rule matters: the stuck policy asks for the lower limit of
    every joint; the operator (the expert) takes over, and on handback the policy's first
    command is within one step of the operator's last gated command."""
    config = load_pipeline_config("valve", ["env_kwargs={config: {action_mode: absolute}}"],
                                  profile="bench_tiny")
    env = GatedEnv(config)
    recorder = _Recorder(env.gate)
    env.env.unwrapped.command_gate = recorder
    task = env.env.unwrapped.task
    rules = OperatorRules(stuck_steps=5, min_progress=0.01, hold_steps=6,
                          max_takeovers_per_episode=2)
    operator = ScriptedOperator(env.env, rules, region=None)
    try:
        episode = run_online_episode(env, lambda obs: -np.ones(9, np.float32), seed=3,
                                     operator=operator)
    finally:
        env.close()
    flags = episode.steps["intervention"]
    assert episode.info["takeovers"] == 2 == operator.reasons["stuck"]
    assert flags.sum() == 12 and not flags[:5].any() and flags[5:11].all()  # 5 stuck, 6 expert
    handbacks = np.flatnonzero(flags[:-1] & ~flags[1:]) + 1
    assert len(handbacks) == 2
    step = task.actions.step_rad
    for k in handbacks:
        jump = np.abs(recorder.raw[k] - recorder.gated[k - 1])
        assert np.all(jump <= step + 1e-6), (k, jump.max())  # actions are float32
        # and what was recorded is what was asked
        np.testing.assert_allclose(task.action_to_targets(episode.steps["action"][k],
                                                          recorder.gated[k - 1]),
                                   recorder.raw[k], atol=1e-5)
    later = handbacks[0] + 1
    assert np.abs(recorder.raw[later] - recorder.gated[later - 1]).max() > step.max()  # unheld


def test_finetune_records_interventions_logs_their_rate_and_feeds_the_offline_side(
        tmp_path: Path, one_torch_thread: None) -> None:
    config = load_pipeline_config("valve", ["intervention.operator=scripted",
                                            "intervention.stuck_steps=5",
                                            "intervention.hold_steps=5",
                                            "intervention.region=false"], "bench_hil_tiny")
    dataset = tmp_path / "dataset.zarr"
    stages.record(config, dataset, progress=False)
    stages.pretrain(config, dataset, tmp_path, progress=False)
    result = stages.finetune(config, tmp_path, dataset, progress=False)
    with EpisodeStore.open(tmp_path / "online.zarr") as store:
        flags = store.read("intervention")
        infos = [store.episode_info(i) for i in range(store.n_episodes)]
    assert flags.dtype == bool and flags.sum() > 0
    assert sum(info["intervention_steps"] for info in infos) == flags.sum()
    assert sum(info["takeovers"] for info in infos) == result.interventions["takeovers"] > 0
    assert result.interventions["offline_added"] == flags.sum()   # each also a demonstration
    with open(tmp_path / "finetune" / "metrics.csv") as handle:
        rows = [row for row in csv.DictReader(handle)]
    rates = [float(r["value"]) for r in rows if r["name"] == "intervention_rate"]
    assert len(rates) == len(infos)
    assert any(r["name"] == "intervention_rate_mean" for r in rows)
    assert np.isclose(np.mean(rates), flags.mean(), atol=0.05)
    # the run's report states them (robot-rl report reads finetune's summary.json)
    summary = stages.read_finetune_summary(tmp_path)
    assert summary.interventions[0]["takeovers"] == result.interventions["takeovers"]
    text = Report(task="valve", seed=0, demo_success_rate=1.0, noisy_success_rate=0.5,
                  offline_success_rate=0.5, finetuned_success_rate=0.5, eval_episodes=4,
                  interventions=summary.interventions).markdown()
    assert f"{result.interventions['takeovers']} takeovers in " in text


def test_the_study_harness_runs_both_conditions_and_reports(tmp_path: Path) -> None:
    sys.path.insert(0, str(REPO / "bench"))
    try:
        import hil_study
    finally:
        sys.path.pop(0)
    code = hil_study.main(["--profile", "hil_tiny", "--seeds", "1", "--out", str(tmp_path)])
    assert code == 0
    only = json.loads((tmp_path / "seed0" / "policy_only.json").read_text())
    helped = json.loads((tmp_path / "seed0" / "scripted_operator.json").read_text())
    assert only["interventions"]["takeovers"] == 0
    assert helped["interventions"]["takeovers"] > 0
    assert len(only["curve"]) == len(helped["curve"]) == 3       # step 0, 60, 120
    # both started from the seed's one offline policy
    assert only["curve"][0]["success_rate"] == helped["curve"][0]["success_rate"]
    text = hil_study.report(tmp_path, ["policy_only", "scripted_operator"])
    assert "| scripted_operator | 1 |" in text


@pytest.mark.parametrize("field", ["joint_velocity", "nonsense"])
def test_a_region_field_the_task_lacks_is_refused_by_name(field: str, tmp_path: Path) -> None:
    from robot_rl.pipeline.hil import demo_region
    config = load_pipeline_config("valve", ["intervention.operator=scripted",
                                            f"intervention.region_fields=[{field}]"],
                                  "bench_tiny")
    env = GatedEnv(config)
    try:
        with pytest.raises(ValueError, match=rf"intervention.region_fields: \['{field}'\]"):
            demo_region(config, env, tmp_path / "unused.zarr")
    finally:
        env.close()
