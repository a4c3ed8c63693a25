"""Learning from pixels: updates per second, one frame's inference, DrQ's shift, replay memory.

Usage: python bench/pixel_throughput.py [--quick] [--threads 1 2] [--device cpu cuda]

- updates/s of a PixelAgent (valve: 29-value vector, 9 actions, 64x64 view, 64x64 MLPs as in the
  study's profile) at batch 256 and 128, with the default encoder (16/32/32 channels, strides
  4/2/2) and with four stride-2 3x3 layers, at 64x64 and 84x84; the frozen-encoder path (AWAC on
  [vector, features]) and the state task (49 values) for reference;
- ms to act on one frame (encode + policy), the control loop's share;
- ms of DrQ's random shift of a batch: OpenCV rows (the CPU path) against one gather;
- bytes an ImageReplay holds per frame (one frame per step) against a buffer that keeps obs and
  next_obs frames, and a FeatureReplay's.
Each update figure is the median of timed updates after warm-up, on random data (the cost does
not depend on the values). A GPU device is measured where torch sees one.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch

from robot_rl.learning import AWAC, AWACConfig, Normalizer
from robot_rl.learning.encoders import EncoderConfig, random_shift
from robot_rl.learning.encoders import _gather_shift as gather_shift
from robot_rl.learning.image_replay import FeatureReplay, ImageReplay
from robot_rl.learning.pixel_agent import PixelAgent
from robot_rl.tasks.camera import ImageObservationConfig

STATE_DIM, ACT_DIM, FULL_STATE_DIM = 29, 9, 49
NETS = {"actor_hidden_sizes": (64, 64), "critic_hidden_sizes": (64, 64)}
ENCODERS = {"default 16/32/32 s4/2/2": EncoderConfig(),
            "4 x 3x3 s2 16/32/32/32": EncoderConfig(channels=(16, 32, 32, 32),
                                                   strides=(2, 2, 2, 2))}


def _batch(batch: int, size: int, device: str, rng: np.random.Generator) -> dict:
    images = rng.integers(0, 255, (2, batch, size, size, 3), dtype=np.uint8)
    return {"obs": torch.randn(batch, STATE_DIM), "next_obs": torch.randn(batch, STATE_DIM),
            "action": torch.rand(batch, ACT_DIM) * 2 - 1, "reward": -torch.ones(batch),
            "done": torch.zeros(batch), "image": torch.from_numpy(images[0]),
            "next_image": torch.from_numpy(images[1])}


def _timed(step, n: int) -> tuple[float, float]:
    """(median wall s, mean process CPU s) per call: on a shared machine the CPU time says what
    a call costs, the wall time what this machine gave it."""
    for _ in range(3):
        step()
    times = []
    cpu = time.process_time()
    for _ in range(n):
        started = time.perf_counter()
        step()
        times.append(time.perf_counter() - started)
    return float(np.median(times)), (time.process_time() - cpu) / n


def pixel_updates(device: str, n: int) -> None:
    rng = np.random.default_rng(0)
    print(f"updates/s on {device}, {torch.get_num_threads()} thread(s) (median of {n})")
    for name, encoder in ENCODERS.items():
        for size, batch in ((64, 256), (64, 128), (84, 256)):
            view = ImageObservationConfig(width=size, height=size)
            config = AWACConfig(batch_size=batch, device=device, **NETS)
            agent = PixelAgent(STATE_DIM, ACT_DIM, view, config, encoder, seed=0)
            agent.set_state_normalizer(Normalizer.identity(STATE_DIM))
            data = _batch(batch, size, device, rng)
            seconds, cpu = _timed(lambda agent=agent, data=data: agent.update(data), n)
            print(f"  DrQ {name:24s} {size}x{size} batch {batch:3d}: {1 / seconds:6.1f} "
                  f"updates/s ({seconds * 1e3:6.1f} ms wall, {cpu * 1e3:6.1f} ms CPU)")
    for label, dim in (("frozen features (vector + 50)", STATE_DIM + 50),
                       ("state task (49 values)", FULL_STATE_DIM)):
        agent_awac = AWAC(dim, ACT_DIM, AWACConfig(batch_size=256, device=device, **NETS))
        agent_awac.set_normalizer(Normalizer.identity(dim))
        data = {"obs": torch.randn(256, dim), "next_obs": torch.randn(256, dim),
                "action": torch.rand(256, ACT_DIM) * 2 - 1, "reward": -torch.ones(256),
                "done": torch.zeros(256)}
        seconds, cpu = _timed(lambda a=agent_awac, d=data: a.update(d), n)
        print(f"  {label:53s} batch 256: {1 / seconds:6.1f} updates/s ({seconds * 1e3:6.1f} "
              f"ms wall, {cpu * 1e3:6.1f} ms CPU)")


def acting(n: int) -> None:
    view = ImageObservationConfig()
    agent = PixelAgent(STATE_DIM, ACT_DIM, view, AWACConfig(**NETS), EncoderConfig(), seed=0)
    agent.set_state_normalizer(Normalizer.identity(STATE_DIM))
    frame = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    obs = {"state": np.zeros(STATE_DIM, np.float32), "rgb": frame}
    seconds = []
    for _ in range(n):
        started = time.perf_counter()
        agent.act(obs, deterministic=True)
        seconds.append(time.perf_counter() - started)
    ms = np.array(seconds[5:]) * 1e3
    print(f"act on one 64x64 frame (encoder + policy, torch): p50 {np.percentile(ms, 50):.2f} ms, "
          f"p99 {np.percentile(ms, 99):.2f} ms")


def shifts(n: int) -> None:
    images = torch.from_numpy(np.random.default_rng(0).integers(0, 255, (256, 64, 64, 3),
                                                                dtype=np.uint8))
    generator = torch.Generator().manual_seed(0)
    offsets = torch.randint(0, 9, (256, 2), generator=generator)
    by_rows = _timed(lambda: random_shift(images, 4, generator), n)[1]
    by_gather = _timed(lambda: gather_shift(images, 4, offsets), n)[1]
    print(f"DrQ shift of 256 64x64 views (pad 4), CPU time: OpenCV rows {by_rows * 1e3:.1f} ms, "
          f"one gather {by_gather * 1e3:.1f} ms")


def memory() -> None:
    frames = 30_000
    view = ImageObservationConfig()
    replay = ImageReplay(STATE_DIM, ACT_DIM, view.shape, frames)
    both = 2 * frames * int(np.prod(view.shape))  # obs and next_obs frames kept side by side
    features = FeatureReplay(STATE_DIM, 50, ACT_DIM, frames, encode=lambda f: f)
    print(f"replay of {frames} 64x64 rgb steps: ImageReplay {replay.nbytes / 2**20:.0f} MiB "
          f"(frames {replay.frames.nbytes / 2**20:.0f}); obs + next_obs frames would be "
          f"{both / 2**20:.0f} MiB for the frames alone; FeatureReplay (50 features) "
          f"{features.nbytes / 2**20:.0f} MiB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="few repetitions: proves it runs")
    parser.add_argument("--threads", type=int, nargs="*", default=[1],
                        help="torch threads (2 on a busy 2-core machine: OpenMP's spinning "
                             "threads collapse, see shared/PLATFORM.md)")
    parser.add_argument("--device", nargs="*", default=["cpu", "cuda"])
    args = parser.parse_args()
    n = 3 if args.quick else 15
    print(f"torch {torch.__version__}, load average {os.getloadavg()[0]:.1f} on "
          f"{os.cpu_count()} cores\n")
    for device in args.device:
        if device == "cuda" and not torch.cuda.is_available():
            print("cuda: not available here\n")
            continue
        for threads in args.threads if device == "cpu" else [torch.get_num_threads()]:
            torch.set_num_threads(threads)
            pixel_updates(device, n)
            print()
    torch.set_num_threads(1)
    acting(20 if args.quick else 300)
    shifts(n)
    memory()


if __name__ == "__main__":
    main()
