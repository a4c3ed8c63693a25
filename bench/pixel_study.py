"""Pixels + proprioception against the state observation, on the same datasets (docs/results.md).

Per task and seed one dataset is recorded with the task's camera view (``observation: pixels``):
each step holds the policy's vector, its 64x64 view and the state layout, so every method trains
on the same episodes. Methods:

- ``state``: the task's state observation (valve angle, fingertip features; drawer opening, hook
  and handle), read from the episodes' ``state_observation``: the baseline;
- ``drq``: joints, previous action and goal + the camera view through a conv encoder trained with
  the critic, DrQ random shifts (SERL's default);
- ``frozen``: the same view through an encoder trained beforehand as an autoencoder on the
  seed's dataset frames and frozen; its features are computed once per frame;
- ``drq_image_reward``: ``drq``'s offline policy (one pretraining shared by both), fine-tuned
  with the online episodes' reward, success and termination from an **image success
  classifier** instead of the twin's rule: nothing online reads the object's state (the twin's
  own success is only logged, to count misdetections). The classifier is what a user makes with
  ``robot-rl reward``: a second dataset of the seed, ``CLASSIFIER_DEMOS`` demonstrations and as
  many noisy runs recorded with ``terminate_on_success: false`` (so success views are stored),
  labels from the twin's reward on the demonstrations only, ``reward train --input
  camera_color``, scored by ``reward eval`` on the noisy runs. The offline data keeps its
  recorded reward (the classifier judges online episodes only, as in hil_study's learned reward).

Each run pretrains (the profile's offline updates) and fine-tunes online in the gated twin,
evaluated every K env steps with E deterministic episodes on seeds disjoint from the data. One run
per invocation, results in ``OUT/<task>/seed<k>/<method>/result.json``; datasets and frozen
encoders are shared by a seed's methods (made by the first run to need them, under a lock).
Torch runs on one thread: background runs share the machine.

With ``--toolkit`` the runs use the task files' learning settings as shipped (symmetric
sampling, 10 LayerNorm critics, G = 10, the warm starts) on the toolkit study's profile
(``bench_rlpd``: velocity actions on the valve, 10000 online steps), in ``OUT/toolkit``: the
frozen encoder's features cost an update what the state does, so G = 10 fits a CPU there.

    PYTHONPATH=. python bench/pixel_study.py run --task valve --method drq --seed 0
    PYTHONPATH=. python bench/pixel_study.py --toolkit run --task valve --method frozen --seed 0
    PYTHONPATH=. python bench/pixel_study.py summary --task valve
    PYTHONPATH=. python bench/pixel_study.py quick   # the whole pipeline at tiny sizes, minutes

``quick`` is the CPU profile of the pipeline end to end: record, encoder, pretrain, fine-tune and
evaluate for each method at tiny sizes, with each stage's wall time and cost per update.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import fcntl
import json
import shutil
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from robot_rl.config import to_dict
from robot_rl.hil.metrics import misdetection_counts
from robot_rl.pipeline import stages
from robot_rl.pipeline.pixels import train_dataset_encoder
from robot_rl.run_config import PipelineConfig, load_pipeline_config, toolkit_off_overrides

REPO = Path(__file__).resolve().parent.parent
METHODS = ("state", "drq", "frozen", "drq_image_reward")
PIXEL_METHODS = ("drq", "frozen", "drq_image_reward")
CLASSIFIER_DEMOS = 20  # labelled episodes of the image classifier (and as many held out)
SUCCESS_TARGET = 0.9
# The study's settings on top of each task's offline-to-online profile (docs/results.md): the
# valve's relative-action data (10 clean + 40 noisy runs) and the drawer's scarce data (2 + 40).
STUDY = {
    "valve": ("bench_60k_relative", ["finetune.env_steps=30000",
                                     "finetune.eval_every_env_steps=5000", "eval.episodes=20"]),
    "drawer": ("bench_scarce", ["finetune.env_steps=5000", "finetune.eval_every_env_steps=1000",
                                "eval.episodes=20"]),
}
# --toolkit: the task files' learning settings as shipped (symmetric sampling, 10 LayerNorm
# critics, G = 10, warm start, critic warm-up) on the toolkit study's profile and datasets
# (bench/experiments.py --profile rlpd), where the valve acts with velocity actions, its default
TOOLKIT_STUDY = {"valve": ("bench_rlpd", []), "drawer": ("bench_rlpd", [])}
QUICK = ["dataset.demonstrations=2", "dataset.noisy_trajectories=2", "pretrain.updates=100",
         "pretrain.log_every_updates=50", "finetune.env_steps=200",
         "finetune.eval_every_env_steps=200", "eval.episodes=2", "awac.batch_size=64"]
ENCODER_STEPS = 3000
TOOLKIT_DIR = "toolkit"


def method_config(task: str, method: str, seed: int, extra: list[str], out: Path
                  ) -> PipelineConfig:
    toolkit = is_toolkit_study(out)
    profile, overrides = (TOOLKIT_STUDY if toolkit else STUDY)[task]
    # without --toolkit, the AWAC the study was first measured with (G = 1, two critics)
    base = [] if toolkit else toolkit_off_overrides()
    config = load_pipeline_config(task, [*base, *overrides, *extra, f"seed={seed}"], profile)
    if method == "state":
        return config
    task_kwargs = dict(config.env_kwargs.get("config", {}))
    env_kwargs = {**config.env_kwargs, "config": {**task_kwargs, "observation": "pixels"}}
    config = dataclasses.replace(config, env_kwargs=env_kwargs)
    if method == "drq_image_reward":
        config = dataclasses.replace(config, reward=dataclasses.replace(
            config.reward, source="classifier", classifier=str(classifier_path(out, task, seed))))
    if method == "frozen":
        config = dataclasses.replace(config, encoder=dataclasses.replace(
            config.encoder, kind="frozen", frozen_path=str(seed_dir(out, task, seed) /
                                                           "encoder.pt")))
    return config


def is_toolkit_study(out: Path) -> bool:
    """--toolkit runs live under OUT/toolkit (their datasets, with other actions, too)."""
    return out.name == TOOLKIT_DIR


def seed_dir(out: Path, task: str, seed: int) -> Path:
    return out / task / f"seed{seed}"


def classifier_path(out: Path, task: str, seed: int) -> Path:
    return seed_dir(out, task, seed) / "classifier" / "success_image.safetensors"


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def shared_dataset(task: str, seed: int, extra: list[str], out: Path, log: Any) -> Path:
    """The seed's dataset, recorded with the camera view by the first run that needs it."""
    path = seed_dir(out, task, seed) / "dataset.zarr"
    done = path.with_name("dataset.done")
    with locked(path):
        if not done.exists():
            started = time.perf_counter()
            summary = stages.record(method_config(task, "drq", seed, extra, out), path,
                                    progress=False, overwrite=True)
            done.write_text(json.dumps({**dataclasses.asdict(summary),
                                        "wall_s": time.perf_counter() - started}))
            log(f"recorded {path}: {summary.episodes} episodes, {summary.steps} steps")
    return path


def shared_encoder(task: str, seed: int, extra: list[str], out: Path, dataset: Path,
                   steps: int, log: Any) -> dict[str, Any]:
    config = method_config(task, "frozen", seed, extra, out)
    path = Path(config.encoder.frozen_path)
    record = path.with_suffix(".json")
    with locked(path):
        if not record.exists():
            started = time.perf_counter()
            info = train_dataset_encoder(dataset, config, path, steps=steps, overwrite=True,
                                         log=log)
            record.write_text(json.dumps({**dataclasses.asdict(info),
                                          "wall_s": time.perf_counter() - started}))
    return json.loads(record.read_text())


def shared_classifier(task: str, seed: int, extra: list[str], out: Path, log: Any,
                      demos: int = CLASSIFIER_DEMOS) -> dict[str, Any]:
    """The seed's image success classifier, made with the ``robot-rl reward`` commands a user
    runs (see the module docstring), and its held-out scores."""
    from robot_rl.cli import main as cli

    path = classifier_path(out, task, seed)
    record = path.with_suffix(".json")
    with locked(path):
        if not record.exists():
            started = time.perf_counter()
            config = method_config(task, "drq", seed, extra, out)
            task_kwargs = {**config.env_kwargs["config"], "terminate_on_success": False}
            config = dataclasses.replace(
                config, env_kwargs={**config.env_kwargs, "config": task_kwargs},
                dataset=dataclasses.replace(config.dataset, demonstrations=demos,
                                            noisy_trajectories=demos),
                seed=config.seed + 1000)  # other episodes than the study's dataset
            data = path.parent / "labelled.zarr"
            stages.record(config, data, progress=False, overwrite=True)
            labels = path.parent / "labels.yaml"
            labelled, held_out = f"0-{demos - 1}", f"{demos}-{2 * demos - 1}"
            common = ["--overwrite"]
            cli(["reward", "label", str(data), "-o", str(labels), "--from-reward",
                 "--episodes", labelled, *common])
            cli(["reward", "train", str(data), "--labels", str(labels), "-o", str(path),
                 "--input", "camera_color", "--seed", str(seed), *common])
            scores_path = path.parent / "held_out.json"
            with open(scores_path, "w") as handle, contextlib.redirect_stdout(handle):
                cli(["reward", "eval", str(path), str(data), "--from-reward", "--episodes",
                     held_out, "--json"])
            scores = json.loads(scores_path.read_text())
            record.write_text(json.dumps({"held_out": scores, "labelled_episodes": labelled,
                                          "held_out_episodes": held_out,
                                          "wall_s": time.perf_counter() - started}, indent=1))
            frames = scores["frames"]
            log(f"image classifier {path}: held-out precision {frames['precision']:.3f} "
                f"recall {frames['recall']:.3f}")
    return json.loads(record.read_text())


def shared_pretrain(config: PipelineConfig, task: str, seed: int, out: Path, dataset: Path,
                    log: Any) -> tuple[Path, float]:
    """DrQ's offline policy of the seed, pretrained once for ``drq`` and ``drq_image_reward``
    (their configs differ in the online reward only); (checkpoint, pretraining seconds)."""
    folder = seed_dir(out, task, seed) / "drq_offline"
    done = folder / "pretrain.json"
    with locked(folder / "offline"):
        if not done.exists():
            started = time.perf_counter()
            stages.pretrain(config, dataset, folder, progress=False, overwrite=True)
            done.write_text(json.dumps({"wall_s": time.perf_counter() - started}))
            log(f"pretrained: {config.pretrain.updates} updates")
    return folder / "offline.pt", json.loads(done.read_text())["wall_s"]


def run(task: str, method: str, seed: int, extra: list[str], out: Path,
        encoder_steps: int = ENCODER_STEPS, classifier_demos: int = CLASSIFIER_DEMOS
        ) -> dict[str, Any]:
    def log(text: str) -> None:
        print(f"[{task} {method} seed {seed}] {text}", flush=True)

    run_dir = seed_dir(out, task, seed) / method
    result_path = run_dir / "result.json"
    if result_path.exists():
        log(f"done already: {result_path}")
        return json.loads(result_path.read_text())
    dataset = shared_dataset(task, seed, extra, out, log)
    encoder = (shared_encoder(task, seed, extra, out, dataset, encoder_steps, log)
               if method == "frozen" else None)
    classifier = (shared_classifier(task, seed, extra, out, log, classifier_demos)
                  if method == "drq_image_reward" else None)
    config = method_config(task, method, seed, extra, out)
    if method in ("drq", "drq_image_reward"):
        offline, pretrain_s = shared_pretrain(config, task, seed, out, dataset, log)
        run_dir.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(offline, run_dir / "offline.pt")
    else:
        started = time.perf_counter()
        stages.pretrain(config, dataset, run_dir, progress=False, overwrite=True)
        pretrain_s = time.perf_counter() - started
        log(f"pretrained: {config.pretrain.updates} updates in {pretrain_s:.0f} s")
    started = time.perf_counter()
    tuned = stages.finetune(config, run_dir, dataset, progress=False, overwrite=True)
    finetune_s = time.perf_counter() - started
    curve = [dataclasses.asdict(p) for p in tuned.curve]
    reached = [p["env_steps"] for p in curve[1:] if p["success_rate"] >= SUCCESS_TARGET]
    result = {"task": task, "method": method, "seed": seed, "config": to_dict(config),
              "offline_success": curve[0]["success_rate"], "curve": curve,
              "final_success": curve[-1]["success_rate"],
              "steps_to_target": reached[0] if reached else None,
              "pretrain_updates": config.pretrain.updates, "pretrain_s": pretrain_s,
              "s_per_update_offline": pretrain_s / max(1, config.pretrain.updates),
              "finetune_s": finetune_s, "encoder": encoder, "classifier": classifier,
              "misdetections": misdetection_counts(run_dir / "finetune" / "metrics.csv"),
              "torch": torch.__version__}
    result_path.write_text(json.dumps(result, indent=1))
    log(f"offline {result['offline_success']:.2f} -> final {result['final_success']:.2f}, "
        f"90% at {result['steps_to_target']}; {finetune_s:.0f} s online")
    return result


def summary(task: str, out: Path, figure: Path | None) -> str:
    rows = [json.loads(p.read_text()) for p in sorted((out / task).glob("seed*/*/result.json"))]
    lines = [f"| {task} | seeds | offline success | final success ({_budget(rows)} online "
             "steps) | reached 90% | steps to 90% (median of those) | s per offline update |",
             "|---|---|---|---|---|---|---|"]
    curves: dict[str, Any] = {}
    for method in METHODS:
        mine = [r for r in rows if r["method"] == method]
        if not mine:
            continue
        offline = np.array([r["offline_success"] for r in mine])
        final = np.array([r["final_success"] for r in mine])
        steps = [r["steps_to_target"] for r in mine if r["steps_to_target"] is not None]
        median = f"{int(np.median(steps))}" if steps else "-"
        cost = np.mean([r["s_per_update_offline"] for r in mine])
        lines.append(f"| {method} | {', '.join(str(r['seed']) for r in mine)} | "
                     f"{_mean_se(offline)} | {_mean_se(final)} | {len(steps)} of {len(mine)} | "
                     f"{median} | {cost:.3f} |")
        curves[method] = {str(r["seed"]): r["curve"] for r in mine}
    if figure is not None and curves:
        figure.parent.mkdir(parents=True, exist_ok=True)
        figure.with_suffix(".json").write_text(json.dumps(curves, indent=1))
        _plot(curves, task, figure)
    return "\n".join(lines)


def _budget(rows: list[dict]) -> str:
    budgets = sorted({r["curve"][-1]["env_steps"] for r in rows})
    return "/".join(str(b) for b in budgets) if budgets else "?"


def _mean_se(values: np.ndarray) -> str:
    if len(values) < 2:
        return f"{values.mean():.2f}"
    return f"{values.mean():.2f} ± {values.std(ddof=1) / np.sqrt(len(values)):.2f}"


def _plot(curves: dict[str, Any], task: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    for method, by_seed in curves.items():
        for i, curve in enumerate(by_seed.values()):
            ax.plot([p["env_steps"] for p in curve], [p["success_rate"] for p in curve],
                    color={"state": "C0", "drq": "C1", "frozen": "C2",
                           "drq_image_reward": "C3"}[method], alpha=0.8,
                    label=method if i == 0 else None, marker=".")
    ax.set(xlabel="online env steps", ylabel="success rate", ylim=(-0.02, 1.02),
           title=f"{task}: pixels + proprioception vs state (each line a seed)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def quick(out: Path) -> None:
    """The whole pipeline at tiny sizes, with each stage's wall time: minutes on 2 cores."""
    for task in ("valve", "drawer"):
        for method in METHODS:
            started = time.perf_counter()
            result = run(task, method, 0, QUICK, out / "quick", encoder_steps=50,
                         classifier_demos=2)
            print(f"{task:6s} {method:6s}: record+encoder+pretrain+finetune "
                  f"{time.perf_counter() - started:6.1f} s; pretrain "
                  f"{result['s_per_update_offline'] * 1e3:.0f} ms/update (batch 64); online "
                  f"{result['finetune_s']:.1f} s for 200 steps and 2 evaluations", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("run", help="one (task, method, seed)")
    p.add_argument("--task", choices=sorted(STUDY), required=True)
    p.add_argument("--method", choices=METHODS, required=True)
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="config override on top of the study's (shared by a seed's runs)")
    p.add_argument("--encoder-steps", type=int, default=ENCODER_STEPS)
    p = sub.add_parser("summary", help="the table of a task's finished runs (and its figure)")
    p.add_argument("--task", choices=sorted(STUDY), required=True)
    p.add_argument("--figure", type=Path, help="PNG (and a JSON beside it) of the curves")
    sub.add_parser("quick", help="every method at tiny sizes, timed")
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "pixel_study")
    parser.add_argument("--toolkit", action="store_true",
                        help="the task files' offline-to-online toolkit as shipped, on profile "
                             "bench_rlpd (velocity actions on the valve); runs in OUT/toolkit")
    args = parser.parse_args()
    if args.toolkit:
        args.out = args.out / TOOLKIT_DIR
    torch.set_num_threads(1)
    if args.command == "run":
        run(args.task, args.method, args.seed, args.set, args.out, args.encoder_steps)
    elif args.command == "summary":
        print(summary(args.task, args.out, args.figure))
    else:
        quick(args.out)


if __name__ == "__main__":
    sys.exit(main())
