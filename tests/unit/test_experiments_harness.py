"""bench/experiments.py on its tiny profile: real twin, real recording, real AWAC updates (< 30 s)."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from robot_rl.data import EpisodeStore

REPO = Path(__file__).resolve().parents[2]


def _load_harness():
    spec = importlib.util.spec_from_file_location("bench_experiments",
                                                  REPO / "bench" / "experiments.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


experiments = _load_harness()


def test_curve_metrics_drop_and_steps_to_target() -> None:
    curve = [{"env_steps": s, "success_rate": r, "mean_return": 0.0}
             for s, r in [(0, 0.6), (100, 0.2), (200, 0.5), (300, 0.9), (400, 1.0)]]
    metrics = experiments.curve_metrics(curve)
    assert metrics["offline_success"] == 0.6
    assert metrics["worst_early_drop"] == pytest.approx(0.4)  # 0.6 -> 0.2
    assert metrics["final_success"] == 1.0
    assert metrics["steps_to_90"] == 300
    never = experiments.curve_metrics([{**p, "success_rate": 0.5} for p in curve])
    assert never["steps_to_90"] is None and never["worst_early_drop"] == 0.0


def test_naive_finetune_switches_objective_keeping_weights() -> None:
    config = experiments.task_config("valve", "tiny", seed=0)
    from robot_rl.learning import AWAC
    agent = AWAC(7, 3, config.awac, seed=0)
    sac = experiments.with_awac(config, {"actor_objective": "sac"}).awac
    switched = experiments.switch_config(agent, sac, seed=0)
    assert switched.config.actor_objective == "sac" and switched.log_alpha.requires_grad
    obs = np.ones((4, 7), np.float32)
    np.testing.assert_allclose(switched.act(obs, deterministic=True),
                               agent.act(obs, deterministic=True))


def test_methods_start_from_the_papers_awac_not_the_task_files_guard() -> None:
    from robot_rl.run_config import load_pipeline_config
    assert load_pipeline_config("drawer", profile="bench_scarce").awac.collapse_guard.conservative
    config = experiments.task_config("drawer", "scarce", seed=0)
    assert not config.awac.collapse_guard.conservative  # "awac" is plain AWAC
    guarded = experiments.with_awac(config, experiments.METHODS["awac_guard"].online)
    assert guarded.awac.collapse_guard.conservative


def test_ablation_switch_keeps_the_optimiser_state() -> None:
    config = experiments.task_config("valve", "tiny", seed=0)
    from robot_rl.learning import AWAC
    agent = AWAC(7, 3, config.awac, seed=0)
    batch = {"obs": torch.randn(8, 7), "action": torch.rand(8, 3) * 2 - 1,
             "reward": -torch.ones(8), "next_obs": torch.randn(8, 7), "done": torch.zeros(8)}
    agent.update(batch)
    guarded = experiments.with_awac(config, experiments.METHODS["awac_guard"].online).awac
    switched = experiments.switch_config(agent, guarded, seed=0)
    assert switched.config.collapse_guard.conservative and switched.num_updates == 1
    before, after = agent.optimizer.state_dict()["state"], switched.optimizer.state_dict()["state"]
    assert before.keys() == after.keys() and len(after) > 0
    for key in before:
        torch.testing.assert_close(after[key]["exp_avg_sq"], before[key]["exp_avg_sq"])
    # a new objective starts Adam afresh (naive fine-tuning hands the networks to SAC)
    sac = experiments.with_awac(config, {"actor_objective": "sac"}).awac
    assert experiments.switch_config(agent, sac, seed=0).optimizer.state_dict()["state"] == {}


def test_tiny_run_two_methods_share_one_dataset(tmp_path: Path) -> None:
    out, figures = tmp_path / "runs", tmp_path / "figures"
    messages: list[str] = []
    results = experiments.run_seed("valve", "tiny", 0, ["bc", "awac"], out, messages.append)
    config = experiments.task_config("valve", "tiny", seed=0)
    n_points = 1 + config.finetune.env_steps // config.finetune.eval_every_env_steps

    for name in ("bc", "awac"):
        saved = json.loads((out / "seed0" / f"{name}.json").read_text())
        assert saved["curve"] == results[name]["curve"]
        rates = [p["success_rate"] for p in saved["curve"]]
        assert len(rates) >= n_points and all(0.0 <= r <= 1.0 for r in rates)
        metrics = saved["metrics"]  # of this curve, by the definitions (curve_metrics is tested above)
        assert metrics["offline_success"] == rates[0] and metrics["final_success"] == rates[-1]
        early = rates[1:1 + experiments.EARLY_EVALS] or rates[:1]
        assert metrics["worst_early_drop"] == pytest.approx(rates[0] - min(early))
        reached = [p["env_steps"] for p in saved["curve"] if p["success_rate"] >= 0.9]
        assert metrics["steps_to_90"] == (reached[0] if reached else None)
    assert len({p["success_rate"] for p in results["bc"]["curve"]}) == 1  # no online phase
    assert (out / "seed0" / "awac" / "online.zarr").exists()  # awac really went online
    printed = experiments.curves(experiments.load_results(out, ["bc", "awac"]))
    awac_rates = " ".join(f"{p['success_rate']:.2f}" for p in results["awac"]["curve"])
    assert f"| awac | seed 0 | {awac_rates} |" in printed.splitlines()

    # The demonstrations-only dataset (BC's) is the shared dataset's first episodes, exactly.
    everything = EpisodeStore.open(out / "seed0" / "dataset.zarr")
    demos = EpisodeStore.open(out / "seed0" / "demos.zarr")
    assert demos.n_episodes == config.dataset.demonstrations
    assert everything.n_episodes == demos.n_episodes + config.dataset.noisy_trajectories
    for index in range(demos.n_episodes):
        np.testing.assert_array_equal(demos.episode(index, ["action"])["action"],
                                      everything.episode(index, ["action"])["action"])

    # A second call reuses the saved results instead of training again.
    again = experiments.run_seed("valve", "tiny", 0, ["bc", "awac"], out, messages.append)
    assert again == results and sum("cached" in m for m in messages) == 2

    text = experiments.report("valve", "tiny", out, ["bc", "awac"], figures)
    assert "| bc | 1 |" in text and "| awac | 1 |" in text
    assert (figures / "valve_tiny.png").stat().st_size > 1000

    # A run killed before its result was written starts over: the method's online run and the
    # dataset recorded without its summary are the remains of killed work, not results to keep.
    (out / "seed0" / "awac.json").unlink()
    (out / "seed0" / "dataset.json").unlink()
    rerun = experiments.run_seed("valve", "tiny", 0, ["awac"], out, messages.append)
    assert rerun["awac"]["curve"] == results["awac"]["curve"]
    assert EpisodeStore.open(out / "seed0" / "dataset.zarr").n_episodes == everything.n_episodes


PARALLEL_METHOD = """
import importlib.util, sys
spec = importlib.util.spec_from_file_location("bench_experiments", sys.argv[1])
module = importlib.util.module_from_spec(spec)
sys.modules[spec.name] = module
spec.loader.exec_module(module)
module.run_seed("valve", "tiny", 0, [sys.argv[2]], module.Path(sys.argv[3]), print)
"""


def test_parallel_runs_of_one_seed_record_its_dataset_once(tmp_path: Path) -> None:
    """Two processes, one method each, on the same seed: before the lock, the second to start
    failed inside zarr while the first was still creating the dataset."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    runs = [subprocess.Popen([sys.executable, "-c", PARALLEL_METHOD,
                              str(REPO / "bench" / "experiments.py"), method, str(tmp_path)],
                             env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            for method in ("bc", "awac")]
    outputs = [run.communicate(timeout=300)[0] for run in runs]
    assert [run.returncode for run in runs] == [0, 0], outputs
    assert sum("dataset:" in out for out in outputs) == 1, outputs
    for method in ("bc", "awac"):
        assert json.loads((tmp_path / "seed0" / f"{method}.json").read_text())["method"] == method


def test_a_seed_directory_refuses_other_settings(tmp_path: Path) -> None:
    """Its datasets, pretrainings and results would otherwise be reused under a changed profile
    (the relative-action profile once differed from the absolute one in env_kwargs alone)."""
    config = experiments.task_config("valve", "tiny", 0)
    experiments.check_settings(config, tmp_path)
    experiments.check_settings(config, tmp_path)  # the same settings: reused
    changed = dataclasses.replace(config, env_kwargs={"config": {"action_mode": "absolute"}})
    with pytest.raises(experiments.SettingsChanged, match=r"env_kwargs\.config .*another --out"):
        experiments.check_settings(changed, tmp_path)
