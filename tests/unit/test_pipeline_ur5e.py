"""The third robot through the whole in-process pipeline (docs/your-robot.md's last step): the
UR5e records with the scripted expert, pretrains, fine-tunes and evaluates on the drawer with the
same learner, every command gated by the supervisor with the UR5e's limits."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from robot_rl.cli import main
from robot_rl.data import EpisodeStore
from robot_rl.learning.checkpoint import load_checkpoint


def test_the_ur5e_runs_the_pipeline_in_process(tmp_path: Path, one_torch_thread: None,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "ur5e"
    code = main(["demo", "--config", "drawer", "--profile", "bench_tiny", "--set", "robot=ur5e",
                 "--set", "dataset.noise_std=0.3", "--in-process", "--quiet", "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    report = json.loads((out / "report.json").read_text())
    assert report["robot"] == "ur5e" and report["task"] == "robot_rl/DrawerOpen-v0"
    assert report["demo_success_rate"] == 1.0  # the scripted expert on the UR5e
    assert sum(report["safety"].values()) > 0  # verdicts of the supervisor
    assert "on ur5e" in (out / "report.md").read_text()
    store = EpisodeStore.open(out / "dataset.zarr")
    assert store.attrs["robot"] == "ur5e" and store.n_episodes == 2
    state = load_checkpoint(out / "finetuned.pt")
    assert state["config"]["robot"] == "ur5e"
