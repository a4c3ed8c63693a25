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


def test_a_setting_added_since_is_a_change_only_where_it_is_not_at_its_default(
        tmp_path: Path) -> None:
    """A directory recorded before a switch existed stays usable while the switch is off."""
    config = experiments.task_config("valve", "tiny", 0)
    experiments.check_settings(config, tmp_path)
    recorded = json.loads((tmp_path / "config.json").read_text())
    del recorded["awac"]["critic_warmup_updates"]  # as written before the switch existed
    (tmp_path / "config.json").write_text(json.dumps(recorded))
    experiments.check_settings(config, tmp_path)
    warmed = experiments.with_awac(config, {"critic_warmup_updates": 100})
    with pytest.raises(experiments.SettingsChanged, match=r"awac\.critic_warmup_updates"):
        experiments.check_settings(warmed, tmp_path)
    del recorded["awac"]["n_critics"]  # a setting at another value than its default: a change
    (tmp_path / "config.json").write_text(json.dumps(recorded))
    wider = experiments.with_awac(config, {"n_critics": 3})
    with pytest.raises(experiments.SettingsChanged, match=r"awac\.n_critics"):
        experiments.check_settings(wider, tmp_path)


def test_methods_reset_the_task_files_toolkit_and_default_keeps_it() -> None:
    from robot_rl.learning.config import AWACConfig
    from robot_rl.run_config import load_pipeline_config
    shipped = load_pipeline_config("valve", profile="bench_rlpd", overrides=["seed=0"])
    paper = experiments.task_config("valve", "rlpd", seed=0)
    for name in experiments.PRODUCT_FIELDS:
        assert getattr(paper.awac, name) == getattr(AWACConfig(), name)
    assert paper.finetune.updates_per_env_step == 1
    assert paper.awac.critic_hidden_sizes == shipped.awac.critic_hidden_sizes  # sizes stay
    default = experiments.METHODS["default"]
    assert experiments.online_method_config(
        experiments.method_config("valve", "rlpd", 0, default), default) == shipped
    assert shipped.awac.replay == "symmetric" and shipped.finetune.updates_per_env_step > 1


def test_rlpd_is_a_fresh_sac_agent_with_the_toolkits_critics(tmp_path: Path) -> None:
    method = experiments.METHODS["rlpd"]
    config = experiments.online_method_config(experiments.task_config("valve", "tiny", 0), method)
    assert config.awac.actor_objective == "sac" and config.awac.replay == "symmetric"
    assert config.awac.critic_layer_norm and config.awac.n_critics == 10
    assert config.finetune.updates_per_env_step == experiments.RLPD_G
    seed_dir = tmp_path / "seed0"
    seed_dir.mkdir()
    datasets = experiments.record_datasets(experiments.task_config("valve", "tiny", 0), seed_dir,
                                           print)
    agent = experiments.pretrained_agent(experiments.task_config("valve", "tiny", 0), method,
                                         datasets, seed_dir)
    assert agent.num_updates == 0 and agent.critic.net.n_members == 10


def test_a_pretraining_is_shared_exactly_when_it_would_be_the_same() -> None:
    product = experiments.product_config("valve", "tiny", 0).awac
    key = experiments.pretrain_key
    for name in ("default_no_warm", "default_no_guard", "default_g1", "default_uniform"):
        online_only = experiments.with_awac(
            experiments.product_config("valve", "tiny", 0), experiments.METHODS[name].pretrain)
        assert key(online_only.awac, "all") == key(product, "all")
    no_ln = experiments.with_awac(experiments.product_config("valve", "tiny", 0),
                                  experiments.METHODS["default_no_ln"].pretrain).awac
    assert key(no_ln, "all") != key(product, "all")
    assert key(experiments.task_config("valve", "tiny", 0).awac, "all") != key(product, "all")


def test_budget_success_is_the_evaluation_made_there_or_none() -> None:
    curve = [{"env_steps": s, "success_rate": r} for s, r in
             [(0, 0.5), (1012, 0.6), (2031, 0.7), (3010, 0.8), (5060, 0.9)]]
    assert experiments.budget_success(curve, 2000) == 0.7
    assert experiments.budget_success(curve, 5000) == 0.9
    assert experiments.budget_success(curve, 10000) is None  # not measured: not interpolated
    coarse = [{"env_steps": s, "success_rate": r} for s, r in [(0, 0.5), (5003, 0.9)]]
    assert experiments.budget_success(coarse, 2000) is None
    metrics = experiments.curve_metrics([{**p, "mean_return": 0.0} for p in curve])
    assert metrics["at"]["2000"] == 0.7 and metrics["min_online_success"] == 0.6
    assert metrics["mean_online_success"] == pytest.approx((0.6 + 0.7 + 0.8 + 0.9) / 4)
    row = experiments.budget_table({"m": [{"curve": curve, "metrics": metrics, "handed": None,
                                           "wall_s": 60.0, "compute": {"online_updates": 10}}]}
                                   ).splitlines()[-1]
    assert "| 0.60 [0.60, 0.60] | 0.75 [0.75, 0.75] |" in row  # lowest, then mean online


def test_the_paired_table_compares_each_method_with_the_default_on_shared_seeds() -> None:
    def run(seed: int, rates: list[float]) -> dict:
        return {"seed": seed, "curve": [{"env_steps": 1000 * i, "success_rate": r,
                                         "mean_return": 0.0} for i, r in enumerate(rates)]}

    runs = {"default": [run(0, [0.5, 0.6, 0.8]), run(1, [0.4, 0.6, 0.6]), run(2, [0.5, 0.5, 0.5])],
            "ablation": [run(1, [0.4, 0.7, 0.9]), run(0, [0.3, 0.4, 0.6])],  # seed 2 not run
            "other": [run(7, [0.0, 0.0, 0.0])]}  # no seed in common: no row
    rows = experiments.paired_table(experiments.with_metrics(runs)).splitlines()
    assert len(rows) == 3 and rows[2].startswith("| ablation | 2 |")
    # seed 0: offline -0.2, mean online 0.5 - 0.7 = -0.2, final -0.2; seed 1: 0, +0.2, +0.3
    assert ("| -0.10 [-0.20, 0.00] | 0.00 [-0.20, 0.20] | 0.05 [-0.20, 0.30] | 1 of 2 |"
            in rows[2])
    assert experiments.paired_table({"ablation": runs["ablation"]}) == ""


def test_a_cached_result_under_changed_settings_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "default.json"
    path.write_text(json.dumps({"settings": {"awac": {"n_critics": 10}}, "metrics": {}}))
    assert experiments.cached_result(path, {"awac": {"n_critics": 10}})["metrics"] == {}
    with pytest.raises(experiments.SettingsChanged, match="awac.n_critics"):
        experiments.cached_result(path, {"awac": {"n_critics": 2}})


def _actor_vector(agent) -> torch.Tensor:
    return torch.cat([p.detach().flatten().clone() for p in agent.actor.parameters()])


def test_the_held_out_offline_policy_is_the_pretrained_one(tmp_path: Path, monkeypatch) -> None:
    """The default's online settings equal its pretraining's, so switch_config hands fine-tuning
    the pretrained agent itself, trained in place: the held-out check then measured the
    fine-tuned actor as 'offline' (before the fix no held-out evaluation saw the pretrained one)."""
    seed_dir = tmp_path / "seed0"
    seed_dir.mkdir()
    config = experiments.task_config("valve", "tiny", 0)
    datasets = experiments.record_datasets(config, seed_dir, print)
    method = experiments.METHODS["default"]
    base = experiments.method_config("valve", "tiny", 0, method)
    assert experiments.online_method_config(base, method).awac.handed_policy == "best"
    held_out: list[torch.Tensor] = []
    evaluate = experiments.stages.evaluate

    def spying_evaluate(config, agent, episodes, **kwargs):
        if kwargs.get("first_seed") == experiments.HOLDOUT_SEED_OFFSET + config.seed * 10_007:
            held_out.append(_actor_vector(agent))
        return evaluate(config, agent, episodes, **kwargs)

    monkeypatch.setattr(experiments.stages, "evaluate", spying_evaluate)
    result = experiments.run_method(base, method, datasets, seed_dir)
    pretrained = _actor_vector(experiments.pretrained_agent(base, method, datasets, seed_dir))
    tuned = _actor_vector(experiments.stages.load_agent(base, seed_dir / "default" /
                                                        "finetuned.pt"))

    assert result["compute"]["online_updates"] > 0 and not torch.equal(pretrained, tuned)
    assert len(held_out) == 2
    assert sum(torch.equal(v, pretrained) for v in held_out) == 1  # the offline check's
    assert result["handed"]["offline_policy"] == "pretrained"

    # A result saved before the fix (no marker, the fine-tuned actor's number) is rechecked from
    # the cached pretraining: the same held-out episodes give the number measured above.
    saved = {**result, "settings": experiments.to_dict(experiments.online_method_config(base,
                                                                                        method))}
    saved["handed"] = {**result["handed"], "offline_holdout_success": -1.0}
    del saved["handed"]["offline_policy"]
    (seed_dir / "default.json").write_text(json.dumps(saved))
    runs = experiments.load_results(tmp_path, ["default"])
    assert "vs n/m |" in experiments.budget_table(runs)
    assert experiments.recheck_offline_holdout("valve", "tiny", 0, ["default"], tmp_path) == 1
    rechecked = json.loads((seed_dir / "default.json").read_text())["handed"]
    assert rechecked["offline_holdout_success"] == result["handed"]["offline_holdout_success"]
    assert rechecked["offline_policy"] == "pretrained (rechecked)"


@pytest.mark.parametrize("task", ["valve", "drawer"])
def test_each_ablation_is_one_switch_from_the_default_as_shipped(task: str) -> None:
    """The ablation table's reference is the task file's default: each ablation changes its
    own component and nothing else (they once kept the critic warm-up off as well). The guard
    is the one switch the task files set differently: the valve ships without it, the drawer
    with it, so one of the two guard ablations is the default itself on each."""
    def online(name: str) -> dict:
        method = experiments.METHODS[name]
        return experiments.to_dict(experiments.online_method_config(
            experiments.method_config(task, "rlpd", 0, method), method))

    default = online("default")
    guard = ["awac.collapse_guard.conservative"]
    expected = {
        "default_uniform": ["awac.replay"],
        "default_no_ln": ["awac.critic_layer_norm"],
        "default_2_critics": ["awac.critic_aggregation", "awac.n_critics"],
        "default_g1": ["awac.critic_warmup_updates", "finetune.updates_per_env_step"],
        "default_no_warm": ["awac.warm_start_steps"],
        "default_warm_500": ["awac.warm_start_steps"],
        "default_no_guard": [] if task == "valve" else guard,
        "default_guard": guard if task == "valve" else [],
        "default_actor_every_g": ["awac.actor_update_every"],
        "default_no_offline": ["awac.keep_offline_data"],
        "default_no_critic_warmup": ["awac.critic_warmup_updates"],
    }
    for name, changed in expected.items():
        assert experiments._differing(default, online(name)) == changed, name


def test_a_method_that_is_another_on_this_task_reuses_its_result(tmp_path: Path) -> None:
    """The valve ships without the guard, so its default and default_no_guard are one
    experiment: the second to be asked for is the first's result, said so, not a second run.
    A method whose settings differ (the guard on) is not."""
    def online_settings(name: str) -> dict:
        method = experiments.METHODS[name]
        return experiments.to_dict(experiments.online_method_config(
            experiments.method_config("valve", "tiny", 0, method), method))

    seed_dir = tmp_path / "seed0"
    seed_dir.mkdir()
    recorded = {"method": "default_no_guard", "curve": [], "metrics": {"final_success": 0.25},
                "settings": online_settings("default_no_guard")}
    (seed_dir / "default_no_guard.json").write_text(json.dumps(recorded))
    messages: list[str] = []
    results = experiments.run_seed("valve", "tiny", 0, ["default"], tmp_path, messages.append)
    assert results["default"]["same_as"] == "default_no_guard"
    assert results["default"]["metrics"] == {"final_success": 0.25}
    assert json.loads((seed_dir / "default.json").read_text())["method"] == "default"
    assert any("same settings as default_no_guard" in m for m in messages)
    assert not (seed_dir / "default").exists()  # nothing trained
    guarded = experiments.METHODS["default_guard"]
    assert experiments.same_experiment(seed_dir, guarded, online_settings("default_guard")) is None
