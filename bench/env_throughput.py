"""Environment throughput per task: env steps/s with and without a camera, next to raw mj_step/s.

Usage: python bench/env_throughput.py [--quick] [--envs robot_rl/ValveTurn-v0 ...]
Real-time factor = env steps/s x control period (a real robot does one step per period).
"""

from __future__ import annotations

import argparse
import time

import gymnasium as gym
import mujoco
import numpy as np

import robot_rl.sim_twin  # noqa: F401  (registers the environments, sets MUJOCO_GL)
from robot_rl.registry import registered_tasks


def env_rate(env_id: str, steps: int, **kwargs) -> float:
    env = gym.make(env_id, **kwargs)
    env.reset(seed=0)
    env.action_space.seed(0)
    actions = [env.action_space.sample() for _ in range(steps)]
    start = time.perf_counter()
    for action in actions:
        _, _, terminated, truncated, _ = env.step(action)
        if terminated or truncated:
            env.reset()
    rate = steps / (time.perf_counter() - start)
    env.close()
    return rate


def mj_step_rate(env_id: str, steps: int) -> tuple[float, float]:
    env = gym.make(env_id)
    env.reset(seed=0)
    twin = env.unwrapped.twin
    model, data = twin.model, mujoco.MjData(twin.model)
    data.qpos[:] = twin.data.qpos
    data.ctrl[:] = twin.data.ctrl
    start = time.perf_counter()
    mujoco.mj_step(model, data, nstep=steps)
    rate = steps / (time.perf_counter() - start)
    period = env.unwrapped.task.control_period_s
    env.close()
    return rate, period


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="few steps: proves the script runs")
    parser.add_argument("--envs", nargs="*", default=[t.env_id for t in registered_tasks().values()])
    args = parser.parse_args()
    n_state, n_rgb, n_raw = (200, 20, 5000) if args.quick else (3000, 300, 100_000)
    header = (f"{'env':26s} {'mj_step/s':>10s} {'substeps':>8s} {'state steps/s':>13s} "
              f"{'x real time':>11s} {'rgb 84x84 steps/s':>17s} {'x real time':>11s}")
    print(header)
    print("-" * len(header))
    for env_id in args.envs:
        raw, period = mj_step_rate(env_id, n_raw)
        state = env_rate(env_id, n_state)
        rgb = env_rate(env_id, n_rgb, obs_type="state+rgb")
        substeps = round(period / 0.002)
        print(f"{env_id:26s} {raw:10.0f} {substeps:8d} {state:13.0f} {state * period:11.1f} "
              f"{rgb:17.1f} {rgb * period:11.1f}")
    print(f"\nnumpy {np.__version__}, mujoco {mujoco.__version__}; "
          f"real time at 1/control_period steps/s")


if __name__ == "__main__":
    main()
