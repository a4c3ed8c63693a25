"""Where the learner trains (``AWACConfig.device``): one resolver, so a GPU that is not there is an
error naming the setting when the agent is built, not a CUDA traceback at its first update."""

from __future__ import annotations

import torch

from robot_rl.learning.config import check_device_name


def resolve_device(name: str | torch.device, where: str = "awac.device") -> torch.device:
    """The torch device for a name: ``auto`` is the first CUDA device when torch sees one, else the
    CPU. ValueError when a CUDA device is asked for and this torch cannot reach it."""
    if isinstance(name, torch.device):
        name = str(name)
    check_device_name(name, where)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            build = "a CPU-only build" if torch.version.cuda is None else f"CUDA {torch.version.cuda}"
            raise ValueError(f"{where}: {name!r}, but torch {torch.__version__} ({build}) sees no "
                             f"CUDA device; use 'cpu', or 'auto' to take a GPU only where there is one")
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            raise ValueError(f"{where}: {name!r}, but torch sees {count} CUDA device(s) "
                             f"(cuda:0 to cuda:{count - 1})")
    return device
