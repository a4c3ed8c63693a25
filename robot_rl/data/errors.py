"""Errors of the data layer: each names the dataset path and what is wrong."""

from __future__ import annotations

import os


class DatasetError(Exception):
    """A dataset that cannot be used as asked (missing, truncated, corrupted, wrong version)."""

    def __init__(self, path: str | os.PathLike[str], problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = str(path)
        self.problem = problem


class SchemaError(DatasetError, ValueError):
    """Steps whose keys, dtypes or per-step shapes differ from the dataset's."""


def first_line(err: BaseException) -> str:
    """An exception as one line: its type and the first line of its message (zarr, blosc and
    torch write several lines; an error of ours names the file in one)."""
    text = str(err).strip()
    head = text.splitlines()[0] if text else ""
    return f"{type(err).__name__}: {head}" if head else type(err).__name__
