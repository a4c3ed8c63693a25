"""``robot-rl reward``: label, train, eval and export from the command line, and its errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from helpers.reward import store as _store

from robot_rl.cli import main
from robot_rl.pipeline.stages import record
from robot_rl.reward import load_classifier
from robot_rl.run_config import load_pipeline_config


def test_label_train_eval_export(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                 one_torch_thread: None) -> None:
    store = _store(tmp_path / "d.zarr", [10] * 12)        # even episodes succeed
    data = str(store.path)
    store.close()
    labels, model = tmp_path / "l.yaml", tmp_path / "c.safetensors"
    assert main(["reward", "label", data, "-o", str(labels), "--from-reward",
                 "--episodes", "0-7"]) == 0
    assert "8 episodes labelled, 8 success frames" in capsys.readouterr().out
    assert main(["reward", "train", data, "--labels", str(labels), "-o", str(model),
                 "--input", "observation[0:1]", "--hidden", "8", "--updates", "300"]) == 0
    assert "8 success and 72 failure frames" in capsys.readouterr().out
    assert load_classifier(model).inputs == [("observation", 0, 1)]
    assert main(["reward", "eval", str(model), data, "--from-reward", "--episodes", "8-11",
                 "--json"]) == 0
    scores = json.loads(capsys.readouterr().out)
    assert scores["frames"]["tp"] + scores["frames"]["fn"] == 4   # 2 held-out successes x 2
    assert scores["episodes"]["tp"] == 2 and scores["episodes"]["fp"] == 0
    assert main(["reward", "eval", str(model), data, "--labels", str(labels)]) == 0
    assert "precision" in capsys.readouterr().out
    assert main(["reward", "export", str(model), "-o", str(tmp_path / "c.pt2")]) == 0
    assert (tmp_path / "c.pt2").stat().st_size > 0
    hand = tmp_path / "hand.yaml"
    assert main(["reward", "label", data, "-o", str(hand), "--success", "0:8-9",
                 "--success", "2:9", "--failure", "1"]) == 0
    assert main(["reward", "label", data, "-o", str(hand), "--failure", "1"]) == 1
    assert "already exists; pass --overwrite" in capsys.readouterr().err


@pytest.mark.parametrize("args, message", [
    (["label", "{d}", "-o", "{t}/x.yaml", "--success", "0:5-40"], "not within its frames 0-9"),
    (["label", "{d}", "-o", "{t}/x.yaml", "--success", "zero"], "expected EPISODE:FIRST-LAST"),
    (["label", "{d}", "-o", "{t}/x.yaml"], "give --success"),
    (["train", "{d}", "--labels", "{t}/missing.yaml", "-o", "{t}/c"], "labels do not load"),
    (["eval", "{t}/missing.safetensors", "{d}", "--from-reward"], "not a success classifier"),
])
def test_errors_are_one_line_naming_the_input(args: list[str], message: str, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    store = _store(tmp_path / "d.zarr", [10, 10])
    store.close()
    filled = [a.format(d=tmp_path / "d.zarr", t=tmp_path) for a in args]
    assert main(["reward", *filled]) != 0
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_named_fields_come_from_the_recorded_task(tmp_path: Path,
                                                  one_torch_thread: None) -> None:
    config = load_pipeline_config("valve", profile="bench_hil_tiny")
    record(config, tmp_path / "v.zarr", progress=False)
    labels, model = tmp_path / "l.yaml", tmp_path / "c.safetensors"
    assert main(["reward", "label", str(tmp_path / "v.zarr"), "-o", str(labels),
                 "--from-reward"]) == 0
    assert main(["reward", "train", str(tmp_path / "v.zarr"), "--labels", str(labels), "-o",
                 str(model), "--input", "observation.error_cos_sin", "--updates", "50",
                 "--hidden", "8", "--threshold", "0.5"]) == 0
    classifier = load_classifier(model)
    assert classifier.inputs == [("observation", 21, 23)] and classifier.threshold == 0.5
    assert np.isfinite(classifier.probability(np.zeros(2, np.float32)))
