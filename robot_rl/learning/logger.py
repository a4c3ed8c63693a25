"""Scalar metrics to a plain CSV (long format: step, wall_time_s, name, value) and TensorBoard."""

from __future__ import annotations

import csv
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any


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
