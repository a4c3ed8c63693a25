"""Success classifiers from few labels: which inputs suffice, scored on held-out episodes.

Per dataset: the first ``--label-episodes`` successful episodes are labelled (every frame: their
success frames and their failure frames, from the dataset's ground-truth reward, standing in for a
person marking each success range); every other episode is held out. One classifier per input
set (robot_rl.reward: threshold by cross-validation, debounce 1) is trained on the labelled frames
and scored on the held-out ones. Datasets come from ``--dataset`` or are recorded with the task's
``bench_<profile>`` (seeds ``--seeds``).

    PYTHONPATH=. python bench/reward_features.py --task valve \
        --dataset runs/hil_study/valve_hil/seed0/dataset.zarr
    PYTHONPATH=. python bench/reward_features.py --task drawer --profile scarce --seeds 3 \
        --set dataset.noisy_trajectories=60
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import torch

from robot_rl.agent.tasks import make_task
from robot_rl.data import EpisodeStore
from robot_rl.pipeline import stages
from robot_rl.registry import env_id_task
from robot_rl.reward.classifier import (
    ClassifierConfig,
    evaluate_classifier,
    fit_classifier,
    parse_inputs,
)
from robot_rl.reward.labels import FrameLabels, frame_features
from robot_rl.robot_config import load_robot
from robot_rl.run_config import load_pipeline_config

INPUT_SETS = {
    "valve": {"goal error (error_cos_sin)": ["observation.error_cos_sin"],
              "whole observation": ["observation"],
              "proprioception": ["observation.joint_position_rad",
                                 "observation.joint_velocity_rad_s",
                                 "observation.fingertip_position_m"]},
    "drawer": {"opening (opening_m)": ["observation.opening_m"],
               "whole observation": ["observation"],
               "proprioception": ["observation.joint_position_rad",
                                  "observation.joint_velocity_rad_s",
                                  "observation.ee_position_m"]},
}


def score_dataset(task_name: str, dataset: Path, label_episodes: int,
                  seed: int) -> dict[str, Any]:
    with EpisodeStore.open(dataset, "r") as store:
        task = make_task(task_name, load_robot(store.attrs["robot"]))
        successful = [i for i in range(store.n_episodes)
                      if store.episode_info(i).get("success")]
        labelled = successful[:label_episodes]
        held_out = [i for i in range(store.n_episodes) if i not in labelled]
        train = FrameLabels.from_reward(store, labelled)
        test = FrameLabels.from_reward(store, held_out)
        out: dict[str, Any] = {"dataset": str(dataset), "label_episodes": len(labelled),
                               "label_success_frames": train.success_frames,
                               "held_out_episodes": len(held_out),
                               "held_out_success_frames": test.success_frames, "inputs": {}}
        for name, specs in INPUT_SETS[task_name].items():
            started = time.perf_counter()
            inputs = parse_inputs(specs, {"observation": task.observation_size}, task.layout)
            features = frame_features(store, inputs)
            rows, flags, ids = train.frames(store)
            model = fit_classifier(features[rows], flags, ids, inputs,
                                   ClassifierConfig(seed=seed))
            rows, flags, ids = test.frames(store)
            scores = evaluate_classifier(model, features[rows], flags, ids)
            scores["label_failure_frames"] = model.meta["failure_frames"]
            scores["wall_s"] = time.perf_counter() - started
            out["inputs"][name] = scores
    return out


def table(results: list[dict[str, Any]]) -> str:
    lines = ["| inputs | dataset | labelled: success / failure frames | held out: frames (success) "
             "| threshold | precision | recall | false successes | missed | episodes right |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for result in results:
        for name, s in result["inputs"].items():
            f, e = s["frames"], s["episodes"]
            held = f["tp"] + f["fp"] + f["fn"] + f["tn"]
            lines.append(
                f"| {name} | {Path(result['dataset']).parent.name or result['dataset']} | "
                f"{result['label_success_frames']} / {s['label_failure_frames']} | {held} "
                f"({f['tp'] + f['fn']}) | {s['threshold']:.2f} | {f['precision']:.2f} | "
                f"{f['recall']:.2f} | {f['fp']} | {f['fn']} | "
                f"{e['tp'] + e['tn']} of {sum(e[k] for k in ('tp', 'fp', 'fn', 'tn'))} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", default="valve", choices=sorted(INPUT_SETS))
    parser.add_argument("--dataset", action="append", type=Path, default=[])
    parser.add_argument("--profile", default="hil", help="bench_<profile>, to record datasets")
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE", help="config overrides for recording")
    parser.add_argument("--label-episodes", type=int, default=20)
    parser.add_argument("--out", type=Path, default=Path("runs/reward_features"))
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    datasets = list(args.dataset)
    if not datasets:
        for seed in range(args.seeds):
            config = load_pipeline_config(args.task, [f"seed={seed}", *args.overrides],
                                          f"bench_{args.profile}")
            assert env_id_task(config.env_id) == args.task
            path = args.out / f"{args.task}_{args.profile}" / f"seed{seed}" / "dataset.zarr"
            if not path.exists():
                path.parent.mkdir(parents=True, exist_ok=True)
                stages.record(config, path, progress=False)
            datasets.append(path)
    results = []
    for seed, dataset in enumerate(datasets):
        result = score_dataset(args.task, dataset, args.label_episodes, seed)
        results.append(result)
        print(json.dumps({k: v for k, v in result.items() if k != "inputs"}), flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{args.task}.json").write_text(json.dumps(results, indent=1))
    print(table(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
