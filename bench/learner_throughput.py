"""Gradient updates per second: robot_rl's AWAC against d3rlpy 2.8's AWAC, same shapes, same run.

Shapes: obs 39, act 9 (the valve task), twin critics, 2x256 and 3x256 networks, batch 256 and 1024.
Batches are pre-sampled tensors for both learners, so this measures the update itself. The learners
are measured in alternating rounds and the fastest round is reported: other processes on a shared
machine only ever slow a round down, and they move the figures more than the differences measured.

    PYTHONPATH=. python bench/learner_throughput.py [--quick] [--no-d3rlpy] [--bf16] [--compile]
                                                    [--threads N] [--cpu-time] [--allocator A]
                                                    [--device D]

More columns say how far the update could go: page faults per update, and for each learner the
share of this machine's matrix-multiply rate (a GEMM of the update's own hidden-layer shape,
measured in the same rounds) that its update's matrix products reach (`update_matmul_flops`
counts them: d3rlpy's update does 1.22x robot_rl's, one more actor and critic forward pass). A
last line gives each learner's fixed cost per update, measured at a shape too small to compute.

Memory allocation matters as much as the update's code on CPU: by default the script measures
twice, each time in a fresh process, with glibc's malloc defaults and with freed memory kept
(robot_rl.learning.memory, applied whenever robot_rl trains). Within a table both learners run
under the same setting; the last lines put robot_rl as it trains against d3rlpy as it ships.

--compile adds robot_rl with AWACConfig(compile=True); its compilation (15-60 s per shape) happens
in the warm-up, outside the measured rounds, and is printed.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

from robot_rl.learning import memory
from robot_rl.learning.awac import AWAC
from robot_rl.learning.config import AWACConfig

ROOT = Path(__file__).resolve().parents[1]
OBS_DIM, ACT_DIM = 39, 9
N_BATCHES = 8
DEVICE = torch.device("cpu")  # --device: where both learners, their batches and the GEMM run


def make_batches(batch_size: int, seed: int) -> list[dict[str, torch.Tensor]]:
    gen = torch.Generator().manual_seed(seed)
    batches = [
        {
            "obs": torch.randn(batch_size, OBS_DIM, generator=gen),
            "action": torch.rand(batch_size, ACT_DIM, generator=gen) * 2 - 1,
            "reward": -torch.rand(batch_size, generator=gen),
            "next_obs": torch.randn(batch_size, OBS_DIM, generator=gen),
            "done": (torch.rand(batch_size, generator=gen) < 0.01).float(),
        }
        for _ in range(N_BATCHES)
    ]
    return [{k: v.to(DEVICE) for k, v in b.items()} for b in batches]


def ours(hidden: tuple[int, ...], batch_size: int, precision: str,
         compile: bool = False) -> Callable[[int], None]:
    config = AWACConfig(actor_hidden_sizes=hidden, critic_hidden_sizes=hidden,
                        batch_size=batch_size, matmul_precision=precision, compile=compile)
    agent = AWAC(OBS_DIM, ACT_DIM, config, device=DEVICE)
    batches = make_batches(batch_size, seed=1)

    def step(i: int) -> None:
        agent.update(batches[i % N_BATCHES])  # metrics stay tensors unless read

    return step


def d3rlpy_device() -> str:
    """d3rlpy names devices with an index ("cpu:0", "cuda:0")."""
    return f"{DEVICE.type}:{0 if DEVICE.index is None else DEVICE.index}"


def synchronize() -> None:
    if DEVICE.type == "cuda":
        torch.cuda.synchronize(DEVICE)


def d3rlpy_awac(hidden: tuple[int, ...], batch_size: int) -> Callable[[int], None]:
    import d3rlpy
    from d3rlpy.models.encoders import VectorEncoderFactory
    from d3rlpy.torch_utility import TorchMiniBatch

    factory = VectorEncoderFactory(hidden_units=list(hidden))
    algo = d3rlpy.algos.AWACConfig(
        batch_size=batch_size, actor_encoder_factory=factory, critic_encoder_factory=factory
    ).create(device=d3rlpy_device())
    algo.create_impl((OBS_DIM,), ACT_DIM)
    batches = [
        TorchMiniBatch(
            observations=b["obs"], actions=b["action"], rewards=b["reward"].reshape(-1, 1),
            next_observations=b["next_obs"], next_actions=b["action"],
            returns_to_go=torch.zeros(batch_size, 1, device=DEVICE),
            terminals=b["done"].reshape(-1, 1),
            intervals=torch.ones(batch_size, 1, device=DEVICE), device=d3rlpy_device(),
        )
        for b in make_batches(batch_size, seed=1)
    ]

    def step(i: int) -> None:
        algo._impl.update(batches[i % N_BATCHES], i)  # d3rlpy's own update, minus its sampler

    return step


def update_matmul_flops(hidden: tuple[int, ...], batch_size: int, n_critics: int = 2,
                        learner: str = "robot_rl") -> float:
    """Multiply-add FLOPs of one update in its matrix products (per sample, F_a and F_c one
    forward pass of the actor and of one critic):
    robot_rl (awac.py): forwards: the actor on s' and s (2 F_a), the target critics on s', the
    critics on (s, a) and on (s, mu(s)) (3 N F_c);
    d3rlpy (AWACImpl): one more of each: the actor again on s to sample V's action (3 F_a), the
    critics again on (s, a) for the weights (4 N F_c);
    both: backwards: the critics' and the actor's weight gradients (N F_c + F_a) and input
    gradients below their first layers (N (F_c - in_c h_1) + F_a - in_a h_1)."""
    def macs(in_dim: int, out_dim: int) -> int:
        sizes = (in_dim, *hidden, out_dim)
        return sum(a * b for a, b in zip(sizes[:-1], sizes[1:]))

    critic, actor = macs(OBS_DIM + ACT_DIM, 1), macs(OBS_DIM, ACT_DIM)
    first_c, first_a = (OBS_DIM + ACT_DIM) * hidden[0], OBS_DIM * hidden[0]
    actor_forwards, critic_forwards = {"robot_rl": (2, 3), "d3rlpy": (3, 4)}[learner]
    per_sample = ((actor_forwards + 2) * actor - first_a
                  + n_critics * ((critic_forwards + 2) * critic - first_c))
    return 2.0 * per_sample * batch_size


def gemm(hidden: tuple[int, ...], batch_size: int) -> tuple[Callable[[int], None], float]:
    """The update's commonest product, the critics' hidden layer (2, B, h) @ (2, h, h), as a
    step, and its FLOPs: the rate this machine's BLAS reaches on the update's own shapes."""
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(2, batch_size, hidden[0], generator=gen).to(DEVICE)
    w = torch.randn(2, hidden[0], hidden[0], generator=gen).to(DEVICE)

    def step(i: int) -> None:
        torch.bmm(x, w)

    return step, 2.0 * 2 * batch_size * hidden[0] * hidden[0]


CLOCK = time.perf_counter  # --cpu-time: time.process_time


def rate(step: Callable[[int], None], updates: int) -> tuple[float, float]:
    """(updates per second, page faults per update) over `updates` calls."""
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    synchronize()
    start = CLOCK()
    for i in range(updates):
        step(i)
    synchronize()  # a GPU runs behind the host: count the work, not its queueing
    elapsed = CLOCK() - start
    return updates / elapsed, (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults) / updates


def measure(steps: dict[str, Callable[[int], None]], rounds: int, updates: int, warmup: int
            ) -> tuple[dict[str, float], dict[str, float], dict[str, float]]:
    """(fastest rate per learner, median page faults per update per learner, warm-up seconds
    per learner: compilation shows up there)."""
    warmup_s = {}
    for name, step in steps.items():
        start = time.perf_counter()
        rate(step, warmup)
        warmup_s[name] = time.perf_counter() - start
    samples: dict[str, list[tuple[float, float]]] = {name: [] for name in steps}
    for _ in range(rounds):
        for name, step in steps.items():
            samples[name].append(rate(step, updates))
    fastest = {name: max(r for r, _ in values) for name, values in samples.items()}
    faults = {name: statistics.median(f for _, f in values) for name, values in samples.items()}
    return fastest, faults, warmup_s


ALLOCATORS = {"glibc": "glibc's malloc defaults", "kept": "freed memory kept (robot_rl's default)"}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a short smoke run")
    parser.add_argument("--no-d3rlpy", action="store_true", help="measure robot_rl only")
    parser.add_argument("--bf16", action="store_true", help="also measure bf16 autocast")
    parser.add_argument("--compile", action="store_true",
                        help="also measure robot_rl with torch.compile (AWACConfig.compile)")
    parser.add_argument("--threads", type=int, default=0,
                        help="torch intra-op threads; 0 leaves torch's default")
    parser.add_argument("--cpu-time", action="store_true",
                        help="rates from this process's CPU time, not wall time: with --threads 1 "
                             "on a loaded machine, time spent waiting for a core is left out")
    parser.add_argument("--allocator", choices=("both", *ALLOCATORS), default="both",
                        help="'kept': this process keeps freed memory (learning.memory, what "
                             "robot_rl does when it trains); 'glibc': malloc's defaults, as d3rlpy "
                             "runs on its own; 'both' (default): one child process each, then "
                             "robot_rl kept against d3rlpy on glibc's defaults")
    parser.add_argument("--device", default="cpu",
                        help="where both learners, their batches and the GEMM run: cpu (default), "
                             "cuda or cuda:N; on a GPU each round waits for the device's queue "
                             "to empty before the clock is read")
    parser.add_argument("--json", type=Path, help=argparse.SUPPRESS)  # a child's rates
    args = parser.parse_args()
    try:
        device = torch.device(args.device)
    except RuntimeError as err:
        parser.error(f"--device {args.device!r}: {err}")
    if device.type not in ("cpu", "cuda"):
        parser.error(f"--device {args.device!r}: expected cpu, cuda or cuda:N")
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error(f"--device {args.device!r}: this torch ({torch.__version__}) sees no CUDA "
                     "device")
    if device.type == "cuda" and args.cpu_time:
        parser.error("--cpu-time measures host CPU time: it cannot time work on a GPU")
    return args


def measure_table(args: argparse.Namespace) -> dict[str, dict[str, float]]:
    """Print one table (both learners in alternating rounds) and return its rates by row."""
    rounds, updates, warmup = (6, 5, 3) if args.quick else (10, 25, 10)
    print(f"torch {torch.__version__} on {DEVICE}, {torch.get_num_threads()} threads, "
          f"{rounds} rounds x {updates} updates, fastest round, updates/s "
          f"({'CPU' if args.cpu_time else 'wall'} time); {ALLOCATORS[args.allocator]}; "
          f"load average {os.getloadavg()[0]:.2f}")
    ours_names = ["fp32"] + ["compiled"] * args.compile + ["bf16"] * args.bf16
    print(f"{'net':>6} {'batch':>5} " + " ".join(f"{n:>9}" for n in ours_names)
          + f" {'d3rlpy':>8} " + " ".join(f"{n[:5] + '/d3':>8}" for n in ours_names)
          + f" {'faults':>8} {'faults':>8} {'GEMM':>7} {'fp32':>7} {'d3rlpy':>7}")
    print(f"{'':>12} " + " ".join(" " * 9 for _ in ours_names) + f" {'':>8} "
          + " ".join(" " * 8 for _ in ours_names) + f" {'fp32':>8} {'d3rlpy':>8}"
          + f" {'GFLOP/s':>7} {'of GEMM':>7} {'of GEMM':>7}")
    table = {}
    for hidden in ((256, 256), (256, 256, 256)):
        for batch_size in (256, 1024):
            steps = {"fp32": ours(hidden, batch_size, "fp32")}
            if args.compile:
                steps["compiled"] = ours(hidden, batch_size, "fp32", compile=True)
            if args.bf16:
                steps["bf16"] = ours(hidden, batch_size, "bf16")
            if not args.no_d3rlpy:
                steps["d3rlpy"] = d3rlpy_awac(hidden, batch_size)
            steps["gemm"], gemm_flops = gemm(hidden, batch_size)
            r, faults, warmup_s = measure(steps, rounds, updates, warmup)
            gemm_rate = r.pop("gemm") * gemm_flops
            r.setdefault("d3rlpy", math.nan)
            faults.setdefault("d3rlpy", math.nan)
            of_gemm = {learner: r[name] * update_matmul_flops(hidden, batch_size, learner=learner)
                       / gemm_rate for learner, name in (("robot_rl", "fp32"), ("d3rlpy", "d3rlpy"))}
            row = f"{len(hidden)}x256 {batch_size:>5}"
            table[row] = r
            print(f"{row} " + " ".join(f"{r[n]:>9.1f}" for n in ours_names)
                  + f" {r['d3rlpy']:>8.1f} "
                  + " ".join(f"{r[n] / r['d3rlpy']:>8.2f}" for n in ours_names)
                  + f" {faults['fp32']:>8.0f} {faults['d3rlpy']:>8.0f} {gemm_rate / 1e9:>7.1f}"
                  + f" {of_gemm['robot_rl']:>7.0%} {of_gemm['d3rlpy']:>7.0%}", flush=True)
            if args.compile:
                print(f"{'':>12} compiled warm-up (compilation + {warmup} updates): "
                      f"{warmup_s['compiled']:.1f} s", flush=True)
    fixed_ms = fixed_cost_ms(args, rounds, updates, warmup)
    print(f"fixed cost per update (Python, dispatch, optimiser bookkeeping: {FIXED_COST_SHAPE[0]}"
          f"-wide nets, batch {FIXED_COST_SHAPE[1]}): "
          + ", ".join(f"{name} {ms:.2f} ms" for name, ms in fixed_ms.items()))
    if "d3rlpy" in fixed_ms:
        print_without_fixed_cost(table, fixed_ms)
    print(f"load average at the end {os.getloadavg()[0]:.2f}")
    return table


def print_without_fixed_cost(table: dict[str, dict[str, float]], fixed_ms: dict[str, float]
                             ) -> None:
    """Per shape, each update's time less its learner's fixed cost (the arithmetic's share), and
    the eager ratio robot_rl would reach at no fixed cost at all (d3rlpy's update as measured)."""
    for row, rates in table.items():
        ours_ms, d3_ms = 1e3 / rates["fp32"], 1e3 / rates["d3rlpy"]
        arithmetic = ours_ms - fixed_ms["robot_rl"], d3_ms - fixed_ms["d3rlpy"]
        print(f"{row} less the fixed cost: robot_rl {arithmetic[0]:.1f} ms, d3rlpy "
              f"{arithmetic[1]:.1f} ms ({arithmetic[1] / arithmetic[0]:.2f}x); robot_rl with no "
              f"fixed cost: {d3_ms / arithmetic[0]:.2f}x d3rlpy")


FIXED_COST_SHAPE = (16, 8)  # (hidden width, batch): the matrix products take next to nothing


def fixed_cost_ms(args: argparse.Namespace, rounds: int, updates: int, warmup: int
                  ) -> dict[str, float]:
    """Milliseconds per update at a shape where the arithmetic is negligible: what every update
    pays whatever its size (at batch 1024 the rest is the arithmetic)."""
    width, batch_size = FIXED_COST_SHAPE
    steps = {"robot_rl": ours((width, width), batch_size, "fp32")}
    if not args.no_d3rlpy:
        steps["d3rlpy"] = d3rlpy_awac((width, width), batch_size)
    fastest, _, _ = measure(steps, rounds, updates * 4, warmup)
    return {name: 1e3 / r for name, r in fastest.items()}


def run_child(allocator: str, json_path: Path) -> dict[str, dict[str, float]]:
    """This script in a fresh process: malloc settings cannot be undone within one."""
    argv = [a for a in sys.argv[1:] if not a.startswith("--allocator")]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get(
        "PYTHONPATH")])))
    subprocess.run([sys.executable, __file__, *argv, "--allocator", allocator, "--json",
                    str(json_path)], env=env, check=True)
    return json.loads(json_path.read_text())


def main() -> None:
    args = parse_args()
    global CLOCK, DEVICE
    DEVICE = torch.device(args.device)
    if args.cpu_time:
        CLOCK = time.process_time
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.allocator != "both":
        os.environ[memory.ENV_SWITCH] = "1" if args.allocator == "kept" else "0"
        applied = memory.keep_freed_memory()
        if applied != (args.allocator == "kept"):
            sys.exit(f"learner_throughput: allocator {args.allocator!r} asked, "
                     f"keep_freed_memory() says {applied}")
        table = measure_table(args)
        if args.json:
            args.json.write_text(json.dumps(table))
        return
    with tempfile.TemporaryDirectory() as tmp:
        tables = {a: run_child(a, Path(tmp) / f"{a}.json") for a in ALLOCATORS}
    if args.no_d3rlpy:
        return
    print("robot_rl with freed memory kept against d3rlpy on glibc's defaults (two processes, "
          "measured one after the other):")
    for row, kept in tables["kept"].items():
        d3 = tables["glibc"][row]["d3rlpy"]
        print(f"{row} robot_rl {kept['fp32']:>6.1f}  d3rlpy {d3:>6.1f}  ratio {kept['fp32'] / d3:.2f}")


if __name__ == "__main__":
    main()
