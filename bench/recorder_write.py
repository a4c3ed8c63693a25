"""Recorder write throughput: 640x480 rgb + depth + joint states through EpisodeWriter.

Prints frames/s achieved, append latency p50/p99/max and commit latency. Paced at --rate-hz
(30 by default, as a live recorder) or, with --rate-hz 0, as fast as the disk allows.

    PYTHONPATH=. python bench/recorder_write.py --seconds 10
    PYTHONPATH=. python bench/recorder_write.py --seconds 10 --rate-hz 0 --background
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from robot_rl.data import EpisodeStore, EpisodeWriter

HEIGHT, WIDTH, N_JOINTS = 480, 640, 9


def synthetic_scene(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A camera-like scene: smooth gradients, a textured object and sensor noise."""
    y, x = np.mgrid[0:HEIGHT, 0:WIDTH]
    rgb = np.stack([x * 255 // WIDTH, y * 255 // HEIGHT, (x + y) * 255 // (WIDTH + HEIGHT)], -1)
    rgb[150:330, 220:420] = rng.integers(0, 256, (180, 200, 3))
    rgb = np.clip(rgb + rng.normal(0, 3, rgb.shape), 0, 255).astype(np.uint8)
    depth = (600 + y * 2 + rng.normal(0, 2, (HEIGHT, WIDTH))).astype(np.uint16)
    depth[150:330, 220:420] = 450
    return rgb, depth


def run(args: argparse.Namespace, out: Path) -> None:
    rng = np.random.default_rng(0)
    rgb, depth = synthetic_scene(rng)
    store = EpisodeStore.create(out / "bench.zarr", robot="dclaw", task="valve",
                                calibration_digest="bench", units={"joint_position": "rad"})
    writer = EpisodeWriter(store, flush_every_steps=args.flush_every, background=args.background)
    period_s = 1.0 / args.rate_hz if args.rate_hz > 0 else 0.0
    steps_per_episode = max(1, int(args.episode_s * (args.rate_hz or 30)))
    append_s, commit_s, late = [], [], 0
    t_start = time.perf_counter()
    next_tick = t_start
    step = 0
    while time.perf_counter() - t_start < args.seconds:
        if period_s:
            next_tick += period_s
            delay = next_tick - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            else:
                late += 1
        q = np.sin(step * 0.01 + np.arange(N_JOINTS)).astype(np.float32)
        t0 = time.perf_counter()
        writer.append({"camera_color": np.roll(rgb, step % WIDTH, axis=1),
                       "camera_depth": np.roll(depth, step % WIDTH, axis=1),
                       "joint_position": q, "joint_velocity": q * 0.1, "joint_effort": q * 0.01,
                       "action": q, "timestamp_s": np.float64(t0)})
        append_s.append(time.perf_counter() - t0)
        step += 1
        if step % steps_per_episode == 0:
            t0 = time.perf_counter()
            writer.commit({"operator": "bench"})
            commit_s.append(time.perf_counter() - t0)
    if writer.n_steps:
        t0 = time.perf_counter()
        writer.commit({"operator": "bench"})
        commit_s.append(time.perf_counter() - t0)
    writer.close()
    wall_s = time.perf_counter() - t_start
    report(store, step, wall_s, np.array(append_s), np.array(commit_s), late, args)


def report(store: EpisodeStore, frames: int, wall_s: float, append_s: np.ndarray,
           commit_s: np.ndarray, late: int, args: argparse.Namespace) -> None:
    reader = EpisodeStore.open(store.path)
    assert reader.n_steps == frames, (reader.n_steps, frames)
    disk = sum(f.stat().st_size for f in store.path.rglob("*") if f.is_file())
    raw = frames * HEIGHT * WIDTH * 5  # 3 B rgb + 2 B depth per pixel
    ms = 1e3
    mode = f"paced {args.rate_hz:g} Hz" if args.rate_hz > 0 else "unpaced"
    print(f"recorder_write: {mode}, flush_every_steps={args.flush_every}, "
          f"background={args.background}, {os.cpu_count()} cpus")
    print(f"  frames            {frames} in {wall_s:.2f} s = {frames / wall_s:.1f} frames/s "
          f"({reader.n_episodes} episodes)")
    print(f"  append latency    p50 {np.percentile(append_s, 50) * ms:.2f} ms, "
          f"p99 {np.percentile(append_s, 99) * ms:.2f} ms, max {append_s.max() * ms:.2f} ms")
    if len(commit_s):
        print(f"  commit latency    p50 {np.percentile(commit_s, 50) * ms:.2f} ms, "
              f"max {commit_s.max() * ms:.2f} ms")
    if args.rate_hz > 0:
        print(f"  late ticks        {late} of {frames}")
    print(f"  disk              {disk / 2**20:.1f} MiB for {raw / 2**20:.1f} MiB of images "
          f"({raw / max(disk, 1):.2f}x)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="how long to record")
    parser.add_argument("--rate-hz", type=float, default=30.0, help="step rate; 0 = unpaced")
    parser.add_argument("--flush-every", type=int, default=10, help="EpisodeWriter flush period")
    parser.add_argument("--episode-s", type=float, default=5.0, help="commit every N seconds")
    parser.add_argument("--background", action="store_true", help="write in a worker thread")
    parser.add_argument("--out", type=Path, help="directory to write in (default: a temp dir, "
                                                 "removed afterwards)")
    args = parser.parse_args()
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(args.out / "bench.zarr", ignore_errors=True)
        run(args, args.out)
        return
    with tempfile.TemporaryDirectory() as tmp:
        run(args, Path(tmp))


if __name__ == "__main__":
    main()
