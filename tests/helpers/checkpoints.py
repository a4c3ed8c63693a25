"""A small real policy checkpoint for tests that deploy one: the drawer's bench_tiny profile,
recorded by the scripted expert and pretrained offline through robot-rl's own commands."""

from __future__ import annotations

from pathlib import Path

TINY = ["--config", "drawer", "--profile", "bench_tiny", "--quiet"]


def tiny_drawer_checkpoint(run: Path) -> Path:
    """``robot-rl record`` then ``robot-rl pretrain`` into ``run``; the offline policy's path."""
    from robot_rl.cli import main

    assert main(["record", "--out", str(run / "dataset.zarr"), *TINY]) == 0
    assert main(["pretrain", "--dataset", str(run / "dataset.zarr"), "--out", str(run),
                 *TINY]) == 0
    return run / "offline.pt"
