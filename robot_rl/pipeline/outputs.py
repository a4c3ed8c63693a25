"""What the pipeline's commands write, and the rule that none replaces an output unasked.

Every command that writes refuses, before it starts work, an output that is already there unless
it was given ``--overwrite`` (``overwrite=True`` from Python): a re-run must never silently
replace a dataset, a checkpoint or a report. Datasets are replaced only if they are zarr stores
(``robot_rl.data.store.remove_store``), never a file or another folder.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

OVERWRITE_HINT = "pass --overwrite (overwrite=True) to replace it"


class OutputExistsError(FileExistsError):
    """An output that is already there and would be replaced; the message names it."""

    def __init__(self, path: str | os.PathLike[str], problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = str(path)
        self.problem = problem


def refuse_existing(outputs: Iterable[tuple[Path, str]], overwrite: bool, hint: str) -> None:
    """Refuses the first output of ``(path, what it is)`` that exists, unless ``overwrite``."""
    if overwrite:
        return
    for path, what in outputs:
        if path.exists() or path.is_symlink():
            raise OutputExistsError(path, f"already exists ({what}); {hint}")


def clear_log(folder: Path) -> None:
    """Removes a stage's own log files (metrics.csv, config.yaml, TensorBoard events) before the
    stage is run again with --overwrite, so that its log holds one run; nothing else is touched."""
    for name in ("metrics.csv", "config.yaml"):
        (folder / name).unlink(missing_ok=True)
    for events in (folder / "tensorboard").glob("events.out.tfevents.*"):
        events.unlink()
