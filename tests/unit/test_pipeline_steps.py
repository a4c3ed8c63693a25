"""The pipeline run step by step as a user runs it: finetune continues a run (--resume) with its
online data kept; `robot-rl report` writes the demo's report for it; a short pretrain still
leaves TensorBoard metrics; the plot's legend covers no data; `robot-rl --version`."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from robot_rl.cli import main
from robot_rl.data import EpisodeStore
from robot_rl.learning.checkpoint import load_checkpoint
from robot_rl.pipeline import stages
from robot_rl.pipeline.report import CurvePoint, Report
from robot_rl.run_config import load_pipeline_config

TINY = ["--config", "drawer", "--profile", "bench_tiny", "--quiet"]


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("run")
    assert main(["record", "--out", str(run / "dataset.zarr"), *TINY]) == 0
    assert main(["pretrain", "--dataset", str(run / "dataset.zarr"), "--out", str(run),
                 *TINY]) == 0
    return run


@pytest.fixture
def run(pretrained: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "run"
    shutil.copytree(pretrained, copy)
    return copy


def online_episodes(run: Path) -> tuple[list[dict], list[np.ndarray]]:
    with EpisodeStore.open(run / "online.zarr") as store:
        return store.episode_infos(), [store.episode(i)["action"]
                                       for i in range(store.n_episodes)]


def test_resume_continues_the_run_with_its_online_data_kept(run: Path,
                                                             monkeypatch: pytest.MonkeyPatch,
                                                             capsys) -> None:
    assert main(["finetune", "--run", str(run), *TINY]) == 0
    infos, actions = online_episodes(run)
    first = load_checkpoint(run / "finetuned.pt")
    steps = int(first["counters"]["online_env_steps"])
    guard_updates = first["agent"]["guard"]["online_updates"]
    assert steps > 0 and guard_updates > 0
    # a second plain finetune is refused, naming the third choice
    assert main(["finetune", "--run", str(run), *TINY]) == 1
    assert "--resume to continue that run" in capsys.readouterr().err

    replayed: list[int] = []
    real = stages.batch_from_steps
    monkeypatch.setattr(stages, "batch_from_steps",
                        lambda s: replayed.append(len(s["reward"])) or real(s))
    assert main(["finetune", "--run", str(run), "--resume", *TINY]) == 0
    new_infos, new_actions = online_episodes(run)
    # the first session's episodes are still there, unchanged, and the new ones follow them
    assert new_infos[:len(infos)] == infos and len(new_infos) > len(infos)
    assert all(np.array_equal(a, b) for a, b in zip(actions, new_actions))
    # ... and were back in the replay before the new session's own episodes
    assert replayed[:len(infos)] == [len(a) for a in actions]
    # the seeds carry on (no episode of the first session is replayed) and so does the count
    seeds = [i["seed"] for i in new_infos]
    assert len(set(seeds)) == len(seeds)
    second = load_checkpoint(run / "finetuned.pt")
    assert int(second["counters"]["online_env_steps"]) == sum(len(a) for a in new_actions) \
        > steps
    # the agent continued: its guard was not re-armed (its online update count went on)
    assert second["agent"]["guard"]["online_updates"] > guard_updates
    summary = json.loads((run / "finetune/summary.json").read_text())
    assert summary["sessions"] == 2 and summary["env_steps"] > steps
    assert [p["env_steps"] for p in summary["curve"]][0] == 0
    assert sorted(p["env_steps"] for p in summary["curve"]) == \
        [p["env_steps"] for p in summary["curve"]]


def test_resume_needs_an_earlier_run_and_excludes_overwrite(run: Path, capsys) -> None:
    assert main(["finetune", "--run", str(run), "--resume", *TINY]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "finetuned.pt: missing" in err
    with pytest.raises(SystemExit):  # argparse: not allowed with --overwrite
        main(["finetune", "--run", str(run), "--resume", "--overwrite", *TINY])


def test_report_writes_the_demos_report_for_a_step_by_step_run(run: Path, capsys) -> None:
    assert main(["finetune", "--run", str(run), *TINY]) == 0
    assert main(["report", "--run", str(run), "--quiet"]) == 0  # config: finetuned.pt's own
    text = (run / "report.md").read_text()
    assert "| scripted demonstrations | 100% |" in text or "| scripted demonstrations |" in text
    assert "Safety supervisor verdicts during the run: " in text and "pass " in text
    data = json.loads((run / "report.json").read_text())
    summary = json.loads((run / "finetune/summary.json").read_text())
    assert data["curve"] == summary["curve"] and data["safety"] == summary["safety"]
    assert (run / "learning_curve.png").stat().st_size > 0
    capsys.readouterr()
    assert main(["report", "--run", str(run), "--quiet"]) == 1  # nothing replaced unasked
    assert "already exists (an earlier report)" in capsys.readouterr().err


def test_a_pretrain_shorter_than_its_log_period_still_logs(pretrained: Path,
                                                           tmp_path: Path) -> None:
    """The quick profile: 200 updates logged every 250 left an empty TensorBoard log."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    config = load_pipeline_config("drawer", ["pretrain.updates=7",
                                             "pretrain.log_every_updates=250"], "bench_tiny")
    stages.pretrain(config, pretrained / "dataset.zarr", tmp_path, progress=False)
    events = EventAccumulator(str(tmp_path / "pretrain/tensorboard"))
    events.Reload()
    tags = events.Tags()["scalars"]
    assert tags, "no scalars in the TensorBoard log"
    assert [e.step for e in events.Scalars(tags[0])] == [7]


def test_the_legend_covers_no_data(tmp_path: Path) -> None:
    curve = [CurvePoint(s, r, 0.0) for s, r in ((0, 0.0), (500, 0.05), (1000, 0.95))]
    report = Report(task="t", seed=0, demo_success_rate=1.0, noisy_success_rate=0.5,
                    offline_success_rate=0.0, finetuned_success_rate=0.95, eval_episodes=10,
                    curve=curve, online_curve=curve, online_window_episodes=3)
    figure = report.figure()
    figure.canvas.draw()  # lays it out as savefig does
    renderer = figure.canvas.get_renderer()
    legends = [*figure.legends, *(ax.get_legend() for ax in figure.axes if ax.get_legend())]
    assert len(legends) == 1
    box = legends[0].get_window_extent(renderer)
    for ax in figure.axes:
        assert not box.overlaps(ax.get_window_extent(renderer))
    import matplotlib.pyplot as plt
    plt.close(figure)


def test_version(capsys) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.startswith("robot-rl ")


def test_dataset_tools_draw_progress_bars_unless_quiet(pretrained: Path, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    from robot_rl.data import tools

    bars: list[tuple[str, bool]] = []
    real = tools.tqdm

    def spy(*args, **kwargs):
        bars.append((kwargs.get("desc"), kwargs.get("disable")))
        return real(*args, **kwargs)

    monkeypatch.setattr(tools, "tqdm", spy)
    dataset = str(pretrained / "dataset.zarr")
    assert main(["dataset", "stats", dataset]) == 0
    assert main(["dataset", "merge", dataset, "--out", str(tmp_path / "m.zarr")]) == 0
    assert main(["dataset", "filter", dataset, "--out", str(tmp_path / "f.zarr"), "--where",
                 "kind=clean", "--quiet"]) == 0
    assert bars == [("stats", False), ("merge", False), ("filter", True)]


def test_tiny_config_is_what_the_tests_think() -> None:
    config = load_pipeline_config("drawer", profile="bench_tiny")
    assert dataclasses.asdict(config.finetune)["env_steps"] == 40
