"""Updates per second at an update-to-data ratio G, and the G a learner keeps up with at 20 Hz.

Each update here is a real training step: ``factory.train_step`` samples from the config's replay
(symmetric sampling over 2000 offline and 2000 online transitions of the valve's shapes, obs 49,
act 9) and updates the agent; at G > 1 one call makes the G updates of an env step from G x B
sampled rows (``AWAC.update(batch, n_updates=G)``), as the in-process fine-tuning and the learner
node's trainer do. Rows: the paper's AWAC (2 critics, min); the task configs' default (10
LayerNorm critics, the target's minimum over a random 2) with the actor stepping on every update
and once per env step (``actor_update_every`` G); 2 LayerNorm critics. Rounds alternate between
the configurations and the fastest round is reported (other processes only slow a round down).

A learner keeps up with acting at f Hz when its updates/s at G are at least G x f: the last
column is the largest G whose rate is at least G x 20 (20 Hz, the tasks' control rate). That
rate is the trainer's alone: on a robot's computer the control loop, the safety node and the
drivers share the cores with it (bench/control_loop.py measures them).

``--trainer S`` also runs the learner node's trainer (``BackgroundTrainer``, one torch thread)
for S seconds per G while a thread hands it a 60-step episode every 3 s (20 Hz acting), and
prints the updates it owed and made: what the learner node sustains on this machine as loaded.

    PYTHONPATH=. python bench/utd_throughput.py [--quick] [--compile] [--cpu-time] [--trainer 30]
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import learner_throughput

from robot_rl.learning.awac import AWAC
from robot_rl.learning.background import BackgroundConfig, BackgroundTrainer
from robot_rl.learning.config import AWACConfig
from robot_rl.learning.factory import make_replay, train_step

OBS_DIM, ACT_DIM = 49, 9  # the valve
HZ = 20.0
EPISODE_STEPS = 60
GS = (1, 2, 5, 10, 20)
TOOLKIT = {"replay": "symmetric", "critic_layer_norm": True}
CONFIGS: dict[str, dict] = {
    "awac, 2 critics": {},
    "10 LN critics, actor every update": {**TOOLKIT, "n_critics": 10,
                                          "critic_aggregation": "subset_min"},
    "10 LN critics, actor every G": {**TOOLKIT, "n_critics": 10,
                                     "critic_aggregation": "subset_min", "actor_update_every": -1},
    "2 LN critics, actor every G": {**TOOLKIT, "actor_update_every": -1},
}


def steps(n: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"observation": rng.normal(size=(n, OBS_DIM)).astype(np.float32),
            "next_observation": rng.normal(size=(n, OBS_DIM)).astype(np.float32),
            "action": rng.uniform(-1, 1, size=(n, ACT_DIM)).astype(np.float32),
            "reward": -np.ones(n, np.float32), "terminated": np.zeros(n, bool)}


def online_agent(overrides: dict, g: int, hidden: tuple[int, ...], batch_size: int,
                 compile: bool) -> tuple[AWAC, object]:
    """An agent gone online (the actor's cadence applies) and its replay, data in both halves."""
    settings = {k: (g if v == -1 else v) for k, v in overrides.items()}
    config = AWACConfig(actor_hidden_sizes=hidden, critic_hidden_sizes=hidden,
                        batch_size=batch_size, q_clamp_max=0.0, compile=compile, **settings)
    agent = AWAC(OBS_DIM, ACT_DIM, config)
    replay = make_replay(config, steps(2000, 0), online_capacity=10_000, seed=0)
    online = steps(2000, 1)
    replay.add_episode({"obs": online["observation"], "action": online["action"],
                        "reward": online["reward"], "next_obs": online["next_observation"],
                        "done": np.zeros(2000, np.float32)})
    agent.start_online()
    return agent, replay


def env_step(overrides: dict, g: int, hidden: tuple[int, ...], batch_size: int,
             compile: bool, fused: bool = True) -> Callable[[int], None]:
    """One env step's G updates (one fused call, or G calls of one update)."""
    agent, replay = online_agent(overrides, g, hidden, batch_size, compile)
    rng = np.random.default_rng(2)

    def step(i: int) -> None:
        if fused:
            train_step(agent, replay, g * batch_size, rng)
        else:
            for _ in range(g):
                train_step(agent, replay, batch_size, rng)

    return step


def table(args: argparse.Namespace, hidden: tuple[int, ...], batch_size: int) -> None:
    rounds, env_steps, warmup = (3, 2, 1) if args.quick else (5, 6, 2)
    print(f"\n{len(hidden)}x{hidden[0]} networks, batch {batch_size}: updates/s at G (fastest of "
          f"{rounds} rounds of {env_steps} env steps' updates; "
          f"{'CPU' if args.cpu_time else 'wall'} time); load average {os.getloadavg()[0]:.2f}")
    print(f"{'configuration':<36}" + "".join(f"{f'G={g}':>9}" for g in GS)
          + f"{'G=10 unfused':>14}{'G at 20 Hz':>12}")
    for name, overrides in CONFIGS.items():
        calls = {g: env_step(overrides, g, hidden, batch_size, args.compile) for g in GS}
        calls["unfused"] = env_step(overrides, 10, hidden, batch_size, args.compile, fused=False)
        fastest, _, _ = learner_throughput.measure(calls, rounds, env_steps, warmup)
        ups = {g: fastest[g] * g for g in GS}  # env steps/s x G
        ups["unfused"] = fastest["unfused"] * 10
        sustained = max([g for g in GS if ups[g] >= g * HZ], default=0)
        print(f"{name:<36}" + "".join(f"{ups[g]:>9.0f}" for g in GS)
              + f"{ups['unfused']:>14.0f}{sustained:>12}", flush=True)


def trainer_run(overrides: dict, g: int, seconds: float, compile: bool) -> tuple[int, float]:
    """(updates made, updates owed) after ``seconds`` of 20 Hz acting at ratio G."""
    agent, replay = online_agent(overrides, g, (64, 64), 256, compile)
    rng = np.random.default_rng(3)
    trainer = BackgroundTrainer(
        agent, lambda rows: train_step(agent, replay, rows, rng), lambda n: n,
        BackgroundConfig(batch_size=256, updates_per_env_step=float(g), num_threads=1),
        buffer_transitions=len(replay))
    trainer.counters.online_started = True  # the agent went online above
    stop = threading.Event()

    def act() -> None:  # an episode of 60 steps every 3 s: 20 Hz
        while not stop.wait(EPISODE_STEPS / HZ):
            trainer.submit_episode(EPISODE_STEPS)

    trainer.start()
    actor = threading.Thread(target=act, daemon=True)
    started = time.monotonic()
    actor.start()
    time.sleep(seconds)
    stop.set()
    made, owed = trainer.counters.online_updates, trainer.updates_owed()
    trainer.stop()
    elapsed = time.monotonic() - started
    if trainer.error is not None:
        raise trainer.error
    return made, min(owed, g * HZ * elapsed)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a short smoke run (64x64 only)")
    parser.add_argument("--compile", action="store_true", help="AWACConfig.compile on")
    parser.add_argument("--cpu-time", action="store_true",
                        help="rates from this process's CPU time (a loaded machine's waits left "
                             "out)")
    parser.add_argument("--trainer", type=float, default=0.0, metavar="S",
                        help="also run the learner node's trainer S seconds per G at 20 Hz")
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.compile:  # every configuration and G is an agent of its own in this one process
        # (a learner node compiles one): past dynamo's default of 8 recompilations the later
        # rows would run uncompiled and say nothing about compilation
        torch._dynamo.config.recompile_limit = 64
    if args.cpu_time:
        learner_throughput.CLOCK = time.process_time
    print(f"torch {torch.__version__}, 1 thread, compile {args.compile}")
    table(args, (64, 64), 256)
    if not args.quick:
        table(args, (256, 256), 256)
    if args.trainer:
        print(f"\nBackgroundTrainer, 64x64, batch 256, 20 Hz acting, {args.trainer:.0f} s per G: "
              f"updates made / owed (load average {os.getloadavg()[0]:.2f})")
        for name in ("10 LN critics, actor every update", "10 LN critics, actor every G",
                     "2 LN critics, actor every G"):
            results = [trainer_run(CONFIGS[name], g, args.trainer, args.compile) for g in GS]
            print(f"{name:<36}" + "".join(f"{made:>7}/{owed:<7.0f}" for made, owed in results),
                  flush=True)


if __name__ == "__main__":
    main()
