"""Replaying recorded episodes in the real MuJoCo twin: the pipeline's datasets (made here by
``stages.record``) and recorder-style datasets (made by hand), through ``robot-rl dataset replay``."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageSequence

import robot_rl.sim_twin  # noqa: F401  (sets MUJOCO_GL before mujoco renders)
from robot_rl.data import EpisodeStore
from robot_rl.data.errors import DatasetError
from robot_rl.data.video import mp4_available
from robot_rl.dataset_cli import main as dataset_cli
from robot_rl.pipeline.stages import record
from robot_rl.run_config import DatasetConfig, PipelineConfig
from robot_rl.sim_twin.episode_replay import Replay, plan_replay, replay_to_video

W, H = 64, 48
SWEEP_RAD = np.array([0.0, 0.0, 0.3, 0.6, 0.9, 1.2])   # the valve turns after a still start


@pytest.fixture(scope="module")
def pipeline_dataset(tmp_path_factory):
    path = tmp_path_factory.mktemp("replay") / "pipeline.zarr"
    config = PipelineConfig(dataset=DatasetConfig(demonstrations=1, noisy_trajectories=1,
                                                  noise_std=0.4))
    record(config, path, progress=False)
    return path


def recorder_dataset(path, steps: dict[str, np.ndarray], task: str = "valve"):
    store = EpisodeStore.create(path, robot="dclaw", task=task, calibration_digest="test",
                                units={})
    store.add_episode(steps, {"success": True})
    return path


def valve_sweep_steps() -> dict[str, np.ndarray]:
    n = len(SWEEP_RAD)
    home = np.tile([0.0, -0.27, -0.97], 3).astype(np.float32)
    return {"stamp_s": np.arange(n) * 0.1,           # 10 Hz
            "joint_position_rad": np.tile(home, (n, 1)),
            "object_position": SWEEP_RAD[:, None].astype(np.float32)}


def test_recorded_state_replays_kinematically_and_frames_follow_the_valve(tmp_path) -> None:
    path = recorder_dataset(tmp_path / "rec.zarr", valve_sweep_steps())
    plan = plan_replay(path, 0)
    assert plan.source == "state" and plan.n_frames == len(SWEEP_RAD)
    assert plan.control_period_s == pytest.approx(0.1)           # from the time stamps
    frames = np.asarray(list(Replay(plan, width=W, height=H).frames()), dtype=np.int16)
    assert frames.shape == (len(SWEEP_RAD), H, W, 3)
    diff = [np.abs(frames[i + 1] - frames[i]).mean() for i in range(len(frames) - 1)]
    assert diff[0] == 0.0                        # same state, same picture: replay is exact
    assert min(diff[1:]) > 0.05                  # each turn of the valve shows
    assert np.abs(frames[-1] - frames[0]).mean() > np.abs(frames[2] - frames[0]).mean()


def test_cli_writes_the_pipeline_episode_with_one_frame_per_state(pipeline_dataset, tmp_path,
                                                                  capsys) -> None:
    with EpisodeStore.open(pipeline_dataset) as store:
        steps = int(store.episode_lengths[1])
        obs = store.episode(1, ["observation"])["observation"]
    out = tmp_path / "ep1.gif"
    code = dataset_cli(["replay", str(pipeline_dataset), "--episode", "1", "--out", str(out),
                        "--width", str(W), "--height", str(H), "--quiet"])
    printed = capsys.readouterr().out
    assert code == 0 and "(observation)" in printed and f"{steps + 1} frames" in printed
    with Image.open(out) as gif:
        assert gif.size == (W, H)
        durations = [f.info["duration"] for f in ImageSequence.Iterator(gif)]
    assert sum(durations) == (steps + 1) * 50                   # 20 Hz: the task's period
    plan = plan_replay(pipeline_dataset, 1)
    assert plan.n_frames == steps + 1 and plan.control_period_s == pytest.approx(0.05)
    # the valve angle came out of the observation's cos/sin, and it moved in this episode
    np.testing.assert_allclose(np.cos(plan.object_positions[:-1]), obs[:, 18], atol=1e-6)
    assert np.ptp(plan.object_positions) > 0.3


@pytest.mark.skipif(bool(mp4_available()), reason=f"no MP4 here: {mp4_available()}")
def test_mp4_of_an_episode_has_every_frame_at_the_size_asked(pipeline_dataset,
                                                             tmp_path) -> None:
    import imageio.v2 as imageio

    result = replay_to_video(pipeline_dataset, 0, tmp_path / "ep0.mp4", width=W, height=H,
                             progress=False)
    frames = [f for f in imageio.get_reader(result.video.path).iter_data()]
    assert len(frames) == result.plan.n_frames == result.video.frames
    assert frames[0].shape == (H, W, 3)
    assert np.abs(frames[-1].astype(int) - frames[0]).mean() > 1.0   # the valve turned


def test_dynamic_replay_reproduces_the_recorded_observations(pipeline_dataset,
                                                             tmp_path) -> None:
    result = replay_to_video(pipeline_dataset, 1, tmp_path / "dyn.gif", width=W, height=H,
                             source="actions", progress=False)
    assert result.plan.source == "actions" and result.plan.seed is not None
    with EpisodeStore.open(pipeline_dataset) as store:
        assert result.video.frames == int(store.episode_lengths[1]) + 1
    # same environment, same seed, same actions through the same gate: the same episode
    assert result.max_observation_error is not None and result.max_observation_error < 1e-5


def test_dynamic_replay_reads_actions_in_the_datasets_action_mode(tmp_path) -> None:
    """A dataset of absolute targets (every valve dataset before relative actions became the
    default) replays as targets, not as steps."""
    path = tmp_path / "absolute.zarr"
    record(PipelineConfig(env_kwargs={"config": {"action_mode": "absolute"}},
                          dataset=DatasetConfig(demonstrations=1, noisy_trajectories=0)),
           path, progress=False)
    result = replay_to_video(path, 0, tmp_path / "abs.gif", width=W, height=H,
                             source="actions", progress=False)
    assert result.plan.action_mode == "absolute"
    assert result.max_observation_error is not None and result.max_observation_error < 1e-5


def test_bad_episode_index_names_the_dataset_and_the_range(pipeline_dataset, capsys) -> None:
    code = dataset_cli(["replay", str(pipeline_dataset), "--episode", "7", "--quiet"])
    err = capsys.readouterr().err
    assert code == 1
    assert str(pipeline_dataset) in err and "episode 7 does not exist" in err
    assert "2 episode(s), indices 0..1" in err


def test_dataset_without_usable_keys_says_what_is_missing(tmp_path) -> None:
    path = recorder_dataset(tmp_path / "bare.zarr",
                            {"reward": np.zeros(4, np.float32),
                             "joint_position_rad": np.zeros((4, 9), np.float32)}, task="raw")
    with pytest.raises(DatasetError) as caught:
        plan_replay(path, 0)
    text = str(caught.value)
    assert str(path) in text and "episode 0 cannot be replayed" in text
    assert "needs recorder keys ['object_position']" in text
    assert "task 'raw' has no known observation layout" in text
    assert "key 'action'" in text and "'seed'" in text
    with pytest.raises(DatasetError, match="observation: needs key 'observation'"):
        plan_replay(recorder_dataset(tmp_path / "valve.zarr",
                                     {"reward": np.zeros(3, np.float32)}), 0, "observation")


def test_unknown_camera_is_named(tmp_path) -> None:
    plan = plan_replay(recorder_dataset(tmp_path / "rec.zarr", valve_sweep_steps()), 0)
    with pytest.raises(ValueError, match=r"camera 'top' is not in .*dclaw_valve\.xml; its "
                                         r"cameras: \['realsense'\]"):
        next(Replay(plan, width=W, height=H, camera="top").frames())


def test_an_existing_video_is_replaced_only_with_overwrite(tmp_path, capsys) -> None:
    path = recorder_dataset(tmp_path / "rec.zarr", valve_sweep_steps())
    out = tmp_path / "sweep.gif"
    out.write_bytes(b"a video someone kept")
    args = ["replay", str(path), "--episode", "0", "--out", str(out), "--width", str(W),
            "--height", str(H), "--quiet"]
    assert dataset_cli(args) == 1
    err = capsys.readouterr().err
    assert f"{out}: already exists; pass --overwrite" in err and err.count("\n") == 1
    assert out.read_bytes() == b"a video someone kept"
    assert dataset_cli([*args, "--overwrite"]) == 0
    with Image.open(out) as gif:  # replaced by the replay's video
        assert gif.size == (W, H)
