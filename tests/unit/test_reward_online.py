"""Online episodes in process whose reward and success come from a classifier: on the real twin,
the classifier's word ends and rewards the episode, the twin's success is kept beside it, and
misdetections are counted."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytest

from robot_rl.data import EpisodeStore
from robot_rl.pipeline import stages
from robot_rl.pipeline.hil import misdetections, run_online_episode
from robot_rl.pipeline.rollout import GatedEnv
from robot_rl.reward import SuccessClassifier, SuccessDetector
from robot_rl.run_config import load_pipeline_config
from robot_rl.tasks.valve import ValveTaskConfig

ERROR_COS = 21  # column of cos(goal - angle) in the valve's observation (its error_cos_sin)


def _constant(logit: float) -> SuccessClassifier:
    return SuccessClassifier([("observation", ERROR_COS, ERROR_COS + 1)], np.zeros(1),
                             np.ones(1), [(np.zeros((1, 1)), np.array([logit]))], 0.5, 1)


def _valve_rule() -> SuccessClassifier:
    """The valve's own rule as a classifier: cos(error) > cos(tolerance)."""
    edge = math.cos(ValveTaskConfig().success_tolerance_rad)
    return SuccessClassifier([("observation", ERROR_COS, ERROR_COS + 1)], np.zeros(1),
                             np.ones(1), [(np.array([[1e4]]), np.array([-1e4 * edge]))], 0.5, 1)


@pytest.fixture
def env():
    gated = GatedEnv(load_pipeline_config("valve", profile="bench_tiny"))
    assert gated.env.unwrapped.task.layout["error_cos_sin"].start == ERROR_COS
    yield gated
    gated.close()


def _expert_policy(env: GatedEnv, seed: int):
    expert = env.expert(0.0, seed)
    expert.reset()
    return expert.act


def test_a_classifier_that_always_fires_ends_the_episode_with_an_unearned_reward(env) -> None:
    episode = run_online_episode(env, _expert_policy(env, 0), seed=4,
                                 success_model=SuccessDetector(_constant(60.0)))
    assert episode.length == 1 and episode.success and not episode.info["true_success"]
    assert episode.steps["reward"].tolist() == [0.0] and episode.steps["terminated"].all()
    assert misdetections(episode) == {"episode_true_success": 0.0, "reward_false_success": 1.0,
                                      "reward_missed_success": 0.0}


def test_a_classifier_that_never_fires_lets_a_real_success_run_on_unrewarded(env) -> None:
    episode = run_online_episode(env, _expert_policy(env, 0), seed=4,
                                 success_model=SuccessDetector(_constant(-60.0)))
    assert episode.length == env.env.unwrapped.task.episode_length_steps   # not ended at success
    assert not episode.success and episode.info["true_success"]
    assert (episode.steps["reward"] == -1.0).all() and not episode.steps["terminated"].any()
    assert misdetections(episode)["reward_missed_success"] == 1.0


def test_a_classifier_that_learned_the_rule_gives_the_rules_episode(env) -> None:
    ruled = run_online_episode(env, _expert_policy(env, 0), seed=4)
    learned = run_online_episode(env, _expert_policy(env, 0), seed=4,
                                 success_model=SuccessDetector(_valve_rule()))
    assert ruled.success and learned.success and learned.info["true_success"]
    for key in ("reward", "terminated", "action"):
        np.testing.assert_array_equal(learned.steps[key], ruled.steps[key], err_msg=key)


def test_finetune_takes_its_reward_from_the_configured_classifier(tmp_path: Path,
                                                                  one_torch_thread: None) -> None:
    path = _constant(60.0).save(tmp_path / "always.safetensors")
    config = load_pipeline_config("valve", ["reward.source=classifier",
                                            f"reward.classifier={path}"], "bench_hil_tiny")
    dataset = tmp_path / "dataset.zarr"
    stages.record(config, dataset, progress=False)
    stages.pretrain(config, dataset, tmp_path, progress=False)
    stages.finetune(config, tmp_path, dataset, progress=False)
    with EpisodeStore.open(tmp_path / "online.zarr") as store:
        infos = [store.episode_info(i) for i in range(store.n_episodes)]
        lengths = store.episode_lengths
    assert (lengths == 1).all() and all(i["success"] and "true_success" in i for i in infos)
    with open(tmp_path / "finetune" / "metrics.csv") as handle:
        names = {row["name"] for row in csv.DictReader(handle)}
    assert {"reward_false_success", "reward_missed_success", "episode_true_success"} <= names
    missing = load_pipeline_config("valve", ["reward.source=classifier"], "bench_hil_tiny")
    with pytest.raises(ValueError, match="reward.classifier names no file"):
        stages.finetune(missing, tmp_path, dataset, progress=False, overwrite=True)
