"""The pipeline on a pixel task, in process: record frames into the store, pretrain, fine-tune and
evaluate from pixels; the same episodes train a state policy; views and checkpoints that do not
fit are refused by name; the dataset tools read the frames."""

from __future__ import annotations

import dataclasses
from contextlib import closing
from pathlib import Path

import numpy as np
import pytest
import zarr

from robot_rl.data import DatasetError, EpisodeStore, tools
from robot_rl.learning.checkpoint import CheckpointError, load_checkpoint
from robot_rl.learning.image_replay import ImageReplay
from robot_rl.learning.pixel_agent import PixelAgent, is_pixel_checkpoint
from robot_rl.pipeline import stages
from robot_rl.pipeline.rollout import GatedEnv
from robot_rl.run_config import PipelineConfig, load_pipeline_config

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TINY_ENCODER = ["encoder.channels=[4, 8]", "encoder.strides=[2, 2]", "encoder.feature_dim=8"]


def _config(task: str = "valve", *overrides: str) -> PipelineConfig:
    return load_pipeline_config(task, ["env_kwargs={config: {observation: pixels}}",
                                       *TINY_ENCODER, *overrides], profile="bench_tiny")


@pytest.fixture(scope="module")
def valve_pixels(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("pixels") / "valve.zarr"
    try:
        stages.record(_config(), path, progress=False)
    except Exception as err:  # no EGL/OSMesa on this machine
        if "GL" in str(err) or "EGL" in str(err):
            pytest.skip(f"no headless GL backend: {err}")
        raise
    return path


def test_frames_are_stored_one_chunk_per_frame_compressed_with_the_view(valve_pixels: Path
                                                                        ) -> None:
    store = EpisodeStore.open(valve_pixels)
    assert {"camera_color", "observation", "state_observation"} <= set(store.keys)
    assert store.specs["camera_color"].step_shape == (64, 64, 3)
    assert store.specs["observation"].step_shape == (29,)  # no valve in the policy's vector
    raw = zarr.open_group(str(valve_pixels), mode="r")["data/camera_color"]
    assert raw.chunks[0] == 1 and raw.nbytes_stored < raw.nbytes
    extra = store.attrs["extra"]
    assert extra["observation"] == "pixels" and extra["view"]["width"] == 64
    assert extra["view"]["crop"] == [0.1875, 0.0833, 0.8125, 0.9167]


def test_pixels_pretrain_finetune_and_evaluate(valve_pixels: Path, tmp_path: Path) -> None:
    config = _config()
    offline = stages.pretrain(config, valve_pixels, tmp_path, progress=False)
    state = load_checkpoint(offline)
    assert is_pixel_checkpoint(state) and state["obs_dim"] == 29
    agent = stages.load_agent(config, offline)
    assert isinstance(agent, PixelAgent) and agent.awac.obs_dim == 29 + 8
    result = stages.evaluate_checkpoint(config, offline, 1, progress=False)
    assert result.episodes == 1
    tuned = stages.finetune(config, tmp_path, valve_pixels, progress=False)
    online = EpisodeStore.open(tmp_path / "online.zarr")
    assert online.n_steps >= config.finetune.env_steps and "camera_color" in online.keys
    assert online.attrs["extra"]["view"] == EpisodeStore.open(valve_pixels).attrs["extra"]["view"]
    assert is_pixel_checkpoint(load_checkpoint(tuned.checkpoint))


def test_a_state_policy_trains_on_the_same_episodes(valve_pixels: Path, tmp_path: Path) -> None:
    """The state baseline reads the episodes' state layout (the twin knew the valve)."""
    config = load_pipeline_config("valve", profile="bench_tiny")
    with closing(GatedEnv(config)) as env:
        data = stages.task_transitions(config, valve_pixels, env)
    assert data["observation"].shape[1] == 49
    store = EpisodeStore.open(valve_pixels)
    np.testing.assert_array_equal(data["observation"], store.read("state_observation"))
    checkpoint = stages.pretrain(config, valve_pixels, tmp_path, progress=False)
    assert not is_pixel_checkpoint(load_checkpoint(checkpoint))


def test_another_view_or_a_state_dataset_is_refused_by_name(valve_pixels: Path,
                                                            tmp_path: Path) -> None:
    wider = _config("valve", "env_kwargs={config: {observation: pixels, image: {width: 48}}}")
    with pytest.raises(DatasetError, match=r"another view than .*width 64 \(here 48\)"):
        stages.pretrain(wider, valve_pixels, tmp_path / "a", progress=False)
    state_data = tmp_path / "state.zarr"
    stages.record(load_pipeline_config("valve", profile="bench_tiny"), state_data,
                  progress=False)
    with pytest.raises(DatasetError, match="holds no camera views"):
        stages.pretrain(_config(), state_data, tmp_path / "b", progress=False)


def test_checkpoints_of_the_other_kind_are_refused(valve_pixels: Path, tmp_path: Path) -> None:
    pixels = _config()
    state = load_pipeline_config("valve", profile="bench_tiny")
    pixel_ckpt = stages.pretrain(pixels, valve_pixels, tmp_path / "p", progress=False)
    state_ckpt = stages.pretrain(state, valve_pixels, tmp_path / "s", progress=False)
    with pytest.raises(CheckpointError, match="gives pixels observations"):
        stages.evaluate_checkpoint(pixels, state_ckpt, 1, progress=False)
    with pytest.raises(CheckpointError, match="a policy from pixels"):
        stages.evaluate_checkpoint(state, pixel_ckpt, 1, progress=False)


def test_a_frozen_encoder_pipeline_caches_features(valve_pixels: Path, tmp_path: Path) -> None:
    from robot_rl.pipeline.pixels import train_dataset_encoder

    config = _config()
    encoder_path = tmp_path / "encoder.pt"
    info = train_dataset_encoder(valve_pixels, config, encoder_path, steps=5)
    assert info.steps == 5 and encoder_path.exists()
    frozen = _config("valve", "encoder.kind=frozen", f"encoder.frozen_path={encoder_path}")
    checkpoint = stages.pretrain(frozen, valve_pixels, tmp_path / "run", progress=False)
    encoder_path.unlink()  # the checkpoint carries the encoder
    agent = stages.load_agent(frozen, checkpoint)
    assert isinstance(agent, PixelAgent) and not agent.trains_encoder
    assert not isinstance(agent.make_replay(10), ImageReplay)


def test_a_pixel_task_samples_the_configs_symmetric_replay(valve_pixels: Path) -> None:
    """The valve's ``awac.replay: symmetric`` holds for its pixel task too (it was uniform
    replay, silently): the frames of the dataset and of online episodes in a replay each, every
    update's batch half of each."""
    from robot_rl.learning.factory import train_step
    from robot_rl.learning.pixel_data import new_pixel_agent
    from robot_rl.learning.replay import SymmetricReplay

    config = _config()
    assert config.awac.replay == "symmetric"
    with closing(GatedEnv(config)) as env:
        data = stages.task_transitions(config, valve_pixels, env)
        agent = new_pixel_agent(config, env.task, data)
    replay = stages.agent_replay(config, agent, data, valve_pixels, online_capacity=100)
    assert isinstance(replay, SymmetricReplay) and isinstance(replay.offline, ImageReplay)
    assert len(replay.online) == 0 and len(replay.offline) > 0
    with EpisodeStore.open(valve_pixels) as store:
        episode = store.episode(0, ["camera_color"])
    start, end = 0, len(episode["camera_color"])
    replay.add_episode({"obs": np.full((end, 29), 7.0, np.float32),
                        "next_obs": data["next_observation"][start:end],
                        "action": data["action"][start:end], "reward": data["reward"][start:end],
                        "done": data["done"][start:end], **episode})
    seen = []
    agent.update = lambda b, n_updates=1: seen.append(b) or {}  # type: ignore[method-assign]
    batch_size = config.awac.batch_size
    train_step(agent, replay, 4 * batch_size, np.random.default_rng(0))
    online = (seen[0]["obs"][:, 0] == 7.0).reshape(4, batch_size).float().mean(dim=1)
    assert online.tolist() == [0.5] * 4
    assert seen[0]["image"].shape == (4 * batch_size, 64, 64, 3)


def test_dataset_tools_read_the_frames(valve_pixels: Path) -> None:
    assert not [p for p in tools.validate(valve_pixels) if p.severity == "error"]
    summary = tools.info(valve_pixels)
    assert summary["keys"]["camera_color"]["image"]
    color = tools.stats(valve_pixels)["camera_color"]
    assert color["mean"].shape == (3,) and 20 < color["mean"].mean() < 235


def test_replay_writes_the_recorded_view_and_the_twin_state(valve_pixels: Path,
                                                           tmp_path: Path) -> None:
    from robot_rl.sim_twin.episode_replay import plan_replay, replay_to_video

    frames = replay_to_video(valve_pixels, 0, tmp_path / "f.gif", source="frames", width=128,
                             height=128, progress=False)
    assert (frames.video.width, frames.video.height) == (128, 128)
    plan = plan_replay(valve_pixels, 0, "observation")  # by the episodes' state layout
    store = EpisodeStore.open(valve_pixels)
    start, end = store.episode_bounds(0)
    assert plan.n_frames == end - start + 1
    dynamic = replay_to_video(valve_pixels, 0, tmp_path / "a.gif", source="actions", width=64,
                              height=48, progress=False)
    assert dynamic.max_observation_error == 0.0  # the twin reproduces the recorded episode


def test_gated_env_sizes_a_pixel_task_by_its_vector() -> None:
    config = _config()
    env = GatedEnv(config)
    try:
        assert env.obs_dim == 29 and env.task.uses_pixels
    finally:
        env.close()


def test_pretrain_with_a_short_budget_still_moves_the_encoder(valve_pixels: Path,
                                                             tmp_path: Path) -> None:
    config = _config()
    config = dataclasses.replace(config, pretrain=dataclasses.replace(config.pretrain, updates=3))
    checkpoint = stages.pretrain(config, valve_pixels, tmp_path, progress=False)
    state = load_checkpoint(checkpoint)
    assert "encoder_optimizer" in state["agent"]  # a trained (conv) encoder's optimiser is saved


def test_a_pixel_dataset_goes_to_lerobot_and_back_frame_for_frame(valve_pixels: Path,
                                                                 tmp_path: Path) -> None:
    """The view becomes LeRobot's observation.images.camera_color video (lossless) and comes
    back pixel for pixel, with the store's view attribute, so training accepts it again."""
    pytest.importorskip("pyarrow", reason="LeRobot datasets need pyarrow (robot_rl[lerobot])")
    from robot_rl.data.lerobot import export_lerobot, import_lerobot

    export_lerobot(valve_pixels, tmp_path / "lerobot", fps=20)
    assert (tmp_path / "lerobot" / "videos" / "observation.images.camera_color").is_dir()
    import_lerobot(tmp_path / "lerobot", tmp_path / "back.zarr")
    source, back = EpisodeStore.open(valve_pixels), EpisodeStore.open(tmp_path / "back.zarr")
    np.testing.assert_array_equal(back.read("camera_color"), source.read("camera_color"))
    assert back.attrs["extra"] == source.attrs["extra"]
    with closing(GatedEnv(_config())) as env:
        stages.task_transitions(_config(), tmp_path / "back.zarr", env)  # the view is accepted
