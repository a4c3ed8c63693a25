"""The pixel learning core: DrQ's random shift, the image and feature replays (each frame once),
the encoder trained by the critic only, frozen encoders, checkpoints that resume exactly."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

from robot_rl.learning import AWACConfig, Normalizer, load_checkpoint, save_checkpoint
from robot_rl.learning.encoders import (
    ConvEncoder,
    EncoderConfig,
    load_frozen_encoder,
    random_shift,
    save_frozen_encoder,
    train_frozen_encoder,
)
from robot_rl.learning.image_replay import FeatureReplay, ImageReplay
from robot_rl.learning.pixel_agent import PixelAgent, is_pixel_checkpoint, load_pixel_agent
from robot_rl.tasks.camera import ImageObservationConfig

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tiny networks on a shared host

SHAPE = (16, 16, 3)
VIEW = ImageObservationConfig(width=16, height=16)
SMALL = EncoderConfig(channels=(4, 8), strides=(2, 2), feature_dim=6, shift_px=2)
AWAC_SMALL = AWACConfig(batch_size=8, actor_hidden_sizes=(16,), critic_hidden_sizes=(16,))


def _episode(n: int, terminated: bool, offset: int = 0, state_dim: int = 5) -> dict:
    """Frames whose every pixel holds the step's index (+ offset), so a sample says its step."""
    steps = np.arange(n) + offset
    frames = np.broadcast_to(steps[:, None, None, None] % 256, (n, *SHAPE)).astype(np.uint8)
    obs = np.repeat(steps[:, None].astype(np.float32), state_dim, axis=1)
    done = np.zeros(n, np.float32)
    done[-1] = float(terminated)
    return {"obs": obs, "next_obs": obs + 1, "action": np.zeros((n, 3), np.float32),
            "reward": -np.ones(n, np.float32), "done": done, "image": frames}


@pytest.mark.parametrize("dtype", [torch.uint8, torch.int64])  # uint8: OpenCV; else a gather
def test_random_shift_moves_each_image_by_at_most_pad_with_edges_repeated(dtype) -> None:
    values = torch.arange(16 * 16, dtype=torch.int64).reshape(16, 16)
    ramp = torch.stack([values // 16, values % 16], dim=-1)  # each pixel holds (row, col)
    ramp = ramp[None].repeat(64, 1, 1, 1).to(dtype)          # (B, H, W, 2)
    shifted = random_shift(ramp, 3, torch.Generator().manual_seed(0))
    assert shifted.shape == ramp.shape and shifted.dtype == dtype
    offsets = set()
    for image in shifted.to(torch.int64):
        dy, dx = image[8, 8, 0].item() - 8, image[8, 8, 1].item() - 8  # where the centre came from
        assert abs(dy) <= 3 and abs(dx) <= 3
        # an interior window is the input's, moved by (dy, dx)
        torch.testing.assert_close(image[4:12, 4:12],
                                   ramp[0, 4 + dy:12 + dy, 4 + dx:12 + dx].to(torch.int64))
        offsets.add((dy, dx))
        assert image[0, 0].tolist() == [max(0, dy), max(0, dx)]  # the edge, repeated
    assert len(offsets) > 10  # drawn per image
    same = random_shift(ramp, 0, torch.Generator())
    assert same is ramp


def test_both_shifts_agree() -> None:
    images = torch.randint(0, 255, (8, 12, 10, 4), dtype=torch.uint8)
    by_cv = random_shift(images, 2, torch.Generator().manual_seed(5))
    by_gather = random_shift(images.to(torch.int16), 2, torch.Generator().manual_seed(5))
    torch.testing.assert_close(by_cv.to(torch.int16), by_gather)


def test_image_replay_holds_each_frame_once_and_pairs_it_with_the_next() -> None:
    replay = ImageReplay(5, 3, SHAPE, capacity=100)
    replay.add_episode(_episode(10, terminated=False))          # the last step: no successor
    replay.add_episode(_episode(6, terminated=True, offset=50))  # the last step: terminal
    assert replay.size == 16 and len(replay) == 9 + 6
    batch = replay.sample(2000, np.random.default_rng(0))
    step = batch["image"][:, 0, 0, 0].numpy().astype(int)
    nxt = batch["next_image"][:, 0, 0, 0].numpy().astype(int)
    assert 9 not in step  # the truncated step is never a transition
    interior = step != 55
    np.testing.assert_array_equal(nxt[interior], step[interior] + 1)
    np.testing.assert_array_equal(batch["obs"][:, 0].numpy(), step)
    terminal = step == 55
    assert terminal.any() and batch["done"].numpy()[terminal].min() == 1.0
    assert batch["done"].numpy()[~terminal].max() == 0.0
    # no second copy of the frames: one (H, W, C) per slot
    assert replay.frames.shape == (100, *SHAPE)


def test_image_replay_overwrites_the_oldest_steps_and_keeps_successors_right() -> None:
    replay = ImageReplay(5, 3, SHAPE, capacity=25)
    for k in range(7):  # 7 episodes of 10 steps through 25 slots: wraps, splits episodes
        replay.add_episode(_episode(10, terminated=bool(k % 2), offset=10 * k))
    batch = replay.sample(3000, np.random.default_rng(1))
    step = batch["image"][:, 0, 0, 0].numpy().astype(int)
    nxt = batch["next_image"][:, 0, 0, 0].numpy().astype(int)
    assert step.min() >= 45  # only the newest 25 steps remain
    moving = batch["done"].numpy() == 0
    np.testing.assert_array_equal(nxt[moving], step[moving] + 1)
    with pytest.raises(ValueError, match="does not fit a capacity"):
        replay.add_episode(_episode(30, terminated=True))


def test_feature_replay_encodes_each_frame_once() -> None:
    calls = []

    def encode(frames: np.ndarray) -> np.ndarray:
        calls.append(len(frames))
        return np.repeat(frames[:, 0, 0, :1].astype(np.float32), 2, axis=1)

    replay = FeatureReplay(5, 2, 3, capacity=50, encode=encode)
    replay.add_episode(_episode(8, terminated=True))
    assert calls == [8] and len(replay) == 8
    batch = replay.sample(200, np.random.default_rng(0))
    obs, nxt = batch["obs"].numpy(), batch["next_obs"].numpy()
    assert obs.shape == (200, 7)
    moving = batch["done"].numpy() == 0
    np.testing.assert_array_equal(nxt[moving, 5], obs[moving, 5] + 1)  # the next frame's feature


def _agent(kind: str = "conv", frozen: ConvEncoder | None = None, seed: int = 0,
           config: AWACConfig = AWAC_SMALL) -> PixelAgent:
    encoder = SMALL if kind == "conv" else EncoderConfig(**{**SMALL.__dict__, "kind": "frozen"})
    agent = PixelAgent(5, 3, VIEW, config, encoder, seed=seed, frozen=frozen)
    agent.set_state_normalizer(Normalizer(np.full(5, 2.0), np.full(5, 4.0)))
    return agent


def _batch(seed: int = 0) -> dict[str, torch.Tensor]:
    rng = np.random.default_rng(seed)
    return {"obs": torch.from_numpy(rng.normal(size=(8, 5)).astype(np.float32)),
            "next_obs": torch.from_numpy(rng.normal(size=(8, 5)).astype(np.float32)),
            "action": torch.from_numpy(rng.uniform(-1, 1, (8, 3)).astype(np.float32)),
            "reward": -torch.ones(8), "done": torch.zeros(8),
            "image": torch.from_numpy(rng.integers(0, 255, (8, *SHAPE), dtype=np.uint8)),
            "next_image": torch.from_numpy(rng.integers(0, 255, (8, *SHAPE), dtype=np.uint8))}


def test_only_the_critic_trains_the_encoder() -> None:
    """The critic's loss has a gradient at the encoder's features, the actor's has none (the
    actor reads them detached); and an update moves the encoder's weights."""
    agent = _agent()
    awac = agent.awac
    obs = torch.randn(8, awac.obs_dim, requires_grad=True)
    batch = _batch()
    eps = torch.zeros(8, 3)
    critic_loss, actor_loss, *_ = awac._losses(obs, batch["action"], batch["reward"],
                                               torch.randn(8, awac.obs_dim), batch["done"],
                                               eps, eps, awac._draw_subset())
    (from_actor,) = torch.autograd.grad(actor_loss, obs, allow_unused=True)
    (from_critic,) = torch.autograd.grad(critic_loss, obs)
    assert from_actor is None and from_critic.abs().sum() > 0
    before = [p.detach().clone() for p in agent.encoder.parameters()]
    agent.update(batch)
    moved = [not torch.equal(a, b) for a, b in zip(before, agent.encoder.parameters())]
    assert all(moved)


def test_normaliser_covers_the_vector_and_passes_the_features() -> None:
    agent = _agent()
    norm = agent.normalizer
    assert norm is not None and norm.dim == 5 + 6
    np.testing.assert_allclose(norm.mean.numpy(), [2.0] * 5 + [0.0] * 6)
    np.testing.assert_allclose(norm.std.numpy(), [4.0] * 5 + [1.0] * 6)


def test_act_single_and_batched() -> None:
    agent = _agent()
    image = np.random.default_rng(0).integers(0, 255, (2, *SHAPE), dtype=np.uint8)
    state = np.zeros((2, 5), np.float32)
    batch = agent.act({"state": state, "image": image}, deterministic=True)
    single = agent.act({"state": state[0], "image": image[0]}, deterministic=True)
    assert batch.shape == (2, 3) and single.shape == (3,)
    np.testing.assert_allclose(single, batch[0], atol=1e-6)
    # an env's observation (colour as (H, W, 3)) acts the same
    as_env = agent.act({"state": state[0], "rgb": image[0]},
                       deterministic=True)
    np.testing.assert_array_equal(as_env, single)
    with pytest.raises(ValueError, match=r"the encoder reads \(16, 16, 3\)"):
        agent.act({"state": state[0], "image": image[0, :8]})


def test_checkpoint_resumes_the_encoder_exactly(tmp_path) -> None:
    agent = _agent(seed=3)
    for k in range(3):
        agent.update(_batch(k))
    path = save_checkpoint(tmp_path / "a.pt", agent, agent.normalizer, {}, {"updates": 3},
                           extra=agent.checkpoint_extra(), action_mode="velocity")
    state = load_checkpoint(path)
    assert is_pixel_checkpoint(state)
    resumed = load_pixel_agent(state, AWAC_SMALL, seed=3)
    obs = {"state": np.ones(5, np.float32), "image": _batch()["image"][0].numpy()}
    np.testing.assert_array_equal(agent.act(obs, deterministic=True),
                                  resumed.act(obs, deterministic=True))
    # the next update is the same: optimisers, noise and augmentation streams resumed
    first, second = agent.update(_batch(9)), resumed.update(_batch(9))
    assert first["critic_loss"] == second["critic_loss"]
    for a, b in zip(agent.encoder.parameters(), resumed.encoder.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_frozen_encoder_is_trained_here_saved_and_never_moves(tmp_path) -> None:
    rng = np.random.default_rng(0)
    frames = np.zeros((64, *SHAPE), np.uint8)
    for i, (y, x) in enumerate(rng.integers(2, 12, (64, 2))):
        frames[i, y:y + 3, x:x + 3] = 255  # a bright square at a random place
    encoder, info = train_frozen_encoder(frames, SMALL, steps=150, batch_size=16, seed=0)
    assert info.last_loss < 0.8 * info.first_loss  # it learned to reconstruct
    path = save_frozen_encoder(tmp_path / "enc.pt", encoder, SMALL)
    with pytest.raises(FileExistsError, match="--overwrite"):
        save_frozen_encoder(path, encoder, SMALL)
    loaded, config = load_frozen_encoder(path)
    assert config == SMALL
    agent = PixelAgent(5, 3, VIEW, AWAC_SMALL,
                       EncoderConfig(**{**SMALL.__dict__, "kind": "frozen",
                                        "frozen_path": str(path)}))
    torch.testing.assert_close(agent.features(frames[:4]), loaded(torch.from_numpy(frames[:4])))
    replay = agent.make_replay(100)
    assert isinstance(replay, FeatureReplay)
    episode = _episode(10, terminated=True)
    episode["image"] = frames[:10]
    replay.add_episode(episode)
    before = [p.clone() for p in agent.encoder.parameters()]
    agent.set_state_normalizer(Normalizer.identity(5))
    agent.update(replay.sample(8, np.random.default_rng(0)))
    for a, b in zip(before, agent.encoder.parameters()):
        assert torch.equal(a, b)
    # its checkpoint carries the encoder: no file needed to load it
    ckpt = save_checkpoint(tmp_path / "f.pt", agent, agent.normalizer, {}, {},
                           extra=agent.checkpoint_extra(), action_mode="velocity")
    path.unlink()
    resumed = load_pixel_agent(load_checkpoint(ckpt), AWAC_SMALL)
    torch.testing.assert_close(resumed.features(frames[:4]), agent.features(frames[:4]))


def test_a_frozen_encoder_for_another_view_is_refused(tmp_path) -> None:
    encoder = ConvEncoder((8, 8, 3), SMALL)
    path = save_frozen_encoder(tmp_path / "small.pt", encoder, SMALL)
    frozen = EncoderConfig(**{**SMALL.__dict__, "kind": "frozen", "frozen_path": str(path)})
    with pytest.raises(ValueError, match=r"reads \(8, 8, 3\) images, the task's view is"):
        PixelAgent(5, 3, VIEW, AWAC_SMALL, frozen)
    with pytest.raises(FileNotFoundError, match="encoder.frozen_path"):
        PixelAgent(5, 3, VIEW, AWAC_SMALL,
                   EncoderConfig(kind="frozen", frozen_path=str(tmp_path / "none.pt")))


def test_a_pixel_policy_travels_as_weights_and_acts_as_the_agent() -> None:
    """The POLICY topic's bytes carry the encoder too: decoded, the snapshot acts as the agent's
    deterministic policy on the same frame; a damaged encoder array is refused by name."""
    from safetensors.numpy import load, save

    from robot_rl.agent.weights import WeightsError, snapshot_from_bytes, snapshot_to_bytes
    from robot_rl.learning.pixel_agent import PixelPolicySnapshot

    agent = _agent(seed=1)
    for k in range(2):
        agent.update(_batch(k))
    snapshot = PixelPolicySnapshot.from_agent(agent)
    data = snapshot_to_bytes(snapshot, task="valve")
    back, meta = snapshot_from_bytes(data)
    assert isinstance(back, PixelPolicySnapshot) and meta["task"] == "valve"
    assert back.obs_dim == 5 and back.version == agent.num_updates == 2 and back.uses_numpy
    frame = np.random.default_rng(4).integers(0, 255, SHAPE, dtype=np.uint8)
    obs = {"state": np.linspace(-1, 1, 5).astype(np.float32), "rgb": frame}
    np.testing.assert_allclose(back.act(obs), agent.act(obs, deterministic=True), atol=1e-5)
    with pytest.raises(ValueError, match="observation has 4 values, the policy expects 5"):
        back.act({"state": np.zeros(4), "rgb": frame})
    arrays = load(data)
    name = next(k for k in arrays if k.startswith("encoder.convs"))
    arrays[name] = arrays[name][..., :1]
    length = int.from_bytes(data[:8], "little")
    header = json.loads(data[8:8 + length])["__metadata__"]
    with pytest.raises(WeightsError, match=rf"{name} is .* needs"):
        snapshot_from_bytes(save(arrays, metadata=header))


def test_a_block_of_updates_is_the_same_as_one_update_per_slice() -> None:
    """update(batch of G x B rows, n_updates=G) makes G updates, each on its own slice, as G
    calls would (the update-to-data ratio's block)."""
    first, second = _agent(seed=5), _agent(seed=5)
    a, b = _batch(1), _batch(2)
    block = {k: torch.cat([a[k], b[k]]) for k in a}
    first.update(block, n_updates=2)
    second.update(a)
    second.update(b)
    assert first.num_updates == second.num_updates == 2
    for x, y in zip(first.encoder.parameters(), second.encoder.parameters()):
        torch.testing.assert_close(x, y, rtol=0, atol=0)
    with pytest.raises(ValueError, match="do not split into n_updates=3"):
        first.update(block, n_updates=3)


def test_a_trained_encoders_agent_hands_over_its_last_policy_a_frozen_ones_its_best() -> None:
    """The keeper stores actor weights: with the critic training the encoder, an earlier actor
    on today's encoder was never measured, so that agent keeps nothing; with a frozen encoder
    the actor is the whole policy and the best-measured one is handed over."""
    best = dataclasses.replace(AWAC_SMALL, handed_policy="best")
    trained = _agent("conv", config=best)
    trained.keeper.record(0.9, 100, trained.actor)
    trained.keeper.record(0.2, 200, trained.actor)
    assert trained.keeper.kept is None and trained.handed_actor() is trained.actor
    assert trained.keeper.offline is not None and trained.keeper.offline.success == 0.9

    frozen = _agent("frozen", frozen=ConvEncoder(VIEW.shape, SMALL), config=best)
    frozen.keeper.record(0.9, 100, frozen.actor)
    before = {k: v.clone() for k, v in frozen.actor.state_dict().items()}
    with torch.no_grad():
        for parameter in frozen.actor.parameters():
            parameter.add_(1.0)
    frozen.keeper.record(0.2, 200, frozen.actor)
    assert frozen.keeper.kept is not None and frozen.keeper.kept.label == 100
    handed = frozen.handed_actor().state_dict()
    assert all(torch.equal(handed[k], before[k]) for k in before)
