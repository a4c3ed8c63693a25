"""The pipeline's stages: a dataset that does not fit the task is refused before training; online
evaluations feed the collapse guard's fallback rule the policy being fine-tuned."""

from __future__ import annotations

import csv
import dataclasses
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from robot_rl.cli import main
from robot_rl.config import load_config
from robot_rl.data import DatasetError, EpisodeStore, transitions
from robot_rl.data.transition_arrays import check_action_mode
from robot_rl.learning.checkpoint import (
    CheckpointError,
    check_checkpoint_action_mode,
    checkpoint_action_mode,
    load_checkpoint,
)
from robot_rl.learning.guard import CollapseGuard
from robot_rl.pipeline import stages
from robot_rl.pipeline.stages import finetune, pretrain, record
from robot_rl.robot_config import load_robot
from robot_rl.run_config import PipelineConfig, load_pipeline_config
from robot_rl.tasks.valve import ValveTask


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
           tmp_path / "velocity.zarr", progress=False)
    absolute = load_pipeline_config("valve", profile="bench_60k")
    with pytest.raises(DatasetError, match=r"velocity.zarr: actions recorded in velocity mode, "
                                           r"robot_rl/ValveTurn-v0 acts in absolute mode"):
        pretrain(absolute, tmp_path / "velocity.zarr", tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()
    old = EpisodeStore.create(tmp_path / "old.zarr", robot="dclaw", task="valve",
                              calibration_digest="x", units={})
    check_action_mode(old, "absolute", "test")
    with pytest.raises(DatasetError, match="actions recorded in absolute mode"):
        check_action_mode(old, "relative", "test")


# ---- no command destroys what an earlier one wrote ---------------------------------------------
TINY = ["--config", "drawer", "--profile", "bench_tiny", "--quiet"]


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def one_line_error(err: str, *parts: str) -> None:
    assert err.count("\n") == 1 and "Traceback" not in err, err
    for part in parts:
        assert part in err, (part, err)


def test_record_appends_to_its_own_dataset_and_refuses_any_other_path(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "d.zarr"
    assert cli(capsys, "record", *TINY, "--out", str(path))[0] == 0
    code, out, _ = cli(capsys, "record", *TINY, "--out", str(path))
    assert code == 0 and "(appended: it now holds 4 episodes)" in out
    store = EpisodeStore.open(path)
    assert [store.episode_info(i)["seed"] for i in range(4)] == [0, 1, 2, 3]  # seeds continue
    assert [store.episode_info(i)["kind"] for i in range(4)] == ["clean", "noisy"] * 2
    assert not np.array_equal(store.episode(3)["action"][:5], store.episode(1)["action"][:5])
    before = sorted(p.relative_to(path) for p in path.rglob("*"))
    code, _, err = cli(capsys, "record", "--config", "valve", "--profile", "bench_tiny",
                       "--quiet", "--out", str(path))
    assert code == 1
    one_line_error(err, f"{path}: recorded with robot 'arm6' (this one: 'dclaw'); task "
                        f"'robot_rl/DrawerOpen-v0'", "appending would mix two datasets")
    assert sorted(p.relative_to(path) for p in path.rglob("*")) == before
    notes = tmp_path / "notes.txt"
    notes.write_text("lab notes")
    for extra in ([], ["--overwrite"]):
        code, _, err = cli(capsys, "record", *TINY, "--out", str(notes), *extra)
        assert code == 1
        one_line_error(err, f"{notes}: is a file, not a dataset")
    assert notes.read_text() == "lab notes"
    code, out, _ = cli(capsys, "record", *TINY, "--out", str(path), "--overwrite")
    assert code == 0 and "appended" not in out and EpisodeStore.open(path).n_episodes == 2


def test_pretrain_and_finetune_refuse_to_replace_what_an_earlier_run_wrote(
        drawer_dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    pretrain_args = ["pretrain", *TINY, "--dataset", str(drawer_dataset), "--out", str(run)]
    assert cli(capsys, *pretrain_args)[0] == 0
    offline = (run / "offline.pt").read_bytes()
    code, _, err = cli(capsys, *pretrain_args, "--set", "pretrain.updates=10")
    assert code == 1
    one_line_error(err, f"{run / 'offline.pt'}: already exists", "pass --overwrite")
    assert (run / "offline.pt").read_bytes() == offline
    finetune_args = ["finetune", *TINY, "--run", str(run), "--dataset", str(drawer_dataset)]
    # an earlier fine-tuning's outputs, each alone (refused before anything runs)
    earlier = EpisodeStore.create(run / "online.zarr", robot="arm6", task="earlier",
                                  calibration_digest="c", units={})
    earlier.add_episode({"reward": np.ones(3, np.float32)})
    earlier.close()
    code, _, err = cli(capsys, *finetune_args)
    assert code == 1
    one_line_error(err, f"{run / 'online.zarr'}: already exists", "pass --overwrite")
    assert EpisodeStore.open(run / "online.zarr").attrs["task"] == "earlier"
    shutil.move(run / "online.zarr", tmp_path / "kept.zarr")
    (run / "finetuned.pt").write_bytes(b"an earlier policy")
    code, _, err = cli(capsys, *finetune_args)
    assert code == 1
    one_line_error(err, f"{run / 'finetuned.pt'}: already exists", "pass --overwrite")
    assert (run / "finetuned.pt").read_bytes() == b"an earlier policy"
    shutil.move(tmp_path / "kept.zarr", run / "online.zarr")
    # --overwrite starts each over, its log too
    assert cli(capsys, *pretrain_args, "--overwrite")[0] == 0
    with open(run / "pretrain" / "metrics.csv", newline="") as f:
        assert [r["step"] for r in csv.DictReader(f) if r["name"] == "updates_per_s"] == \
            ["10", "20"]
    assert cli(capsys, *finetune_args, "--overwrite")[0] == 0
    assert EpisodeStore.open(run / "online.zarr").attrs["task"] == "robot_rl/DrawerOpen-v0"
    assert load_checkpoint(run / "finetuned.pt")["counters"]["online_env_steps"] >= 40


def test_eval_rebuilds_the_networks_from_the_checkpoint_and_refuses_another_task(
        drawer_dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """bench_tiny trains 16-unit networks: evaluated with the default config (256 units) or
    another profile, the networks come from the checkpoint's stored settings."""
    run = tmp_path / "run"
    assert cli(capsys, "pretrain", *TINY, "--dataset", str(drawer_dataset), "--out",
               str(run))[0] == 0
    checkpoint = str(run / "offline.pt")
    for config in ([], ["--config", "drawer"]):
        code, out, _ = cli(capsys, "eval", "--checkpoint", checkpoint, "--episodes", "1",
                           "--quiet", *config)
        assert code == 0 and out.startswith(f"{checkpoint}: success ") and "over 1 episodes" in out
    code, _, err = cli(capsys, "eval", "--checkpoint", checkpoint, "--config", "valve",
                       "--episodes", "1", "--quiet")
    assert code == 1
    one_line_error(err, f"checkpoint error: {checkpoint}: trained for robot_rl/DrawerOpen-v0 "
                        f"(27 observation values, 6 actions), not for robot_rl/ValveTurn-v0 "
                        f"(49 observation values, 9 actions)")
    code, _, err = cli(capsys, "eval", "--checkpoint", str(run / "nope.pt"), "--quiet")
    assert code == 1
    one_line_error(err, f"{run / 'nope.pt'}: no such checkpoint")
    for episodes in ("-3", "0"):
        with pytest.raises(SystemExit) as exit_code:
            main(["eval", "--checkpoint", checkpoint, "--episodes", episodes])
        assert exit_code.value.code == 2
        assert f"--episodes: expected a whole number >= 1, got '{episodes}'" in \
            capsys.readouterr().err
    # fine-tuning keeps the command line's settings: networks of another shape are refused
    code, _, err = cli(capsys, "finetune", *TINY, "--run", str(run), "--dataset",
                       str(drawer_dataset), "--set", "awac.actor_hidden_sizes=[8, 8]")
    assert code == 1
    one_line_error(err, f"{checkpoint}: actor.trunk.layers.0.weight is [16, 27] in the "
                        f"checkpoint, [8, 27]", "awac.actor_hidden_sizes [16, 16] (this config: "
                                                "[8, 8])")
    assert not (run / "online.zarr").exists()


def test_a_checkpoint_names_its_action_mode_and_one_of_another_mode_is_refused(
        drawer_dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A config that leaves the action mode to the task's default says nothing once the default
    changes (the valve's went from relative to velocity): the checkpoint names the mode it
    learned with, and a policy of steps is never run as one of targets. One saved before
    checkpoints named it trained on its task's default of the time: read so where that default
    never changed (the drawer's), refused where it did (the valve's)."""
    run = tmp_path / "run"
    assert cli(capsys, "pretrain", *TINY, "--dataset", str(drawer_dataset), "--out",
               str(run))[0] == 0
    state = torch.load(run / "offline.pt", weights_only=True)
    assert state["action_mode"] == "absolute" and state["config"]["env_kwargs"] == {}
    other, unnamed = tmp_path / "relative.pt", tmp_path / "unnamed.pt"
    torch.save({**state, "action_mode": "relative"}, other)
    torch.save({k: v for k, v in state.items() if k != "action_mode"}, unnamed)
    code, _, err = cli(capsys, "eval", "--checkpoint", str(other), "--episodes", "1", "--quiet")
    assert code == 1
    one_line_error(err, f"{other}: trained with relative actions, robot_rl/DrawerOpen-v0 acts "
                        f"with absolute actions")
    code, out, _ = cli(capsys, "eval", "--checkpoint", str(unnamed), "--episodes", "1", "--quiet")
    assert code == 0 and out.startswith(f"{unnamed}: success ")
    old = load_checkpoint(unnamed)
    assert checkpoint_action_mode(old) is None
    valve = ValveTask(load_robot("dclaw"))
    with pytest.raises(CheckpointError, match=r"unnamed.pt: names no action mode \(saved before "
                                              r"checkpoints recorded it\), and task valve has "
                                              r"changed its default since"):
        check_checkpoint_action_mode(old, valve.actions.mode, "task valve",
                                     valve.unnamed_action_mode)
    named = {**state, "config": {**state["config"],
                                 "env_kwargs": {"config": {"action_mode": "absolute"}}}}
    torch.save({k: v for k, v in named.items() if k != "action_mode"}, unnamed)
    assert checkpoint_action_mode(load_checkpoint(unnamed)) == "absolute"  # its config names it


def test_pretrain_refuses_a_dataset_with_a_lost_chunk(drawer_dataset: Path, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    """The issue's case: the reward chunk deleted, and pretrain trained on rewards of +-3e38."""
    damaged = tmp_path / "damaged.zarr"
    shutil.copytree(drawer_dataset, damaged)
    (damaged / "data" / "reward" / "0").unlink()
    code, _, err = cli(capsys, "pretrain", *TINY, "--dataset", str(damaged), "--out",
                       str(tmp_path / "run"))
    assert code == 1
    one_line_error(err, f"{damaged}: data/reward: chunk 0 (rows 0:", "is missing")
    assert not (tmp_path / "run").exists()


def test_demo_refuses_a_folder_that_holds_files(tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    for mode in ([], ["--in-process"]):
        code, _, err = cli(capsys, "demo", *TINY, *mode, "--out", str(tmp_path))
        assert code == 1
        one_line_error(err, f"{tmp_path}: already holds files (notes.txt); pass --overwrite")
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]
