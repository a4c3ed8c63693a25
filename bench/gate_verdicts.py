"""What the safety supervisor makes of a trained policy's commands: per checkpoint, the share of
commands it passes unchanged, clips (rate, position or workspace limits) and holds, and which of
its rules acted on how many of them.

Evaluates each checkpoint's deterministic policy in the gated twin (the evaluation seeds of
`stages.evaluate`; the environment and agent config saved in the checkpoint) and counts the
supervisor's verdicts. A clip keeps the command's direction and cuts its size (a joint's step to
its velocity limit, say); a hold drops the command and keeps the last one.

    PYTHONPATH=. python bench/gate_verdicts.py runs/experiments/valve_60k/seed0/*/finetuned.pt \\
        runs/experiments/valve_60k_relative/seed0/*/finetuned.pt
"""

from __future__ import annotations

import argparse
from pathlib import Path

from robot_rl.config import from_dict
from robot_rl.learning import load_checkpoint
from robot_rl.learning.factory import agent_from_checkpoint
from robot_rl.pipeline import stages
from robot_rl.pipeline.rollout import GatedEnv
from robot_rl.run_config import PipelineConfig

VERDICTS = ("pass", "clipped", "hold")  # the supervisor's verdict statuses; "other": e-stop


def verdict_shares(checkpoint: Path, episodes: int
                   ) -> tuple[float, int, dict[str, float], dict[str, float]]:
    """(success rate, commands, share of each verdict, share of the commands each supervisor rule
    acted on) of one checkpoint's evaluation, in the environment and with the agent config the
    checkpoint was trained with (saved in it)."""
    state = load_checkpoint(checkpoint)
    config = from_dict(PipelineConfig, state["config"], source=str(checkpoint))
    env = GatedEnv(config)
    try:
        agent = agent_from_checkpoint(state, config.awac, seed=config.seed)
        result = stages.evaluate(config, agent, episodes, env=env)
        counts, rules = env.gate.statuses, env.gate.rules
    finally:
        env.close()
    total = sum(counts.values())
    shares = {v: counts.get(v, 0) / total for v in VERDICTS}
    shares["other"] = 1.0 - sum(shares.values())
    return result.success_rate, total, shares, {rule: n / total for rule, n in rules.most_common()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoints", nargs="+", type=Path, help="AWAC checkpoints (.pt)")
    parser.add_argument("--episodes", type=int, default=20, help="evaluation episodes each")
    args = parser.parse_args()
    print(f"{args.episodes} evaluation episodes each, in the environment the checkpoint names")
    print(f"{'checkpoint':<70} {'success':>7} {'commands':>8} "
          + " ".join(f"{v:>8}" for v in (*VERDICTS, "other")))
    for path in args.checkpoints:
        success, total, shares, rules = verdict_shares(path, args.episodes)
        print(f"{str(path)[-70:]:<70} {success:>7.2f} {total:>8d} "
              + " ".join(f"{shares[v]:>8.1%}" for v in (*VERDICTS, "other")))
        print(" " * 8 + "rules, share of commands: "
              + (", ".join(f"{rule} {share:.1%}" for rule, share in rules.items()) or "none"))


if __name__ == "__main__":
    main()
