"""A human in the loop, measured on the twin: interventions and a learned reward, several seeds.

Per seed one dataset is recorded and one offline policy pretrained (profile ``bench_<profile>`` of
the task's config), shared by every condition of that seed; each condition then fine-tunes online
from that policy, in process, evaluated every ``finetune.eval_every_env_steps`` on seeds disjoint
from the data. Results are JSON files per (seed, condition), so an interrupted run resumes.

Conditions:
  policy_only        the policy explores alone (the baseline)
  scripted_operator  the task's expert takes over when the policy is stuck or strays
                     (sim_twin.operator; intervention.* settings of the profile)
  rule_reward        the task's own reward and success (the ground truth)
  learned_reward     reward and success from a classifier trained on ``--label-episodes``
                     successful episodes' labelled success frames plus the failures of the same
                     episodes (robot_rl.reward), every other setting as rule_reward

    PYTHONPATH=. python bench/hil_study.py --profile hil --conditions policy_only,scripted_operator --seeds 3
    PYTHONPATH=. python bench/hil_study.py --profile hil --report-only
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import fcntl
import json
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from robot_rl.hil.metrics import misdetection_counts
from robot_rl.pipeline import stages
from robot_rl.run_config import PipelineConfig, load_pipeline_config, toolkit_off_overrides

SUCCESS_TARGET = 0.9
CONDITIONS: dict[str, list[str]] = {
    "policy_only": ["intervention.operator=none"],
    "scripted_operator": ["intervention.operator=scripted"],
    "rule_reward": [],
    "learned_reward": [],
}


def condition_config(task: str, profile: str, seed: int, condition: str) -> PipelineConfig:
    # the AWAC the study was measured with (G = 1, two critics): the task files' toolkit came later
    return load_pipeline_config(task, [*toolkit_off_overrides(), f"seed={seed}",
                                       *CONDITIONS[condition]], profile=f"bench_{profile}")


@contextlib.contextmanager
def exclusive(lock_path: Path) -> Iterator[None]:
    """One process at a time (two conditions of a seed in parallel share its dataset)."""
    with open(lock_path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def prepare_seed(config: PipelineConfig, seed_dir: Path, log: Any) -> tuple[Path, Path]:
    """The seed's dataset and offline checkpoint, made once."""
    seed_dir.mkdir(parents=True, exist_ok=True)
    dataset, offline = seed_dir / "dataset.zarr", seed_dir / "offline.pt"
    with exclusive(seed_dir / "prepare.lock"):
        if not (seed_dir / "prepared.json").exists():
            started = time.perf_counter()
            # not prepared: anything there is what an interrupted run left
            summary = stages.record(config, dataset, progress=False, overwrite=True)
            stages.pretrain(config, dataset, seed_dir, progress=False, overwrite=True)
            info = {"demo_success_rate": summary.demo_success_rate,
                    "noisy_success_rate": summary.noisy_success_rate,
                    "episodes": summary.episodes, "wall_s": time.perf_counter() - started}
            (seed_dir / "prepared.json").write_text(json.dumps(info, indent=1))
            log(f"seed {config.seed}: dataset and offline policy {info}")
    return dataset, offline


def run_condition(task: str, profile: str, seed: int, condition: str, out: Path,
                  label_episodes: int, log: Any) -> dict[str, Any]:
    config = condition_config(task, profile, seed, condition)
    seed_dir = out / f"seed{seed}"
    dataset, offline = prepare_seed(config, seed_dir, log)
    run_dir = seed_dir / condition
    run_dir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(offline, run_dir / "offline.pt")
    started = time.perf_counter()
    extra: dict[str, Any] = {}
    success_model = None
    if condition == "learned_reward":
        success_model, extra = learned_success_model(config, dataset, run_dir, label_episodes)
    result = stages.finetune(config, run_dir, dataset, progress=False, overwrite=True,
                             success_model=success_model)  # a condition without its JSON: again
    curve = [{"env_steps": p.env_steps, "success_rate": p.success_rate} for p in result.curve]
    reached = [p["env_steps"] for p in curve if p["success_rate"] >= SUCCESS_TARGET]
    return {"task": task, "profile": profile, "seed": seed, "condition": condition,
            "curve": curve, "steps_to_90": reached[0] if reached else None,
            "final_success": curve[-1]["success_rate"], "interventions": result.interventions,
            "wall_s": time.perf_counter() - started, **extra}


def learned_success_model(config: PipelineConfig, dataset: Path, run_dir: Path,
                          label_episodes: int) -> tuple[Any, dict[str, Any]]:
    """A classifier from the first ``label_episodes`` successful episodes of the dataset (their
    success frames and their failure frames), evaluated on every other episode."""
    from robot_rl.reward import study_classifier
    return study_classifier(config, dataset, run_dir, label_episodes)


def load_results(out: Path, conditions: list[str]) -> dict[str, list[dict[str, Any]]]:
    runs: dict[str, list[dict[str, Any]]] = {c: [] for c in conditions}
    for path in sorted(out.glob("seed*/*.json")):
        result = json.loads(path.read_text())
        if result.get("condition") in runs:
            runs[result["condition"]].append(result)
    return runs


def report(out: Path, conditions: list[str]) -> str:
    runs = load_results(out, conditions)
    lines = ["| condition | seeds | env steps to 90% (per seed) | final success | takeovers | "
             "operator steps | intervention rate first -> last window |", "|---|---|---|---|---|---|---|"]
    for condition, results in runs.items():
        if not results:
            continue
        results.sort(key=lambda r: r["seed"])
        steps = ", ".join(str(r["steps_to_90"]) if r["steps_to_90"] is not None else "-"
                          for r in results)
        finals = ", ".join(f"{r['final_success']:.2f}" for r in results)
        takeovers = ", ".join(str(r["interventions"].get("takeovers", 0)) for r in results)
        op_steps = ", ".join(str(r["interventions"].get("intervention_steps", 0))
                             for r in results)
        trend = ", ".join(f"{r['interventions'].get('rate_first_window', float('nan')):.2f} -> "
                          f"{r['interventions'].get('rate_last_window', float('nan')):.2f}"
                          for r in results)
        lines.append(f"| {condition} | {len(results)} | {steps} | {finals} | {takeovers} | "
                     f"{op_steps} | {trend} |")
    lines.append("")
    for r in sorted(runs.get("learned_reward", []), key=lambda r: r["seed"]):
        counts = misdetection_counts(out / f"seed{r['seed']}" / "learned_reward" / "finetune" /
                                     "metrics.csv")
        if counts:
            lines.append(f"- learned_reward seed {r['seed']}: of {counts['episodes']} online "
                         f"episodes the classifier called {counts['episode_success']:.0f} "
                         f"successes, the twin {counts['episode_true_success']:.0f}; false "
                         f"successes {counts['reward_false_success']:.0f}, missed "
                         f"{counts['reward_missed_success']:.0f}")
    for condition, results in runs.items():
        for r in sorted(results, key=lambda r: r["seed"]):
            points = " ".join(f"{p['success_rate']:.2f}" for p in r["curve"])
            lines.append(f"- {condition} seed {r['seed']} ({r['wall_s'] / 60:.0f} min): {points}")
    return "\n".join(lines)


def plot(out: Path, conditions: list[str], path: Path, title: str) -> None:
    """Left: every seed's evaluations per condition (runs stop at 90%). Right, where an operator
    took over: its intervention rate, mean over the last 20 episodes (its CSV), per seed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = load_results(out, conditions)
    operated = any(r["interventions"].get("takeovers") for rs in runs.values() for r in rs)
    # the right panel only where an operator took over (a reward study has none to draw)
    fig, axes = plt.subplots(1, 2 if operated else 1, figsize=(9.0 if operated else 5.0, 3.4))
    left, right = (axes if operated else (axes, None))
    colors = dict(zip(conditions, ("tab:grey", "tab:blue", "tab:green", "tab:orange")))
    for condition, results in runs.items():
        for i, r in enumerate(sorted(results, key=lambda r: r["seed"])):
            steps = [p["env_steps"] for p in r["curve"]]
            rates = [p["success_rate"] for p in r["curve"]]
            left.plot(steps, rates, marker="o", ms=2.5, lw=1.2, color=colors[condition],
                      alpha=0.8, label=condition if i == 0 else None)
            metrics = out / f"seed{r['seed']}" / condition / "finetune" / "metrics.csv"
            if right is not None and r["interventions"].get("takeovers") and metrics.exists():
                with open(metrics) as handle:
                    rows = [row for row in csv.DictReader(handle)
                            if row["name"] == "intervention_rate_mean"]
                right.plot([int(row["step"]) for row in rows],
                           [float(row["value"]) for row in rows], lw=1.0,
                           color=plt.get_cmap("tab10")(r["seed"]), alpha=0.8,
                           label=f"{condition} seed {r['seed']}")
    left.axhline(SUCCESS_TARGET, color="black", lw=0.6, ls="--")
    left.set(xlabel="online env steps", ylabel="success (20 deterministic episodes)",
             ylim=(-0.03, 1.03))
    left.legend(fontsize=7)
    left.grid(alpha=0.3)
    if right is not None:
        right.set(xlabel="online env steps", ylabel="share of steps the operator commanded",
                  title="intervention rate, mean of the last 20 episodes", ylim=(0, None))
        right.title.set_fontsize(8)
        right.legend(fontsize=7)
        right.grid(alpha=0.3)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", default="valve")
    parser.add_argument("--profile", default="hil", help="bench_<profile> of the task config")
    parser.add_argument("--conditions", default="policy_only,scripted_operator")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--seed-start", type=int, default=0)
    parser.add_argument("--label-episodes", type=int, default=20,
                        help="learned_reward: successful episodes whose frames are labelled")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--out", type=Path, default=None,
                        help="default: runs/hil_study/<task>_<profile>")
    parser.add_argument("--report-only", action="store_true")
    parser.add_argument("--figures", type=Path, help="write <task>_<profile>_hil.png and .json "
                                                     "(every result) here")
    args = parser.parse_args(argv)
    conditions = args.conditions.split(",")
    unknown = [c for c in conditions if c not in CONDITIONS]
    if unknown:
        parser.error(f"--conditions: unknown {unknown}; known: {sorted(CONDITIONS)}")
    out = args.out or Path("runs/hil_study") / f"{args.task}_{args.profile}"
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(args.threads)

    def log(message: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)

    if not args.report_only:
        for seed in range(args.seed_start, args.seed_start + args.seeds):
            for condition in conditions:
                path = out / f"seed{seed}" / f"{condition}.json"
                if path.exists():
                    log(f"seed {seed} {condition}: cached")
                    continue
                result = run_condition(args.task, args.profile, seed, condition, out,
                                       args.label_episodes, log)
                path.write_text(json.dumps(result, indent=1, default=_plain))
                log(f"seed {seed} {condition}: to90 {result['steps_to_90']} final "
                    f"{result['final_success']:.2f} takeovers "
                    f"{result['interventions'].get('takeovers')} ({result['wall_s'] / 60:.1f} min)")
    print(report(out, conditions))
    if args.figures is not None:
        name = f"{args.task}_{args.profile}_hil"
        plot(out, conditions, args.figures / f"{name}.png",
             f"{args.task}, profile bench_{args.profile}: {', '.join(conditions)}")
        (args.figures / f"{name}.json").write_text(
            json.dumps(load_results(out, conditions), indent=1, default=_plain))
    return 0


def _plain(value: Any) -> Any:
    if isinstance(value, (np.generic, np.ndarray)):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON-serialisable")


if __name__ == "__main__":
    raise SystemExit(main())
