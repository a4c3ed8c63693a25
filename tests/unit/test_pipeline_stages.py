"""The pipeline's stages refuse a dataset that does not fit the task before they train on it."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from robot_rl.cli import main
from robot_rl.data import DatasetError
from robot_rl.pipeline.config import load_pipeline_config
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
