"""`robot-rl deploy CHECKPOINT`: the actor node acts with a checkpoint's policy on the twin, through
the safety node, with no learner; the report holds the episodes and the supervisor's verdicts."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest
from helpers.checkpoints import tiny_drawer_checkpoint

from robot_rl.cli import main

pytestmark = pytest.mark.graph


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_drawer_checkpoint(tmp_path_factory.mktemp("run"))


def test_deploy_runs_the_policy_through_the_supervisor_and_reports(
        checkpoint: Path, tmp_path: Path, ros_domain: int, capsys) -> None:
    out = tmp_path / "deploy"
    assert main(["deploy", str(checkpoint), "--episodes", "2", "--out", str(out), "--quiet",
                 "seed:=3"]) == 0
    report = json.loads((out / "deploy.json").read_text())
    assert (report["task"], report["robot"], report["mode"]) == ("drawer", "arm6", "twin")
    with open(out / "episodes.csv", newline="") as stream:
        rows = list(csv.DictReader(stream))
    assert len(rows) >= 2 and len(report["episodes"]) == 2
    assert [int(r["steps"]) for r in report["episodes"]] == [80, 80]  # the drawer's episodes
    assert report["success_rate"] == sum(int(r["success"]) for r in rows[:2]) / 2
    safety = report["safety"]
    # every one of the actor's commands went through the supervisor, which said so
    assert safety["commands"] >= 160 and safety["verdict_pass"] > 0
    log = (out / "graph.log").read_text()
    assert f"acting with {checkpoint.resolve()}" in log
    assert "learner" not in log  # no training anywhere
    assert "Safety supervisor verdicts: " in (out / "deploy.md").read_text()
    capsys.readouterr()
    # nothing replaced unasked
    assert main(["deploy", str(checkpoint), "--episodes", "1", "--out", str(out)]) == 1
    assert "already exists (the output of an earlier deploy)" in capsys.readouterr().err


def test_the_actor_refuses_a_checkpoint_of_another_task(checkpoint: Path,
                                                        ros_domain: int) -> None:
    done = subprocess.run(
        [str(Path(sys.executable).parent / "actor_node"), "--ros-args", "-p", "task:=valve",
         "-p", f"checkpoint:={checkpoint}"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert "parameter checkpoint: " in done.stderr
    assert "take 27 observations and give 6 actions; task valve needs 49 and 9" in done.stderr


def test_deploy_refuses_a_file_that_is_not_a_checkpoint(tmp_path: Path, capsys) -> None:
    junk = tmp_path / "policy.pt"
    junk.write_text("not a checkpoint")
    assert main(["deploy", str(junk), "--out", str(tmp_path / "d")]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(junk) in err
    assert not (tmp_path / "d").exists()
