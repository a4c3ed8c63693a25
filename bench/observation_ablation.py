"""What a task's observation fields are worth: behaviour cloning with and without them.

For each seed, N clean runs of the scripted expert are recorded (``stages.record``), and the
learning core's behaviour cloning (AWAC's actor with ``actor_objective: bc``) is trained twice on
them: on the whole observation, and with the named fields set to zero in every transition and in
every observation the policy later sees (a constant input carries no information, so this is the
same as leaving the fields out, with the same network shapes). Both policies are evaluated
deterministically in the gated twin on the same held-out seeds (``stages.evaluate``).

    PYTHONPATH=. python bench/observation_ablation.py --task valve --demonstrations 50 --seeds 3 \\
        --without spoke_cos_sin,fingertip_position_m,fingertip_spoke_cos_sin

Prints one row per seed and the mean; one line of JSON per run with --json.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from robot_rl.data import transitions
from robot_rl.learning import AWAC
from robot_rl.learning.factory import make_replay, new_agent, train_step
from robot_rl.pipeline import stages
from robot_rl.pipeline.rollout import GatedEnv
from robot_rl.run_config import PipelineConfig, load_pipeline_config


class MaskedPolicy:
    """The agent acting on observations whose masked fields are zero, as it was trained."""

    def __init__(self, agent: AWAC, keep: np.ndarray) -> None:
        self.agent, self.keep = agent, keep

    def act(self, obs: np.ndarray, deterministic: bool = True) -> np.ndarray:
        return self.agent.act(np.where(self.keep, obs, 0.0).astype(np.float32),
                              deterministic=deterministic)


def field_mask(config: PipelineConfig, without: list[str]) -> np.ndarray:
    """True where an observation value is kept; unknown field names are refused by name."""
    env = GatedEnv(config)
    task = env.env.unwrapped.task
    env.close()
    unknown = sorted(set(without) - set(task.layout))
    if unknown:
        raise SystemExit(f"{config.env_id}: no observation field {unknown}; "
                         f"fields: {', '.join(task.layout)}")
    keep = np.ones(task.observation_size, bool)
    for name in without:
        keep[task.layout[name]] = False
    return keep


def behaviour_cloning(config: PipelineConfig, dataset: Path, keep: np.ndarray,
                      updates: int) -> MaskedPolicy:
    data = dict(transitions(dataset))
    for key in ("observation", "next_observation"):
        data[key] = np.where(keep, data[key], 0.0).astype(np.float32)
    awac = dataclasses.replace(config.awac, actor_objective="bc")
    agent = new_agent(awac, data, config.seed)
    replay = make_replay(awac, data, online_capacity=0, seed=config.seed)
    generator = np.random.default_rng(config.seed)
    for _ in range(updates):
        train_step(agent, replay, awac.batch_size, generator)
    return MaskedPolicy(agent, keep)


def run_seed(args: argparse.Namespace, seed: int, keep: np.ndarray, work: Path) -> dict:
    config = load_pipeline_config(args.task, overrides=[
        f"seed={seed}", f"dataset.demonstrations={args.demonstrations}",
        "dataset.noisy_trajectories=0"], profile=f"bench_{args.profile}")
    dataset = work / f"seed{seed}.zarr"
    stages.record(config, dataset, progress=False)
    row: dict = {"seed": seed, "demonstrations": args.demonstrations}
    for name, mask in (("all_fields", np.ones_like(keep)), ("without", keep)):
        started = time.perf_counter()
        policy = behaviour_cloning(config, dataset, mask, args.updates)
        result = stages.evaluate(config, policy, args.episodes)  # type: ignore[arg-type]
        row[name] = result.success_rate
        row[f"{name}_wall_s"] = round(time.perf_counter() - started, 1)
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--task", choices=("valve", "drawer"), required=True)
    parser.add_argument("--without", required=True,
                        help="comma-separated observation fields to zero (the task's layout names)")
    parser.add_argument("--profile", default="quick",
                        help="bench_<profile> of the task's YAML: networks, batch, learning rate")
    parser.add_argument("--demonstrations", type=int, default=50)
    parser.add_argument("--updates", type=int, default=5000, help="BC gradient steps")
    parser.add_argument("--episodes", type=int, default=30, help="evaluation episodes per policy")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--seed-start", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--json", action="store_true", help="also print each row as JSON")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    without = [name.strip() for name in args.without.split(",") if name.strip()]
    base = load_pipeline_config(args.task, profile=f"bench_{args.profile}")
    keep = field_mask(base, without)
    print(f"{base.env_id}: BC on {args.demonstrations} clean demonstrations, {args.updates} "
          f"updates, {args.episodes} evaluation episodes; 'without' zeroes {', '.join(without)} "
          f"({int((~keep).sum())} of {keep.size} values)")
    print(f"{'seed':>4}  {'all fields':>10}  {'without':>8}")
    rows = []
    with tempfile.TemporaryDirectory(prefix="observation_ablation_") as work:
        for seed in range(args.seed_start, args.seed_start + args.seeds):
            row = run_seed(args, seed, keep, Path(work))
            rows.append(row)
            print(f"{seed:>4}  {row['all_fields']:>10.2f}  {row['without']:>8.2f}", flush=True)
            if args.json:
                print(json.dumps(row), flush=True)
    print(f"{'mean':>4}  {np.mean([r['all_fields'] for r in rows]):>10.2f}  "
          f"{np.mean([r['without'] for r in rows]):>8.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
