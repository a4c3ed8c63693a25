"""Scalar metrics to a plain CSV (long format: step, wall_time_s, name, value) and TensorBoard."""

from __future__ import annotations

import csv
import math
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

UPDATES_PER_S = "updates_per_s"  # the metric's name in every learner's log


def episode_metrics(episode_return: float, success: bool) -> dict[str, float]:
    """An online episode's scalars, named alike in every learner's log."""
    return {"episode_return": float(episode_return), "episode_success": float(success)}


class MetricsLogger:
    """Long-format CSV keeps working when a run starts logging a new metric halfway through."""

    def __init__(self, run_dir: str | Path, csv_enabled: bool = True,
                 tensorboard: bool = True, csv_name: str = "metrics.csv") -> None:
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._csv_file: Any = None
        self._csv: Any = None
        self._tb: Any = None
        if csv_enabled:
            path = self.run_dir / csv_name
            is_new = not path.exists() or path.stat().st_size == 0
            self._csv_file = open(path, "a", newline="")  # noqa: SIM115 - closed in close()
            self._csv = csv.writer(self._csv_file)
            if is_new:
                self._csv.writerow(["step", "wall_time_s", "name", "value"])
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter  # imported only when wanted

            self._tb = SummaryWriter(log_dir=str(self.run_dir / "tensorboard"))

    def log(self, step: int, metrics: Mapping[str, float], prefix: str = "") -> None:
        wall = time.time()
        for name, value in metrics.items():
            key = f"{prefix}{name}"
            if self._csv is not None:
                self._csv.writerow([int(step), f"{wall:.3f}", key, repr(float(value))])
            if self._tb is not None:
                self._tb.add_scalar(key, float(value), int(step), walltime=wall)

    def log_config(self, yaml_text: str, name: str = "config.yaml") -> Path:
        """The run's config beside its scalars: written to ``name`` (replacing the last start's:
        a resumed run records the config it resumed with) and to TensorBoard's text tab."""
        path = self.run_dir / name
        path.write_text(yaml_text)
        if self._tb is not None:
            self._tb.add_text("config", f"```yaml\n{yaml_text}```")  # markdown: kept verbatim
        return path

    def flush(self) -> None:
        if self._csv_file is not None:
            self._csv_file.flush()
        if self._tb is not None:
            self._tb.flush()

    def close(self) -> None:
        if self._csv_file is not None:
            self._csv_file.close()
            self._csv_file = self._csv = None
        if self._tb is not None:
            self._tb.close()
            self._tb = None

    def __enter__(self) -> MetricsLogger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class UpdateRate:
    """Gradient updates per second spent updating, over the updates since the last read: acting,
    evaluations and idle waits are left out, so the figure compares with the learner bench's."""

    def __init__(self) -> None:
        self._updates, self._seconds = 0, 0.0

    def add(self, updates: int, seconds: float) -> None:
        self._updates += updates
        self._seconds += seconds

    @contextmanager
    def timing(self, updates: int = 1) -> Iterator[None]:
        """Counts ``updates`` updates and the time the block takes."""
        started = time.perf_counter()
        yield
        self.add(updates, time.perf_counter() - started)

    def read(self) -> float:
        """The rate since the last read (nan when no time was counted), and a fresh count."""
        rate = self._updates / self._seconds if self._seconds > 0 else math.nan
        self._updates, self._seconds = 0, 0.0
        return rate
