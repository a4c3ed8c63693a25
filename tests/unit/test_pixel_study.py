"""bench/pixel_study.py's image-reward condition at tiny sizes: the classifier made by the
``robot-rl reward`` commands on a second dataset of the seed, the online episodes rewarded by it
and not by the twin's rule, one offline policy shared with ``drq``."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from robot_rl.data import EpisodeStore
from robot_rl.reward import SuccessDetector, load_classifier

REPO = Path(__file__).resolve().parents[2]
TINY = ["dataset.demonstrations=1", "dataset.noisy_trajectories=1", "pretrain.updates=20",
        "pretrain.log_every_updates=10", "finetune.env_steps=60",
        "finetune.eval_every_env_steps=60", "eval.episodes=1", "awac.batch_size=32",
        "encoder.channels=[4,8]", "encoder.strides=[2,2]", "encoder.feature_dim=8",
        "awac.actor_hidden_sizes=[16,16]", "awac.critic_hidden_sizes=[16,16]"]


@pytest.fixture(scope="module")
def pixel_study():
    sys.path.insert(0, str(REPO / "bench"))
    try:
        import pixel_study
    finally:
        sys.path.pop(0)
    return pixel_study


def test_the_image_reward_condition_rewards_online_episodes_by_its_classifier(
        pixel_study, tmp_path: Path, one_torch_thread: None) -> None:
    result = pixel_study.run("drawer", "drq_image_reward", 0, TINY, tmp_path,
                             classifier_demos=2)
    path = pixel_study.classifier_path(tmp_path, "drawer", 0)
    assert result["config"]["reward"] == {"source": "classifier", "classifier": str(path),
                                          "threshold": 0.0, "debounce_frames": 0}
    held_out = result["classifier"]["held_out"]
    assert result["classifier"]["held_out_episodes"] == "2-3" and "precision" in \
        held_out["frames"]
    run_dir = tmp_path / "drawer" / "seed0" / "drq_image_reward"
    store = EpisodeStore.open(run_dir / "online.zarr")
    assert result["misdetections"]["episodes"] == store.n_episodes >= 1
    assert all("true_success" in store.episode_info(i)  # kept only where a classifier judged
               for i in range(store.n_episodes))
    # every online step's reward is the classifier's on the state and view after it
    detector = SuccessDetector(load_classifier(path))
    steps = store.episode(0, ["next_observation", "reward", "camera_color"])
    detector.reset()
    said = [detector.step({"observation": obs, "camera_color": view}) for obs, view in
            zip(steps["next_observation"][:-1], steps["camera_color"][1:])]
    np.testing.assert_array_equal(steps["reward"][:-1], np.where(said, 0.0, -1.0))
    # drq starts from the very same offline policy (pretrained once for both)
    pixel_study.run("drawer", "drq", 0, TINY, tmp_path)
    offline = [(tmp_path / "drawer" / "seed0" / m / "offline.pt").read_bytes()
               for m in ("drq", "drq_image_reward")]
    assert offline[0] == offline[1]
