"""bench/learner_throughput.py's FLOP counts against torch's own count of one real update.

The bench divides each learner's rate by these counts to say how close to the machine's GEMM rate
its update runs; a miscount would misstate the comparison, so it is checked here."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

REPO = Path(__file__).resolve().parents[2]
SHAPES = [((64, 64), 32), ((32, 48, 40), 16)]  # small: the count does not depend on the size


def _load_bench():
    spec = importlib.util.spec_from_file_location("bench_learner_throughput",
                                                  REPO / "bench" / "learner_throughput.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


bench = _load_bench()


def counted_flops(step) -> int:
    step(0)  # the first update builds optimiser state; count a later one
    with FlopCounterMode(display=False) as counter:
        step(1)
    return counter.get_total_flops()


@pytest.mark.parametrize(("hidden", "batch_size"), SHAPES)
def test_robot_rl_count_is_its_matrix_products_plus_the_q_heads(
        hidden: tuple[int, ...], batch_size: int) -> None:
    """The critics' one-output heads run as multiply-and-sum (networks._ensemble_head), which
    torch does not count as matrix products; the bench counts them as the products they compute:
    2 FLOPs per MAC x 2 critics x (3 forwards + the weight and the input gradient) x h_last MACs
    per sample."""
    heads = 2 * 2 * (3 + 2) * hidden[-1] * batch_size
    step = bench.ours(hidden, batch_size, "fp32")
    assert counted_flops(step) + heads == bench.update_matmul_flops(hidden, batch_size)


@pytest.mark.parametrize(("hidden", "batch_size"), SHAPES)
def test_d3rlpy_count_is_its_matrix_products(hidden: tuple[int, ...], batch_size: int) -> None:
    step = bench.d3rlpy_awac(hidden, batch_size)
    assert counted_flops(step) == bench.update_matmul_flops(hidden, batch_size, learner="d3rlpy")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_a_gpu_asked_for_where_there_is_none_is_refused_by_name() -> None:
    done = subprocess.run([sys.executable, str(REPO / "bench" / "learner_throughput.py"),
                           "--device", "cuda", "--quick"], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 2
    assert "--device 'cuda'" in done.stderr and "sees no CUDA device" in done.stderr
    assert "torch" not in done.stdout  # refused before measuring anything
