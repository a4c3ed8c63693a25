"""Feature normalisation from dataset statistics: x_n = (x - mean) / max(std, floor)."""

from __future__ import annotations

import numpy as np
import torch


class Normalizer:
    """Fixed per-feature affine normaliser of observations.

    Statistics come from the offline dataset and stay frozen, so a policy trained offline sees the
    same inputs online. The std floor keeps constant features (a joint that never moved) finite.
    Actions get no data statistics: the task's ``ActionMapping`` already maps them to [-1, 1] from
    the calibration's limits, the policy's support. Statistics of the demonstrations would either
    leave out the safe range they never visited (min-max) or unbound it (z-scores).
    """

    def __init__(self, mean: np.ndarray, std: np.ndarray, std_floor: float = 1e-3) -> None:
        mean = np.asarray(mean, dtype=np.float32).reshape(-1)
        std = np.asarray(std, dtype=np.float32).reshape(-1)
        if mean.shape != std.shape:
            raise ValueError(f"Normalizer: mean shape {mean.shape} != std shape {std.shape}")
        if not (np.all(np.isfinite(mean)) and np.all(np.isfinite(std))):
            raise ValueError("Normalizer: mean and std must be finite")
        self.std_floor = float(std_floor)
        self.mean = torch.from_numpy(mean.copy())
        self.std = torch.from_numpy(np.maximum(std, self.std_floor))

    @classmethod
    def from_data(cls, data: np.ndarray, std_floor: float = 1e-3) -> Normalizer:
        """Statistics of a (N, dim) array, computed in float64."""
        data = np.asarray(data, dtype=np.float64)
        if data.ndim != 2 or data.shape[0] == 0:
            raise ValueError(f"Normalizer.from_data: expected a non-empty (N, dim) array, "
                             f"got shape {data.shape}")
        return cls(data.mean(axis=0), data.std(axis=0), std_floor)

    @classmethod
    def identity(cls, dim: int) -> Normalizer:
        return cls(np.zeros(dim), np.ones(dim))

    @property
    def dim(self) -> int:
        return int(self.mean.shape[0])

    def to(self, device: torch.device | str) -> Normalizer:
        self.mean, self.std = self.mean.to(device), self.std.to(device)
        return self

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std

    def state_dict(self) -> dict[str, torch.Tensor | float]:
        return {"mean": self.mean.cpu().clone(), "std": self.std.cpu().clone(),
                "std_floor": self.std_floor}

    @classmethod
    def from_state_dict(cls, state: dict[str, torch.Tensor | float]) -> Normalizer:
        try:
            mean, std, floor = state["mean"], state["std"], state["std_floor"]
        except KeyError as err:
            raise KeyError(f"Normalizer state: missing key {err}") from err
        norm = cls(np.zeros(1), np.ones(1), float(floor))  # type: ignore[arg-type]
        norm.mean = torch.as_tensor(mean, dtype=torch.float32).clone()
        norm.std = torch.as_tensor(std, dtype=torch.float32).clone()
        return norm
