"""The scripted expert's success rate on a robot, through the safety supervisor (as `record` runs it).

A first check of a new robot's scene and task settings (docs/your-robot.md): can the task's
expert do it, clean and with the action noise the dataset will use?

    python bench/expert_success.py --config drawer --robot ur5e --noise 0 0.3 --episodes 20
    python bench/expert_success.py --config drawer --robot ur5e --noise 0.03 \
        --set env_kwargs.config.action_mode=absolute
"""

from __future__ import annotations

import argparse
from collections import Counter

import numpy as np

from robot_rl.pipeline.rollout import GatedEnv
from robot_rl.run_config import load_pipeline_config


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="drawer", help="pipeline config (its task)")
    parser.add_argument("--robot", default=None, help="calibration; default: the config's")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE", help="override a config value")
    parser.add_argument("--noise", type=float, nargs="+", default=[0.0])
    parser.add_argument("--episodes", type=int, default=20)
    args = parser.parse_args()
    overrides = args.overrides + ([f"robot={args.robot}"] if args.robot else [])
    config = load_pipeline_config(args.config, overrides)
    env = GatedEnv(config)
    print(f"{config.env_id} on {config.robot}, actions {env.action_mode}, "
          f"{args.episodes} episodes per noise level (seeds 0..{args.episodes - 1})")
    try:
        for noise in args.noise:
            env.gate.statuses.clear()
            episodes = [env.run_episode(env.expert(noise, seed=k), seed=k)
                        for k in range(args.episodes)]
            successes = [e.success for e in episodes]
            lengths = [e.length for e in episodes if e.success]
            verdicts = Counter(env.gate.statuses)
            print(f"  noise {noise:5.3f}: success {sum(successes)}/{len(successes)}, steps when "
                  f"successful {np.mean(lengths) if lengths else float('nan'):.1f}; verdicts "
                  f"{dict(sorted(verdicts.items()))}")
    finally:
        env.close()


if __name__ == "__main__":
    main()
