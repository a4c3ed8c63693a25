"""What a camera view costs in the twin, and what makes it cheap (MuJoCo on headless EGL).

Usage: python bench/render_cost.py [--quick]

Per task: the time of one policy view (64x64) rendered as ``Twin.render_view`` does it (no
multisampling, spheres and capsules of 12 x 6 facets, a render at twice the view's size averaged
down) against the model's own settings (4x multisampling, 28 x 16 facets), each cut alone; a full
640x480 frame both ways; then env steps per second of the state task, the pixel task (a view per
control step) and the older ``obs_type="state+rgb"`` at 84x84 with the model's settings.
Measurements alternate between settings (ABAB...) so a busy machine biases none; medians.
"""

from __future__ import annotations

import argparse
import os
import time

import gymnasium as gym
import mujoco
import numpy as np

import robot_rl.sim_twin  # noqa: F401  (registers the environments, sets MUJOCO_GL)
from robot_rl.sim_twin.twin import VIEW_QUALITY, view_render_size
from robot_rl.tasks.camera import preprocess_color

ENVS = {"valve": "robot_rl/ValveTurn-v0", "drawer": "robot_rl/DrawerOpen-v0"}
MODEL_QUALITY = {"offsamples": 4, "numslices": 28, "numstacks": 16}  # MuJoCo's defaults


def renderer(model: mujoco.MjModel, width: int, height: int, quality: dict) -> mujoco.Renderer:
    saved = {k: getattr(model.vis.quality, k) for k in quality}
    for k, v in quality.items():
        setattr(model.vis.quality, k, v)
    try:
        return mujoco.Renderer(model, height=height, width=width)
    finally:
        for k, v in saved.items():
            setattr(model.vis.quality, k, v)


def render_times(env: gym.Env, settings: dict[str, tuple], frames: int) -> dict[str, float]:
    """Median ms per frame (update_scene + render + crop/resize) of each setting, interleaved."""
    twin, view = env.unwrapped.twin, env.unwrapped.task.image
    made = {name: (renderer(twin.model, w, h, q), w, h) for name, (w, h, q) in settings.items()}
    times: dict[str, list[float]] = {name: [] for name in settings}
    rng = np.random.default_rng(0)
    for _ in range(frames):
        env.step(rng.uniform(-1, 1, env.action_space.shape).astype(np.float32))
        for name, (r, w, h) in made.items():
            started = time.perf_counter()
            r.update_scene(twin.data, camera=view.twin_camera)
            image = r.render()
            if (w, h) != (640, 480) or name.startswith("view"):
                preprocess_color(image, view)
            times[name].append(time.perf_counter() - started)
    for r, *_ in made.values():
        r.close()
    return {name: 1e3 * float(np.median(t)) for name, t in times.items()}


def env_rates(task: str, steps: int) -> dict[str, float]:
    """Env steps per second, the three kinds interleaved in blocks of 20 steps."""
    kinds = {"state": gym.make(ENVS[task]),
             "pixels": gym.make(ENVS[task], config={"observation": "pixels"}),
             "state+rgb 84x84": gym.make(ENVS[task], obs_type="state+rgb")}
    spent = dict.fromkeys(kinds, 0.0)
    rng = np.random.default_rng(0)
    for env in kinds.values():
        env.reset(seed=0)
    done = 0
    while done < steps:
        for name, env in kinds.items():
            actions = rng.uniform(-1, 1, (20, *env.action_space.shape)).astype(np.float32)
            started = time.perf_counter()
            for action in actions:
                _, _, terminated, truncated, _ = env.step(action)
                if terminated or truncated:
                    env.reset()
            spent[name] += time.perf_counter() - started
        done += 20
    for env in kinds.values():
        env.close()
    return {name: done / seconds for name, seconds in spent.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="few frames: proves it runs")
    args = parser.parse_args()
    frames, steps = (10, 40) if args.quick else (200, 600)
    print(f"MUJOCO_GL={os.environ.get('MUJOCO_GL')}, mujoco {mujoco.__version__}, load average "
          f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores\n")
    for task, env_id in ENVS.items():
        env = gym.make(env_id, config={"observation": "pixels"})
        env.reset(seed=0)
        view = env.unwrapped.task.image
        w2, h2 = view_render_size(view)
        w1, h1 = round(w2 / 2), round(h2 / 2)
        no_msaa = {**MODEL_QUALITY, "offsamples": 0}
        settings = {
            f"view as render_view ({w2}x{h2}, {VIEW_QUALITY})": (w2, h2, VIEW_QUALITY),
            f"view, model settings ({w2}x{h2}, 4x MSAA, 28x16)": (w2, h2, MODEL_QUALITY),
            f"view, only MSAA off ({w2}x{h2})": (w2, h2, no_msaa),
            f"view, only 12x6 facets ({w2}x{h2}, 4x MSAA)":
                (w2, h2, {**MODEL_QUALITY, "numslices": 12, "numstacks": 6}),
            f"view rendered at 1x ({w1}x{h1}, {VIEW_QUALITY})": (w1, h1, VIEW_QUALITY),
            "full frame, model settings (640x480)": (640, 480, MODEL_QUALITY),
            "full frame, view settings (640x480)": (640, 480, VIEW_QUALITY),
        }
        print(f"{task}: ms per frame (median of {frames}), view {view.width}x{view.height} "
              f"crop {view.crop}")
        for name, ms in render_times(env, settings, frames).items():
            print(f"  {name:62s} {ms:7.2f} ms")
        env.close()
        period = env.unwrapped.task.control_period_s
        print(f"{task}: env steps/s (x real time at {1 / period:g} Hz), {steps} steps each")
        for name, rate in env_rates(task, steps).items():
            print(f"  {name:20s} {rate:8.0f} steps/s  {rate * period:6.1f}x real time")
        print()


if __name__ == "__main__":
    main()
