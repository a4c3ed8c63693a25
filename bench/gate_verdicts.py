"""What the safety supervisor makes of a trained policy's commands: per checkpoint, the share of
commands it passes unchanged, clips (rate, position or workspace limits) and holds.

Evaluates each checkpoint's deterministic policy in the gated twin (the evaluation seeds of
`stages.evaluate`) and counts the supervisor's verdicts. With absolute actions on the valve the
policy names a target anywhere in the joint range and the supervisor rate-limits almost every
command; with relative actions the policy names a step the supervisor can let through.

    PYTHONPATH=. python bench/gate_verdicts.py --config valve --profile bench_60k \\
        runs/experiments/valve_60k/seed0/awac_guard/finetuned.pt
    PYTHONPATH=. python bench/gate_verdicts.py --config valve --profile bench_60k_relative \\
        runs/experiments/valve_60k_relative/seed0/awac_guard/finetuned.pt
"""

from __future__ import annotations

import argparse
from pathlib import Path

from robot_rl.pipeline import stages
from robot_rl.pipeline.config import load_pipeline_config
from robot_rl.pipeline.rollout import GatedEnv

VERDICTS = ("pass", "clipped", "hold")  # the supervisor's verdict statuses; "other": e-stop


def verdict_shares(config_name: str, profile: str | None, checkpoint: Path,
                   episodes: int) -> tuple[float, int, dict[str, float]]:
    """(success rate, commands, share of each verdict) of one checkpoint's evaluation."""
    config = load_pipeline_config(config_name, profile=profile)
    env = GatedEnv(config)
    try:
        agent = stages.load_agent(config, checkpoint)
        result = stages.evaluate(config, agent, episodes, env=env)
        counts = env.gate.statuses
    finally:
        env.close()
    total = sum(counts.values())
    shares = {v: counts.get(v, 0) / total for v in VERDICTS}
    shares["other"] = 1.0 - sum(shares.values())
    return result.success_rate, total, shares


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoints", nargs="+", type=Path, help="AWAC checkpoints (.pt)")
    parser.add_argument("--config", default="valve", help="pipeline config name or path")
    parser.add_argument("--profile", default=None, help="the profile the checkpoints were "
                        "trained with (its env_kwargs set the action mode)")
    parser.add_argument("--episodes", type=int, default=20, help="evaluation episodes each")
    args = parser.parse_args()
    print(f"config {args.config}, profile {args.profile}, {args.episodes} episodes each")
    print(f"{'checkpoint':<70} {'success':>7} {'commands':>8} "
          + " ".join(f"{v:>8}" for v in (*VERDICTS, "other")))
    for path in args.checkpoints:
        success, total, shares = verdict_shares(args.config, args.profile, path, args.episodes)
        print(f"{str(path)[-70:]:<70} {success:>7.2f} {total:>8d} "
              + " ".join(f"{shares[v]:>8.1%}" for v in (*VERDICTS, "other")))


if __name__ == "__main__":
    main()
