"""d3rlpy 2.8's AWAC against ours, offline, on the same recorded dataset and the same eval seeds.

Reads a seed folder written by bench/experiments.py (dataset.zarr, and the `awac` pretraining's
offline.pt), trains d3rlpy's AWAC with the settings matched explicitly (d3rlpy's defaults differ:
lambda 1.0, batch 1024), and evaluates both deterministic policies in our gated twin on the eval
seeds of stages.evaluate. Prints one line per seed and writes JSON.

    PYTHONPATH=. python bench/experiments_d3rlpy.py --task valve --profile quick --seeds 3

Differences that remain (d3rlpy has no switch for them): ours clamps Q <= 0 (sparse rewards),
clips the advantage weight at 100, decays the policy weights (1e-4) and takes V(s) = Q(s, mean
action); d3rlpy takes V(s) from one sampled action and sums the actor loss over the batch.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from robot_rl.config import apply_overrides
from robot_rl.data import EpisodeStore
from robot_rl.pipeline import stages
from robot_rl.run_config import PipelineConfig

REPO = Path(__file__).resolve().parent.parent


def _harness() -> Any:
    spec = importlib.util.spec_from_file_location("bench_experiments",
                                                  Path(__file__).parent / "experiments.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def d3rlpy_dataset(path: Path) -> Any:
    """MDPDataset from our store: terminals at success, timeouts at truncated episode ends."""
    import d3rlpy

    store = EpisodeStore.open(path)
    terminals = store.read("terminated").astype(np.float32)
    timeouts = np.zeros_like(terminals)
    ends = store.episode_ends - 1
    timeouts[ends] = 1.0 - terminals[ends]
    return d3rlpy.dataset.MDPDataset(
        observations=store.read("observation").astype(np.float32),
        actions=store.read("action").astype(np.float32),
        rewards=store.read("reward").astype(np.float32), terminals=terminals, timeouts=timeouts)


def train_d3rlpy(config: PipelineConfig, dataset_path: Path) -> Any:
    import d3rlpy
    from d3rlpy.models.encoders import VectorEncoderFactory

    awac = config.awac
    d3rlpy.seed(config.seed)
    algo = d3rlpy.algos.AWACConfig(
        batch_size=awac.batch_size, lam=awac.beta, gamma=awac.gamma, tau=awac.tau,
        actor_learning_rate=awac.actor_lr, critic_learning_rate=awac.critic_lr,
        n_critics=awac.n_critics,
        actor_encoder_factory=VectorEncoderFactory(list(awac.actor_hidden_sizes)),
        critic_encoder_factory=VectorEncoderFactory(list(awac.critic_hidden_sizes)),
        observation_scaler=d3rlpy.preprocessing.StandardObservationScaler(),
    ).create(device=False)
    algo.fit(d3rlpy_dataset(dataset_path), n_steps=config.pretrain.updates,
             n_steps_per_epoch=config.pretrain.updates, show_progress=False,
             logger_adapter=d3rlpy.logging.NoopAdapterFactory())
    return algo


class D3rlpyPolicy:
    """d3rlpy's algorithm in the shape stages.evaluate expects of an agent."""

    def __init__(self, algo: Any) -> None:
        self.algo = algo

    def act(self, obs: np.ndarray, deterministic: bool = True) -> np.ndarray:
        return self.algo.predict(np.asarray(obs, np.float32)[None])[0]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", choices=("valve", "drawer"), default="valve")
    parser.add_argument("--profile", default="quick")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--episodes", type=int, default=30, help="eval episodes per policy")
    parser.add_argument("--ours-set", action="append", default=[], metavar="KEY=VALUE",
                        help="retrain ours with an AWACConfig override (e.g. q_clamp_max=null)")
    parser.add_argument("--skip-d3rlpy", action="store_true", help="evaluate ours only")
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "experiments")
    parser.add_argument("--figures", type=Path, default=REPO / "docs" / "figures")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    harness = _harness()
    overrides = apply_overrides({}, args.ours_set)  # nested keys, YAML values, named errors
    method = harness.METHODS["awac"]
    if overrides:
        method = harness.Method("awac_variant", "awac with overrides", pretrain=overrides)
    rows = []
    for seed in range(args.seeds):
        config = harness.task_config(args.task, args.profile, seed)
        seed_dir = args.out / f"{args.task}_{args.profile}" / f"seed{seed}"
        ours = harness.pretrained_agent(config, method,
                                        {"all": seed_dir / "dataset.zarr"}, seed_dir)
        row = {"seed": seed, "episodes": args.episodes, "ours_overrides": overrides,
               "ours": stages.evaluate(config, ours, args.episodes).success_rate,
               "d3rlpy": float("nan"), "d3rlpy_train_s": 0.0}
        if not args.skip_d3rlpy:
            started = time.perf_counter()
            theirs = train_d3rlpy(config, seed_dir / "dataset.zarr")
            row["d3rlpy_train_s"] = time.perf_counter() - started
            policy = D3rlpyPolicy(theirs)
            row["d3rlpy"] = stages.evaluate(config, policy, args.episodes).success_rate
        rows.append(row)
        print(f"seed {seed}: ours{overrides or ''} {row['ours']:.2f}  d3rlpy {row['d3rlpy']:.2f}"
              f"  ({args.episodes} episodes each)", flush=True)
    awac = harness.task_config(args.task, args.profile, 0).awac
    settings = {"batch_size": awac.batch_size, "lambda": awac.beta, "hidden": awac.actor_hidden_sizes,
                "n_critics": awac.n_critics, "lr": awac.actor_lr, "tau": awac.tau,
                "gamma": awac.gamma, "updates": config.pretrain.updates}
    print(f"settings: {settings}")
    print(f"mean over seeds: ours {np.mean([r['ours'] for r in rows]):.2f}  "
          f"d3rlpy {np.mean([r['d3rlpy'] for r in rows]):.2f}")
    args.figures.mkdir(parents=True, exist_ok=True)
    suffix = "_" + "_".join(f"{k}-{v}" for k, v in overrides.items()) if overrides else ""
    path = args.figures / f"d3rlpy_{args.task}_{args.profile}{suffix}.json"
    path.write_text(json.dumps({"settings": settings, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
