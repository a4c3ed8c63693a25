"""The pipeline's stages: a dataset that does not fit the task is refused before training; online
evaluations feed the collapse guard's fallback rule the policy being fine-tuned."""

from __future__ import annotations

import csv
import dataclasses
from pathlib import Path

import numpy as np
import pytest

from robot_rl.cli import main
from robot_rl.config import load_config
from robot_rl.data import DatasetError, EpisodeStore, transitions
from robot_rl.data.replay import check_action_mode
from robot_rl.learning.guard import CollapseGuard
from robot_rl.pipeline import stages
from robot_rl.pipeline.config import PipelineConfig, load_pipeline_config
from robot_rl.pipeline.stages import finetune, pretrain, record


@pytest.fixture(scope="module")
def drawer_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    config = load_pipeline_config("drawer", profile="bench_tiny")
    path = tmp_path_factory.mktemp("data") / "drawer.zarr"
    record(config, path, progress=False)
    return path


def test_pretrain_and_finetune_refuse_another_tasks_dataset_by_name(
        drawer_dataset: Path, tmp_path: Path) -> None:
    valve = load_pipeline_config("valve", profile="bench_tiny")
    expected = (rf"{drawer_dataset.name}: observations have 27 values, robot_rl/ValveTurn-v0 "
                rf"makes 49: recorded for another task, or before the task's observation changed")
    with pytest.raises(DatasetError, match=expected):
        pretrain(valve, drawer_dataset, tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()  # refused before anything was written
    with pytest.raises(DatasetError, match=expected):
        finetune(valve, tmp_path / "run", drawer_dataset, progress=False)


def test_the_cli_names_the_dataset_and_exits_nonzero(drawer_dataset: Path, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["pretrain", "--config", "valve", "--profile", "bench_tiny",
                 "--dataset", str(drawer_dataset), "--out", str(tmp_path / "run")])
    assert code != 0
    err = capsys.readouterr().err
    assert str(drawer_dataset) in err and "observations have 27 values" in err


def test_a_fitting_dataset_still_trains(drawer_dataset: Path, tmp_path: Path) -> None:
    drawer = load_pipeline_config("drawer", profile="bench_tiny")
    drawer = dataclasses.replace(drawer, pretrain=dataclasses.replace(drawer.pretrain, updates=5))
    checkpoint = pretrain(drawer, drawer_dataset, tmp_path / "run", progress=False)
    assert checkpoint.exists()


def test_pretrain_and_finetune_log_their_config_and_updates_per_second(drawer_dataset: Path,
                                                                     tmp_path: Path) -> None:
    drawer = load_pipeline_config("drawer", profile="bench_tiny")  # logs every 10 updates
    pretrain(drawer, drawer_dataset, tmp_path, progress=False)
    tuned = load_pipeline_config("drawer", ["awac.beta=0.3"], profile="bench_tiny")
    finetune(tuned, tmp_path, drawer_dataset, progress=False)
    for stage, config in (("pretrain", drawer), ("finetune", tuned)):  # each stage its own
        assert load_config(PipelineConfig, tmp_path / stage / "config.yaml") == config, stage
    for stage, steps in (("pretrain", ["10", "20"]), ("finetune", None)):
        with open(tmp_path / stage / "metrics.csv", newline="") as f:
            rows = [r for r in csv.DictReader(f) if r["name"] == "updates_per_s"]
        if steps is not None:
            assert [r["step"] for r in rows] == steps
        assert rows and all(0 < float(r["value"]) < 1e6 for r in rows), (stage, rows)


@pytest.mark.parametrize("falls_back", [False, True])
def test_the_curve_shows_the_acting_policy_and_the_rule_sees_the_online_one(
        drawer_dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        falls_back: bool) -> None:
    drawer = load_pipeline_config("drawer", profile="bench_tiny",
                                  overrides=["awac.collapse_guard.fallback=true"])
    drawer = dataclasses.replace(
        drawer, pretrain=dataclasses.replace(drawer.pretrain, updates=5),
        finetune=dataclasses.replace(drawer.finetune, env_steps=200, eval_every_env_steps=40))
    pretrain(drawer, drawer_dataset, tmp_path, progress=False)
    # The rule holds after the first online evaluation and lets go after the second; which
    # policy each evaluation runs is what is under test.
    monkeypatch.setattr(CollapseGuard, "use_snapshot",
                        lambda self: falls_back and self.armed and len(self.online_successes) == 1)
    ran: list[str] = []
    real_evaluate = stages.evaluate

    def evaluate(config, agent, *args, fallback: bool = True, **kwargs) -> stages.EvalResult:
        ran.append("snapshot" if fallback and agent.guard.use_snapshot() else "online")
        return real_evaluate(config, agent, *args, fallback=fallback, **kwargs)

    monkeypatch.setattr(stages, "evaluate", evaluate)
    result = finetune(drawer, tmp_path, drawer_dataset, progress=False)
    online_points = len(result.curve) - 1
    assert online_points >= 3
    # The offline evaluation, then one per point; where the snapshot acted since the last point
    # (the second point, here), the snapshot too, before the rule takes in the new evaluation.
    second = ["snapshot", "online"] if falls_back else ["online"]
    assert ran == ["online", "online", *second] + ["online"] * (online_points - 2)


def test_the_graph_demo_refuses_a_config_that_changes_the_environment(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The graph's nodes act on the task's defaults: the absolute-action study profiles (their
    env_kwargs) would record and pretrain on one action mode and act on another, so the graph
    refuses them before recording; in process the same profile records absolute targets."""
    code = main(["demo", "--config", "valve", "--profile", "bench_60k",
                 "--out", str(tmp_path / "graph")])
    assert code == 2
    assert "env_kwargs {'config': {'action_mode': 'absolute'}}" in capsys.readouterr().err
    assert not (tmp_path / "graph").exists()
    few = ["dataset.demonstrations=1", "dataset.noisy_trajectories=0"]
    for profile in ("bench_60k", "bench_60k_relative"):
        record(load_pipeline_config("valve", profile=profile, overrides=few),
               tmp_path / f"{profile}.zarr", progress=False)
    absolute = transitions(tmp_path / "bench_60k.zarr")["action"]
    relative = transitions(tmp_path / "bench_60k_relative.zarr")["action"]
    # a step is at most what the rate limit lets through (0.15 of 0.25 rad); a target is anywhere
    assert np.abs(relative).max() <= 0.6 + 1e-6 < np.abs(absolute).max()


def test_a_dataset_in_another_action_mode_is_refused(tmp_path: Path) -> None:
    """Steps read as targets (or the reverse) would train a policy that commands something else;
    a store from before relative actions existed holds absolute targets."""
    few = ["dataset.demonstrations=1", "dataset.noisy_trajectories=0"]
    record(load_pipeline_config("valve", profile="bench_tiny", overrides=few),
           tmp_path / "relative.zarr", progress=False)
    absolute = load_pipeline_config("valve", profile="bench_60k")
    with pytest.raises(DatasetError, match=r"relative.zarr: actions recorded in relative mode, "
                                           r"robot_rl/ValveTurn-v0 acts in absolute mode"):
        pretrain(absolute, tmp_path / "relative.zarr", tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()
    old = EpisodeStore.create(tmp_path / "old.zarr", robot="dclaw", task="valve",
                              calibration_digest="x", units={})
    check_action_mode(old, "absolute", "test")
    with pytest.raises(DatasetError, match="actions recorded in absolute mode"):
        check_action_mode(old, "relative", "test")
