"""Offline-to-online experiments: the product's default, RLPD, BC, SAC from scratch, naive
fine-tuning, AWAC and their ablations.

Per task and seed ONE dataset is recorded like the AWAC paper's (clean demonstrations + noisy
trajectories of the scripted expert) and shared by every method of that seed. Each method is
pretrained (or not), then fine-tuned online in the gated twin for a fixed budget, evaluated every K
env steps with E deterministic episodes on seeds disjoint from the data (stages.evaluate). Results per
(seed, method) are JSON files, so an interrupted run resumes where it stopped. Runs may go side by
side as separate processes (a seed or a method each, same --out): a seed's dataset is recorded,
and each shared pretraining done, by the first to get there while the others wait. A seed's
directory keeps the settings it was recorded with (config.json) and refuses a run under others;
a method whose settings and pretraining equal a recorded method's on that seed (an ablation that
is the default on this task) reuses its result and says so.

    PYTHONPATH=. python bench/experiments.py --task valve --profile quick --seeds 3
    PYTHONPATH=. python bench/experiments.py --task valve --profile full --seed-start 1 --seeds 1
    PYTHONPATH=. python bench/experiments.py --task valve --profile quick --report-only

Profiles are the ``bench_<profile>`` sections of robot_rl/configs/<task>.yaml. The methods are
defined against the paper's AWAC at one update per env step (``task_config`` resets the task
file's product switches); ``default`` and its ablations (``product=True``) start from the task
file's own settings, as a user gets them (``product_config``).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import fcntl
import json
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from robot_rl.config import to_dict
from robot_rl.data import transitions
from robot_rl.learning import AWAC
from robot_rl.learning.config import TOOLKIT_FIELDS, AWACConfig, config_to_dict
from robot_rl.learning.factory import new_agent
from robot_rl.pipeline import stages
from robot_rl.run_config import PipelineConfig, load_pipeline_config

REPO = Path(__file__).resolve().parent.parent
SUCCESS_TARGET = 0.9
EARLY_EVALS = 3  # "early" = the first this many online evaluations
BUDGETS = (2000, 5000, 10000, 20000)  # online env steps at which success is reported
BUDGET_SLACK_STEPS = 100  # longer than any task's episode (valve 60, drawer 80 steps)
HOLDOUT_SEED_OFFSET = 3_000_000  # the handed policy's check: seeds no evaluation used
# The task files' product switches: task_config sets them back to AWACConfig's (the paper's AWAC)
PRODUCT_FIELDS = ("collapse_guard", "std_coef", *TOOLKIT_FIELDS)


@dataclass(frozen=True)
class Method:
    """How one method pretrains and fine-tunes; overrides apply to the profile's AWACConfig."""

    name: str
    summary: str
    pretrain: dict[str, Any] | None = None  # None: no pretraining (a fresh agent)
    pretrain_on: str = "all"  # "all" transitions, or "demonstrations" only
    online: dict[str, Any] | None = field(default_factory=dict)  # None: no online phase
    finetune: dict[str, Any] = field(default_factory=dict)  # overrides of config.finetune
    product: bool = False  # start from the task file's settings, not the paper's AWAC


# awac_br_ens's three components; each ablation below adds exactly one of them to plain AWAC
FIVE_CRITICS = {"n_critics": 5, "critic_aggregation": "mean_minus_std"}
BALANCED_REPLAY = {"replay": "balanced"}
GUARD = {"collapse_guard": {"conservative": True}}
ENSEMBLE = {**FIVE_CRITICS, **BALANCED_REPLAY, **GUARD}
METHODS: dict[str, Method] = {m.name: m for m in (
    Method("bc", "behaviour cloning on the clean demonstrations; no online phase",
           pretrain={"actor_objective": "bc"}, pretrain_on="demonstrations", online=None),
    Method("sac_scratch", "SAC online from a fresh agent; the dataset sits in its uniform buffer",
           pretrain=None, online={"actor_objective": "sac"}),
    Method("naive_finetune", "AWAC pretraining, then SAC updates online (same uniform buffer)",
           pretrain={}, online={"actor_objective": "sac"}),
    Method("awac", "AWAC offline and online: twin critics, min, uniform replay (rlkit)",
           pretrain={}, online={}),
    Method("awac_br_ens", "AWAC + balanced replay + 5 critics mean-std + conservative KL guard",
           pretrain=ENSEMBLE, online=ENSEMBLE),
    # ablations of awac_br_ens: one component each on top of plain AWAC (--methods to run them)
    Method("awac_guard", "plain AWAC (its pretraining) + the conservative KL guard online",
           pretrain={}, online=GUARD),
    Method("awac_ens", "AWAC with 5 critics mean-std, offline and online; uniform replay",
           pretrain=FIVE_CRITICS, online=FIVE_CRITICS),
    Method("awac_br", "plain AWAC (its pretraining) + balanced replay online",
           pretrain={}, online=BALANCED_REPLAY),
    # the guard's other mechanism, alone: the offline snapshot acts while evaluations trail it
    Method("awac_fallback", "plain AWAC (its pretraining) + the guard's fallback rule online",
           pretrain={}, online={"collapse_guard": {"fallback": True}}),
)}
# RLPD (Ball et al. 2023) and the product's default share these critic, data and schedule parts
RLPD_G = 10  # updates per env step (RLPD's paper: 20; HIL-SERL: 2); the default's G too
RLPD_CRITICS = {"n_critics": 10, "critic_aggregation": "subset_min", "critic_subset": 2,
                "critic_layer_norm": True}
RLPD_PARTS = {**RLPD_CRITICS, "replay": "symmetric", "symmetric_offline_fraction": 0.5}
NO_CRITIC_WARMUP = {"critic_warmup_updates": 0}
# the default's critic warm-up is 2000 updates, 200 env steps at G = 10: at G = 1 as many steps
CRITIC_WARMUP_AT_G1 = {"critic_warmup_updates": 200}


def ablation(name: str, summary: str, pretrain: dict[str, Any], online: dict[str, Any],
             finetune: dict[str, Any] | None = None) -> Method:
    """The default (the task file's settings) with one component back to the paper's AWAC
    (docs/results.md says how earlier ablations were defined)."""
    return Method(name, summary, pretrain=pretrain, online=online, finetune=finetune or {},
                  product=True)


METHODS.update({m.name: m for m in (
    Method("rlpd", "RLPD: SAC from scratch, symmetric 50/50 sampling, LayerNorm, 10 critics "
           "(min of a random 2), G updates per env step, the actor every G",
           pretrain=None, online={**RLPD_PARTS, "actor_objective": "sac",
                                  "actor_update_every": RLPD_G},
           finetune={"updates_per_env_step": RLPD_G}),
    Method("default", "the task file's AWAC as shipped (its awac and finetune settings)",
           pretrain={}, online={}, product=True),
    # Ablations: one component of the default back to the paper's AWAC each (``ablation``).
    ablation("default_uniform", "default with uniform replay instead of symmetric sampling",
             pretrain={}, online={"replay": "uniform"}),
    ablation("default_no_ln", "default without LayerNorm in the critics",
             pretrain={"critic_layer_norm": False}, online={"critic_layer_norm": False}),
    ablation("default_2_critics", "default with 2 critics and their minimum (the paper's)",
             pretrain={"n_critics": 2, "critic_aggregation": "min"},
             online={"n_critics": 2, "critic_aggregation": "min"}),
    ablation("default_g1", "default at 1 update per env step (the actor every update; the "
             "critic warm-up over the same 200 env steps)",
             pretrain={}, online={"actor_update_every": 1, **CRITIC_WARMUP_AT_G1},
             finetune={"updates_per_env_step": 1}),
    ablation("default_no_warm", "default without the warm start",
             pretrain={}, online={"warm_start_steps": 0}),
    # not the paper's: half the task files' warm start, between the hard drawer's speed
    # without one and the clean drawer's dips without one (docs/results.md)
    ablation("default_warm_500", "default with a 500-step warm start (the task files': 1000)",
             pretrain={}, online={"warm_start_steps": 500}),
    ablation("default_no_guard", "default without the conservative KL guard",
             pretrain={}, online={"collapse_guard": {"conservative": False}}),
    # the other way round where a task ships without the guard (the valve since 2026-12-06)
    ablation("default_guard", "default with the conservative KL guard",
             pretrain={}, online=GUARD),
    ablation("default_actor_every_g", "default with the actor stepping once per env step",
             pretrain={}, online={"actor_update_every": RLPD_G}),
    ablation("default_no_offline", "default without the offline data online (WSRL)",
             pretrain={}, online={"keep_offline_data": False}),
    ablation("default_no_critic_warmup", "default without the critic warm-up (the default "
             "until 2026-12-06: the actor steps from the first online update)",
             pretrain={}, online=NO_CRITIC_WARMUP),
)})
MAIN_METHODS = ("bc", "sac_scratch", "naive_finetune", "awac", "rlpd", "default")


# ---- configs ---------------------------------------------------------------------------------
def task_config(task: str, profile: str, seed: int) -> PipelineConfig:
    """The profile with the task file's product switches back at the paper's AWAC (AWACConfig's
    defaults) and one update per env step: methods are defined against it, while the task files
    turn the measured best on for users. Sizes (networks, batch, budgets) stay the profile's."""
    config = product_config(task, profile, seed)
    paper = AWACConfig()
    config = with_awac(config, {name: getattr(paper, name) for name in PRODUCT_FIELDS})
    return dataclasses.replace(config, finetune=dataclasses.replace(config.finetune,
                                                                    updates_per_env_step=1))


def product_config(task: str, profile: str, seed: int) -> PipelineConfig:
    """The profile as the task file defines it, product switches included."""
    return load_pipeline_config(task, overrides=[f"seed={seed}"], profile=f"bench_{profile}")


def method_config(task: str, profile: str, seed: int, method: Method) -> PipelineConfig:
    """The config a method starts from (before its pretrain/online overrides)."""
    return (product_config if method.product else task_config)(task, profile, seed)


def with_awac(config: PipelineConfig, overrides: dict[str, Any]) -> PipelineConfig:
    return dataclasses.replace(config, awac=_replace_nested(config.awac, overrides))


def _replace_nested(obj: Any, overrides: dict[str, Any]) -> Any:
    changes = {k: _replace_nested(getattr(obj, k), v) if isinstance(v, dict) else v
               for k, v in overrides.items()}
    return dataclasses.replace(obj, **changes)


# ---- one seed --------------------------------------------------------------------------------
def run_seed(task: str, profile: str, seed: int, methods: list[str], out_dir: Path,
             log: Any = print) -> dict[str, dict[str, Any]]:
    """Every requested method on this seed's dataset; returns {method: result}."""
    config = task_config(task, profile, seed)
    seed_dir = out_dir / f"seed{seed}"
    seed_dir.mkdir(parents=True, exist_ok=True)
    check_settings(config, seed_dir)
    datasets = record_datasets(config, seed_dir, log)
    results = {}
    for name in methods:
        path = seed_dir / f"{name}.json"
        method = METHODS[name]
        base = method_config(task, profile, seed, method)
        settings = to_dict(online_method_config(base, method))
        if path.exists():
            results[name] = cached_result(path, settings)
            log(f"[{task} seed {seed}] {name}: cached")
            continue
        same = same_experiment(seed_dir, method, settings)
        if same is not None:
            results[name] = {**same, "method": name, "summary": method.summary,
                             "same_as": same["method"]}
            path.write_text(json.dumps(results[name], indent=1))
            log(f"[{task} seed {seed}] {name}: the same settings as {same['method']} on this "
                f"task; its result reused")
            continue
        started = time.perf_counter()
        result = run_method(base, method, datasets, seed_dir)
        result["settings"] = settings
        result["wall_s"] = time.perf_counter() - started
        path.write_text(json.dumps(result, indent=1))
        results[name] = result
        m = result["metrics"]
        log(f"[{task} seed {seed}] {name}: offline {m['offline_success']:.2f} final "
            f"{m['final_success']:.2f} drop {m['worst_early_drop']:+.2f} "
            f"to90 {m['steps_to_90']} ({result['wall_s']:.0f} s)")
    return results


def cached_result(path: Path, settings: dict[str, Any]) -> dict[str, Any]:
    """A saved result, refused (SettingsChanged) if its method's settings changed since: the
    default's come from the task file, which the seed directory's config.json does not cover."""
    result = json.loads(path.read_text())
    recorded = result.get("settings")
    changed = _differing(recorded, settings) if recorded is not None else []
    if changed:
        raise SettingsChanged(f"{path}: run with other settings ({', '.join(changed)} differ "
                              f"now); delete it to run the method again")
    return result


def same_experiment(seed_dir: Path, method: Method,
                    settings: dict[str, Any]) -> dict[str, Any] | None:
    """A recorded result of another method that ran exactly this experiment: the same online
    settings from the same pretraining. An ablation can be the default on one task (the valve
    ships without the guard the drawer keeps); running it again would spend CPU time on a copy."""
    def phases(m: Method) -> tuple[Any, ...]:  # its pretraining, and whether it goes online
        return m.product, m.pretrain, m.pretrain_on, m.online is None

    for path in sorted(seed_dir.glob("*.json")):
        other = METHODS.get(path.stem)
        if other is None or other.name == method.name or phases(other) != phases(method):
            continue
        result = json.loads(path.read_text())
        recorded = result.get("settings")
        if recorded is not None and "same_as" not in result and not _differing(recorded, settings):
            return result
    return None


class SettingsChanged(ValueError):
    """A seed directory recorded under other settings than the profile's now."""


def check_settings(config: PipelineConfig, seed_dir: Path) -> None:
    """Datasets, pretrainings and results are reused from ``seed_dir``: that is only right while
    the profile resolves to the settings it had when the directory was first used (kept in
    config.json; a directory from before this check adopts the settings of its next run)."""
    path = seed_dir / "config.json"
    settings = to_dict(config)
    with exclusive(seed_dir / "config.lock"):
        if not path.exists():
            path.write_text(json.dumps(settings, indent=1, sort_keys=True))
            return
    recorded = json.loads(path.read_text())
    changed = _differing(recorded, settings)
    if changed:
        raise SettingsChanged(f"{seed_dir}: recorded with other settings ({', '.join(changed)} "
                              f"differ from the profile now); pass another --out, or delete the "
                              f"directory to run it again")


def _differing(recorded: Any, now: Any, key: str = "", default: Any = None) -> list[str]:
    """Dotted keys whose values differ between two nested mappings. A setting the recorded side
    lacks (added to the code since) differs only where its value now is not the library's
    default (``PipelineConfig()``'s): a new switch left off changes nothing that was measured."""
    if default is None and not key:
        default = to_dict(PipelineConfig())
    if isinstance(recorded, dict) and isinstance(now, dict):
        default = default if isinstance(default, dict) else {}
        return [k for name in sorted(set(recorded) | set(now))
                for k in _differing(recorded.get(name, _ABSENT), now.get(name),
                                    f"{key}{name}.", default.get(name, _ABSENT))]
    if recorded is _ABSENT:
        return [] if now == default else [key.rstrip(".")]
    return [] if recorded == now else [key.rstrip(".")]


_ABSENT = object()  # a setting the recorded side does not have


@contextlib.contextmanager
def exclusive(lock_path: Path) -> Iterator[None]:
    """One process at a time past here. Runs of one seed in parallel (one method each, say) then
    record its dataset and pretrain each shared agent once: the others wait, then reuse them."""
    with open(lock_path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)  # released when the file closes, even on a crash
        yield


def record_datasets(config: PipelineConfig, seed_dir: Path, log: Any) -> dict[str, Path]:
    """The shared dataset, and its clean demonstrations alone (same seeds, so the same episodes)."""
    paths = {"all": seed_dir / "dataset.zarr", "demonstrations": seed_dir / "demos.zarr"}
    summary_path = seed_dir / "dataset.json"
    with exclusive(seed_dir / "dataset.lock"):
        if not summary_path.exists():
            _record(config, paths, summary_path, log)
    return paths


def _record(config: PipelineConfig, paths: dict[str, Path], summary_path: Path, log: Any) -> None:
    started = time.perf_counter()
    # No summary yet: any dataset here is the remains of a killed recording, so it starts over.
    summary = stages.record(config, paths["all"], progress=False, overwrite=True)
    demos_only = dataclasses.replace(
        config, dataset=dataclasses.replace(config.dataset, noisy_trajectories=0))
    stages.record(demos_only, paths["demonstrations"], progress=False, overwrite=True)
    info = {**dataclasses.asdict(summary), "wall_s": time.perf_counter() - started}
    summary_path.write_text(json.dumps(info, indent=1))
    log(f"[{config.env_id} seed {config.seed}] dataset: {info}")


def run_method(config: PipelineConfig, method: Method, datasets: dict[str, Path],
               seed_dir: Path) -> dict[str, Any]:
    """Pretrain (or reuse), fine-tune, evaluate. Besides the curve: compute (updates, and the
    wall time of the whole method, added by the caller) and, where the method hands over
    another policy than its last (``awac.handed_policy: best``), that policy's success on
    held-out episodes beside the offline policy's on the same episodes."""
    agent = pretrained_agent(config, method, datasets, seed_dir)
    offline_updates = agent.num_updates
    handed: dict[str, Any] | None = None
    if method.online is None:
        offline = stages.evaluate(config, agent, config.eval.episodes)
        steps = range(0, config.finetune.env_steps + 1, config.finetune.eval_every_env_steps)
        curve = [{"env_steps": s, "success_rate": offline.success_rate,
                  "mean_return": offline.mean_return} for s in steps]  # flat: no online phase
        online_updates = 0
    else:
        online_config = online_method_config(config, method)
        checks_handed = online_config.awac.handed_policy == "best"
        # Before fine-tuning: where the online settings equal the pretraining's (the default),
        # switch_config returns the same agent and fine-tuning trains it in place.
        offline_holdout = holdout_success(online_config, agent) if checks_handed else None
        agent = switch_config(agent, online_config.awac, config.seed)
        started = agent.num_updates
        # Only a method without its result JSON runs, so an online run here was killed: restart.
        tuned = stages.finetune(online_config, seed_dir / method.name, datasets["all"],
                                progress=False, agent=agent, overwrite=True)
        curve = [dataclasses.asdict(p) for p in tuned.curve]
        online_updates = agent.num_updates - started
        if offline_holdout is not None:
            handed = handed_check(online_config, offline_holdout, tuned)
    return {"method": method.name, "summary": method.summary, "seed": config.seed,
            "task": config.env_id, "eval_episodes": config.eval.episodes, "curve": curve,
            "metrics": curve_metrics(curve), "handed": handed,
            "compute": {"offline_updates": offline_updates, "online_updates": online_updates}}


def online_method_config(config: PipelineConfig, method: Method) -> PipelineConfig:
    online = with_awac(config, method.online or {})
    return dataclasses.replace(online, finetune=dataclasses.replace(online.finetune,
                                                                    **method.finetune))


def holdout_success(config: PipelineConfig, agent: AWAC) -> float:
    """Success on held-out episodes (seeds no evaluation used): the keeper chose the handed
    policy by evaluations, which flatter the one it chose."""
    first = HOLDOUT_SEED_OFFSET + config.seed * 10_007
    return stages.evaluate(config, agent, config.eval.episodes, first_seed=first).success_rate


def handed_check(config: PipelineConfig, offline_holdout: float,
                 tuned: stages.FinetuneResult) -> dict[str, Any]:
    """The handed policy and the offline one (measured before fine-tuning) on the same held-out
    episodes. ``offline_policy: pretrained`` marks results whose offline number is the pretrained
    policy's: before it, the default's was its fine-tuned agent's (trained in place)."""
    handed_agent = stages.load_agent(config, tuned.handed)
    return {"from_env_steps": tuned.handed_point.env_steps,
            "chosen_by_success": tuned.handed_point.success_rate,
            "holdout_success": holdout_success(config, handed_agent),
            "offline_holdout_success": offline_holdout, "offline_policy": "pretrained",
            "episodes": config.eval.episodes}


def recheck_offline_holdout(task: str, profile: str, seed: int, methods: list[str],
                            out_dir: Path, log: Any = print) -> int:
    """Saved results from before the held-out check measured the pretrained policy (no
    ``offline_policy`` key): their offline number is re-measured from the cached pretraining,
    on the same held-out episodes, and written back. Returns how many were rechecked."""
    seed_dir = out_dir / f"seed{seed}"
    config = task_config(task, profile, seed)
    check_settings(config, seed_dir)
    count = 0
    for name in methods:
        path = seed_dir / f"{name}.json"
        result = json.loads(path.read_text()) if path.exists() else {}
        handed = result.get("handed")
        if not handed or "offline_policy" in handed:
            continue
        method = METHODS[name]
        base = method_config(task, profile, seed, method)
        cached_result(path, to_dict(online_method_config(base, method)))  # same settings
        agent = pretrained_agent(base, method, record_datasets(config, seed_dir, log), seed_dir)
        was = handed["offline_holdout_success"]
        handed["offline_holdout_success"] = holdout_success(online_method_config(base, method),
                                                            agent)
        handed["offline_policy"] = "pretrained (rechecked)"
        path.write_text(json.dumps(result, indent=1))
        log(f"[{task} seed {seed}] {name}: offline held-out {handed['offline_holdout_success']:.2f}"
            f" (saved before the fix: {was:.2f})")
        count += 1
    return count


def pretrained_agent(config: PipelineConfig, method: Method, datasets: dict[str, Path],
                     seed_dir: Path) -> AWAC:
    """Pretrains once per (overrides, data) and reuses it: naive_finetune shares awac's, the
    default's online-only ablations share its. A method without pretraining gets a fresh agent
    shaped by its online settings (its critics)."""
    if method.pretrain is None:
        fresh = online_method_config(config, method).awac
        return new_agent(fresh, transitions(datasets["all"]), config.seed)
    pre_config = with_awac(config, method.pretrain)
    key = pretrain_key(pre_config.awac, method.pretrain_on)
    run_dir = seed_dir / f"pretrain_{abs(hash_text(key)):x}"
    checkpoint = run_dir / "offline.pt"
    with exclusive(run_dir.with_suffix(".lock")):
        if not checkpoint.exists():
            run_dir.mkdir(parents=True, exist_ok=True)
            stages.pretrain(pre_config, datasets[method.pretrain_on], run_dir, progress=False)
            (run_dir / "key.json").write_text(key)
    return stages.load_agent(pre_config, checkpoint)


# AWAC settings that do not act before online fine-tuning starts: pretrainings that differ only
# in them are one pretraining (symmetric replay samples offline data as uniform replay does
# while no online data is stored)
ONLINE_ONLY_FIELDS = ("warm_start_steps", "keep_offline_data", "actor_update_every",
                      "critic_warmup_updates", "handed_policy", "keeper_window_episodes",
                      "collapse_guard", "symmetric_offline_fraction")


def pretrain_key(awac: AWACConfig, pretrain_on: str) -> str:
    """What a pretraining depends on: its data and its AWAC settings (online-only ones left
    out), so a method shares a pretraining exactly when it would make the same one."""
    settings = config_to_dict(awac)
    for name in ONLINE_ONLY_FIELDS:
        settings.pop(name)
    if settings["replay"] == "symmetric":
        settings["replay"] = "uniform"
    return json.dumps({"on": pretrain_on, "awac": settings}, sort_keys=True)


def switch_config(agent: AWAC, config: AWACConfig, seed: int) -> AWAC:
    """The same networks and normaliser under another config. A new actor objective (naive
    fine-tuning's SAC) starts a fresh optimiser, as handing a pretrained model to another algorithm
    does; an option that keeps the objective (a guard, a replay scheme) keeps Adam's moments, so an
    ablation differs from plain AWAC in that option and in its noise alone: the switched agent draws
    from generators seeded anew with ``seed`` (kept so, to reproduce the published tables)."""
    if agent.config == config:
        return agent
    switched = AWAC(agent.obs_dim, agent.act_dim, config, seed=seed)
    switched.actor.load_state_dict(agent.actor.state_dict())
    switched.critic.load_state_dict(agent.critic.state_dict())
    switched.critic_target.load_state_dict(agent.critic_target.state_dict())
    switched.set_normalizer(agent.normalizer)
    if config.actor_objective == agent.config.actor_objective:
        switched.optimizer.load_state_dict(agent.optimizer.state_dict())
        switched.num_updates = agent.num_updates
    return switched


def hash_text(text: str) -> int:
    """A stable (process-independent) hash: Python's hash() is salted per process."""
    value = 0
    for ch in text.encode():
        value = (value * 131 + ch) % (2**61 - 1)
    return value


# ---- metrics ---------------------------------------------------------------------------------
def curve_metrics(curve: list[dict[str, float]]) -> dict[str, Any]:
    """offline success (step 0), worst early drop (offline - min of the first online evals; > 0 is a
    drop), final success, env steps to the first evaluation >= 90% (None: not reached), the
    lowest and the mean online evaluation, and success at each of BUDGETS (the evaluation at that
    step, or None where none was made there: nothing is interpolated). The mean of the online
    evaluations is the least noisy of these: a threshold is crossed by one lucky evaluation."""
    offline = curve[0]["success_rate"]
    early = [p["success_rate"] for p in curve[1:1 + EARLY_EVALS]] or [offline]
    reached = [p["env_steps"] for p in curve if p["success_rate"] >= SUCCESS_TARGET]
    online = [p["success_rate"] for p in curve[1:]] or [offline]
    return {"offline_success": offline, "worst_early_drop": offline - min(early),
            "final_success": curve[-1]["success_rate"],
            "steps_to_90": reached[0] if reached else None,
            "min_online_success": min(online),
            "mean_online_success": float(np.mean(online)),
            "at": {str(b): budget_success(curve, b) for b in BUDGETS}}


def budget_success(curve: list[dict[str, float]], budget: int) -> float | None:
    """The evaluation made at ``budget`` online env steps. Evaluations fall due after whole
    episodes, so a few steps past their nominal step: one within BUDGET_SLACK_STEPS after
    ``budget`` counts; otherwise there is none (None)."""
    for point in curve[1:]:
        if budget <= point["env_steps"] < budget + BUDGET_SLACK_STEPS:
            return point["success_rate"]
    return None


# ---- report ----------------------------------------------------------------------------------
def load_results(out_dir: Path, methods: list[str]) -> dict[str, list[dict[str, Any]]]:
    runs: dict[str, list[dict[str, Any]]] = {m: [] for m in methods}
    for seed_dir in sorted(out_dir.glob("seed*")):
        for name in methods:
            path = seed_dir / f"{name}.json"
            if path.exists():
                runs[name].append(json.loads(path.read_text()))
    return with_metrics(runs)


def with_metrics(runs: dict[str, list[dict[str, Any]]]) -> dict[str, list[dict[str, Any]]]:
    """Every result's metrics recomputed from its curve, so all tables read today's definitions
    (results saved before a metric existed lack it)."""
    for results in runs.values():
        for result in results:
            result["metrics"] = curve_metrics(result["curve"])
    return runs


def table(runs: dict[str, list[dict[str, Any]]]) -> str:
    """Mean [min, max] over seeds; steps to 90% as per-seed values ('-' = not reached)."""
    rows = ["| method | seeds | offline success | worst early drop | final success | "
            "env steps to 90% (per seed) |", "|---|---|---|---|---|---|"]
    for name, results in runs.items():
        if not results:
            continue
        metrics = [r["metrics"] for r in results]
        to90 = ", ".join("-" if m["steps_to_90"] is None else str(m["steps_to_90"])
                         for m in metrics)
        rows.append(f"| {name} | {len(results)} | {_spread(metrics, 'offline_success')} | "
                    f"{_spread(metrics, 'worst_early_drop')} | "
                    f"{_spread(metrics, 'final_success')} | {to90} |")
    return "\n".join(rows)


def _spread(metrics: list[dict[str, Any]], key: str) -> str:
    values = np.array([m[key] for m in metrics], dtype=float)
    return f"{values.mean():.2f} [{values.min():.2f}, {values.max():.2f}]"


def success_matrix(results: list[dict[str, Any]]) -> tuple[np.ndarray, np.ndarray]:
    """(env steps, success) as (seeds, evaluations) arrays, cut to the shortest curve."""
    n = min(len(r["curve"]) for r in results)
    steps = np.array([[p["env_steps"] for p in r["curve"][:n]] for r in results])
    success = np.array([[p["success_rate"] for p in r["curve"][:n]] for r in results])
    return steps, success


def curves(runs: dict[str, list[dict[str, Any]]]) -> str:
    """Success at every evaluation, step 0 first: the mean over seeds, then each seed."""
    rows = []
    for name, results in runs.items():
        if not results:
            continue
        _, success = success_matrix(results)
        rows.append(f"| {name} | mean | {' '.join(f'{v:.2f}' for v in success.mean(axis=0))} |")
        for result, seed_success in zip(results, success):
            rows.append(f"| {name} | seed {result['seed']} | "
                        f"{' '.join(f'{v:.2f}' for v in seed_success)} |")
    return "\n".join(["| method | seeds | success at each evaluation |", "|---|---|---|", *rows])


def plot(runs: dict[str, list[dict[str, Any]]], title: str, path: Path) -> None:
    """One panel per method: each seed as a thin line, the mean bold, the range over seeds shaded."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = {name: results for name, results in runs.items() if results}
    fig, axes = plt.subplots(1, len(shown), figsize=(3.0 * len(shown), 3.2), sharey=True,
                             squeeze=False)
    for ax, (name, results) in zip(axes[0], shown.items()):
        steps, success = success_matrix(results)
        for seed_steps, seed_success in zip(steps, success):
            ax.plot(seed_steps, seed_success, lw=0.8, alpha=0.6, color="grey")
        mean_steps = steps.mean(axis=0)
        ax.fill_between(mean_steps, success.min(axis=0), success.max(axis=0), alpha=0.2)
        ax.plot(mean_steps, success.mean(axis=0), marker="o", ms=3, lw=2)
        ax.axhline(SUCCESS_TARGET, color="black", lw=0.6, ls="--")
        ax.set(title=f"{name} (n={len(results)})", xlabel="online env steps", ylim=(-0.03, 1.03))
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("success rate (deterministic)")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def budget_table(runs: dict[str, list[dict[str, Any]]]) -> str:
    """The toolkit study's table: steps to 90% (median over seeds, reached in how many), mean
    success at each budget that was measured ('n/m': not measured), worst early drop and the
    lowest and the mean online evaluation (mean [min, max]), the handed policy against the offline one on
    held-out episodes (means; the offline one 'n/m' while a seed's result predates measuring it
    before fine-tuning: --recheck-offline-holdout), and compute (mean online updates, mean wall
    minutes)."""
    head = ("| method | seeds | steps to 90% median (reached) | "
            + " | ".join(f"at {b // 1000}k" for b in BUDGETS)
            + " | worst early drop | lowest online | mean online | "
              "handed vs offline (held out) | online updates | wall min |")
    rows = [head, "|" + "---|" * (9 + len(BUDGETS))]
    for name, results in runs.items():
        if not results:
            continue
        metrics = [r["metrics"] for r in results]
        reached = [m["steps_to_90"] for m in metrics if m["steps_to_90"] is not None]
        median = _median_steps([m["steps_to_90"] for m in metrics])
        at = []
        for b in BUDGETS:
            values = [m.get("at", {}).get(str(b)) for m in metrics]
            measured = [v for v in values if v is not None]
            at.append(f"{np.mean(measured):.2f}" if len(measured) == len(values) else "n/m")
        handed = [r["handed"] for r in results if r.get("handed")]
        measured = all("offline_policy" in h for h in handed)  # else: see handed_check
        offline_text = (f"{np.mean([h['offline_holdout_success'] for h in handed]):.2f}"
                        if handed and measured else "n/m")
        handed_text = (f"{np.mean([h['holdout_success'] for h in handed]):.2f} vs "
                       f"{offline_text}" if handed else "-")
        compute = [r.get("compute", {}).get("online_updates") for r in results]
        updates = (f"{np.mean(compute):.0f}" if all(c is not None for c in compute) else "-")
        wall = np.mean([r.get("wall_s", np.nan) for r in results]) / 60.0
        rows.append(f"| {name} | {len(results)} | {median} ({len(reached)}/{len(results)}) | "
                    + " | ".join(at)
                    + f" | {_spread(metrics, 'worst_early_drop')} | "
                    f"{_spread(metrics, 'min_online_success')} | "
                    f"{_spread(metrics, 'mean_online_success')} | {handed_text} | {updates} | "
                    f"{wall:.0f} |")
    return "\n".join(rows)


def _median_steps(values: list[int | None]) -> str:
    """The median over seeds with "not reached" counted as later than any reached: '-' when at
    least half the seeds did not reach it."""
    ordered = sorted(values, key=lambda v: (v is None, v or 0))
    n = len(ordered)
    middle = ordered[(n - 1) // 2:n // 2 + 1]
    if any(v is None for v in middle):
        return "-"
    return f"{np.mean(middle):.0f}"


def plot_overlay(runs: dict[str, list[dict[str, Any]]], title: str, path: Path) -> None:
    """All methods on one axis: the mean over seeds at each evaluation (markers where measured,
    lines joining consecutive evaluations only), a band of one standard error across seeds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    for name, results in runs.items():
        if not results:
            continue
        steps, success = success_matrix(results)
        mean_steps, mean = steps.mean(axis=0), success.mean(axis=0)
        sem = success.std(axis=0, ddof=1) / np.sqrt(len(results)) if len(results) > 1 else 0 * mean
        line, = ax.plot(mean_steps, mean, marker="o", ms=3, lw=1.5,
                        label=f"{name} (n={len(results)})")
        ax.fill_between(mean_steps, mean - sem, mean + sem, alpha=0.15, color=line.get_color())
    ax.axhline(SUCCESS_TARGET, color="black", lw=0.6, ls="--")
    ax.set(xlabel="online env steps", ylabel="success rate (deterministic)", ylim=(-0.03, 1.03),
           title=title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def paired_table(runs: dict[str, list[dict[str, Any]]], reference: str = "default") -> str:
    """Each method against ``reference`` on the seeds both ran (same datasets): the per-seed
    differences (method - reference) of the offline success, the mean online evaluation and the
    last evaluation, mean [min, max], and in how many seeds the mean online one is higher. An
    ablation run on fewer seeds is compared with the reference on those seeds only ('' when
    there is no reference)."""
    by_seed = {r["seed"]: r["metrics"] for r in runs.get(reference, [])}
    rows = [f"| method - {reference}, same seeds | seeds | offline | mean online | final | "
            f"mean online higher in |", "|---|---|---|---|---|---|"]
    for name, results in runs.items():
        pairs = [(r["metrics"], by_seed[r["seed"]]) for r in results
                 if r["seed"] in by_seed]
        if name == reference or not pairs:
            continue
        deltas = {key: [{"d": m[key] - ref[key]} for m, ref in pairs]
                  for key in ("offline_success", "mean_online_success", "final_success")}
        higher = sum(d["d"] > 0 for d in deltas["mean_online_success"])
        rows.append(f"| {name} | {len(pairs)} | {_spread(deltas['offline_success'], 'd')} | "
                    f"{_spread(deltas['mean_online_success'], 'd')} | "
                    f"{_spread(deltas['final_success'], 'd')} | {higher} of {len(pairs)} |")
    return "\n".join(rows) if len(rows) > 2 else ""


def report(task: str, profile: str, out_dir: Path, methods: list[str], figures: Path) -> str:
    runs = load_results(out_dir, methods)
    text = f"{table(runs)}\n\n{budget_table(runs)}\n\n{paired_table(runs)}\n\n{curves(runs)}"
    name = f"{task}_{profile}"
    figures.mkdir(parents=True, exist_ok=True)
    (figures / f"{name}.json").write_text(json.dumps(runs, indent=1))
    title = f"{task}, profile {profile}: mean (bold), range (shaded), seeds (grey)"
    plot(runs, title, figures / f"{name}.png")
    plot_overlay(runs, f"{task}, profile {profile}: mean, band = 1 SE across seeds",
                 figures / f"{name}_overlay.png")
    return text


def report_json(path: Path) -> str:
    """The tables of a saved figure JSON (an earlier study's runs), metrics recomputed from the
    curves: success at a budget only where an evaluation was made there."""
    runs = with_metrics(json.loads(path.read_text()))
    return f"{table(runs)}\n\n{budget_table(runs)}"


# ---- command line ----------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].replace("\n", " "))
    parser.add_argument("--task", choices=("valve", "drawer"), required=True)
    parser.add_argument("--profile", default="quick", help="bench_<profile> in the task's YAML")
    parser.add_argument("--seeds", type=int, default=3, help="how many seeds")
    parser.add_argument("--seed-start", type=int, default=0)
    parser.add_argument("--methods", default=",".join(MAIN_METHODS),
                        help=f"comma-separated, from {', '.join(METHODS)} (default: "
                             f"{','.join(MAIN_METHODS)}; default_* are one-switch ablations of "
                             f"default, awac_* the components of awac_br_ens)")
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "experiments")
    parser.add_argument("--figures", type=Path, default=REPO / "docs" / "figures")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--report-only", action="store_true", help="table and plot of saved runs")
    parser.add_argument("--recheck-offline-holdout", action="store_true",
                        help="re-measure the offline policy's held-out success of saved results "
                             "from before it was measured before fine-tuning, then report")
    parser.add_argument("--report-json", type=Path,
                        help="print the tables of a saved figure JSON (docs/figures/*.json) and "
                             "exit")
    args = parser.parse_args(argv)
    if args.report_json:
        print(report_json(args.report_json))
        return 0
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        parser.error(f"--methods: unknown {unknown}; known: {list(METHODS)}")
    torch.set_num_threads(args.threads)
    # One process runs method after method, each an agent compiled on its own (where its config
    # says compile): past dynamo's default of 8 recompilations the later ones ran uncompiled.
    torch._dynamo.config.recompile_limit = 64
    out_dir = args.out / f"{args.task}_{args.profile}"

    def log(message: str) -> None:
        print(f"{time.strftime('%H:%M:%S')} {message}", flush=True)

    if args.recheck_offline_holdout:
        for seed in range(args.seed_start, args.seed_start + args.seeds):
            if (out_dir / f"seed{seed}").exists():
                recheck_offline_holdout(args.task, args.profile, seed, methods, out_dir, log)
    elif not args.report_only:
        for seed in range(args.seed_start, args.seed_start + args.seeds):
            try:
                run_seed(args.task, args.profile, seed, methods, out_dir, log)
            except SettingsChanged as err:
                print(f"experiments: {err}", file=sys.stderr)
                return 2
    print(report(args.task, args.profile, out_dir, methods, args.figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
