"""The learner node's episodes.csv: new columns for who acted, an older log kept as it was."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from robot_rl.nodes.learner import (
    EPISODE_LOG_COLUMNS,
    EPISODE_LOG_COLUMNS_V1,
    _open_episode_log,
)


def test_a_new_log_has_the_intervention_columns(tmp_path: Path) -> None:
    stream, _, width = _open_episode_log(tmp_path / "episodes.csv")
    stream.close()
    header = (tmp_path / "episodes.csv").read_text().splitlines()[0].split(",")
    assert tuple(header) == EPISODE_LOG_COLUMNS and width == len(EPISODE_LOG_COLUMNS)
    assert {"takeovers", "intervention_steps", "true_success"} <= set(header)


def test_a_log_from_before_keeps_its_columns(tmp_path: Path) -> None:
    """Appending the new, longer rows under the old header would misalign every column."""
    path = tmp_path / "episodes.csv"
    with open(path, "w", newline="") as f:
        csv.writer(f).writerow(EPISODE_LOG_COLUMNS_V1)
    stream, writer, width = _open_episode_log(path)
    writer.writerow(tuple(range(len(EPISODE_LOG_COLUMNS)))[:width])
    stream.close()
    rows = list(csv.reader(path.read_text().splitlines()))
    assert width == len(EPISODE_LOG_COLUMNS_V1) == 8
    assert [len(r) for r in rows] == [8, 8]


def test_a_file_that_is_no_episode_log_is_refused_by_name(tmp_path: Path) -> None:
    path = tmp_path / "episodes.csv"
    path.write_text("name,value\nx,1\n")
    with pytest.raises(ValueError, match=r"episodes\.csv: header \['name', 'value'\]"):
        _open_episode_log(path)
    assert path.read_text() == "name,value\nx,1\n"  # untouched
