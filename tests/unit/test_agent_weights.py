"""Policy snapshots: bytes round trip, refusal of foreign bytes, background trainer behaviour."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch
from safetensors.numpy import save

from robot_rl.agent.weights import WeightsError, snapshot_from_bytes, snapshot_to_bytes
from robot_rl.learning.awac import AWAC
from robot_rl.learning.background import (
    BackgroundConfig,
    BackgroundTrainer,
    PolicySnapshot,
    TrainerCounters,
)
from robot_rl.learning.config import AWACConfig
from robot_rl.learning.normalizer import Normalizer

OBS, ACT = 7, 3
CONFIG = AWACConfig(actor_hidden_sizes=(16, 16), critic_hidden_sizes=(16, 16), batch_size=32)


def make_agent() -> AWAC:
    agent = AWAC(OBS, ACT, CONFIG, seed=0)
    agent.set_normalizer(Normalizer(np.arange(OBS), np.full(OBS, 2.0)))
    return agent


def random_batch(generator: torch.Generator, batch_size: int) -> dict[str, torch.Tensor]:
    return {"obs": torch.randn(batch_size, OBS, generator=generator),
            "action": torch.rand(batch_size, ACT, generator=generator) * 2 - 1,
            "reward": -torch.ones(batch_size), "done": torch.zeros(batch_size),
            "next_obs": torch.randn(batch_size, OBS, generator=generator)}


def test_bytes_round_trip_acts_identically() -> None:
    agent = make_agent()
    generator = torch.Generator().manual_seed(0)
    for _ in range(3):
        agent.update(random_batch(generator, 32))
    snapshot = PolicySnapshot.from_agent(agent)
    data = snapshot_to_bytes(snapshot, task="valve")
    back, meta = snapshot_from_bytes(data)
    assert meta == {"task": "valve"} and back.version == 3 == agent.num_updates
    obs = np.random.default_rng(1).normal(size=(5, OBS)).astype(np.float32)
    for row in obs:
        np.testing.assert_array_equal(back.act(row), snapshot.act(row))
        np.testing.assert_allclose(back.act(row), agent.act(row, deterministic=True), atol=1e-6)
        np.testing.assert_allclose(back.act(row, np.random.default_rng(3)),  # the same std
                                   snapshot.act(row, np.random.default_rng(3)), atol=1e-6)
    assert back.policy is None  # decoded without building a torch module
    with pytest.raises(ValueError, match="numpy-only"):
        back.torch_mean(obs[0])


def test_foreign_and_unusable_bytes_are_refused_by_name() -> None:
    with pytest.raises(WeightsError, match="do not load"):
        snapshot_from_bytes(b"not a policy")
    good = PolicySnapshot.from_agent(make_agent())
    arrays = {k: np.asarray(v, np.float32) for k, v in good.arrays().items()}
    header = {"format": "2", "version": "0", "hidden_sizes": "[16, 16]", "meta": "{}"}
    with pytest.raises(WeightsError, match="format '99'"):
        snapshot_from_bytes(save(arrays, metadata={**header, "format": "99"}))
    with pytest.raises(WeightsError, match="no array 'layers.2.bias'"):
        snapshot_from_bytes(save({k: v for k, v in arrays.items() if k != "layers.2.bias"},
                                 metadata=header))
    with pytest.raises(WeightsError, match="layers.1 is"):
        snapshot_from_bytes(save(arrays, metadata={**header, "hidden_sizes": "[16, 8]"}))
    poisoned = dict(arrays, **{"layers.1.weight": arrays["layers.1.weight"].copy()})
    poisoned["layers.1.weight"][3, 4] = np.nan
    with pytest.raises(WeightsError, match="not finite in layers.1.weight"):
        snapshot_from_bytes(save(poisoned, metadata=header))
    snapshot, meta = snapshot_from_bytes(save(arrays, metadata=header))
    assert meta == {} and snapshot.obs_dim == OBS and snapshot.act_dim == ACT


def test_snapshot_is_isolated_from_later_updates() -> None:
    agent = make_agent()
    snapshot = PolicySnapshot.from_agent(agent)
    obs = np.ones(OBS, np.float32)
    before = snapshot.act(obs)
    generator = torch.Generator().manual_seed(0)
    for _ in range(20):
        agent.update(random_batch(generator, 32))
    np.testing.assert_array_equal(snapshot.act(obs), before)
    assert not np.allclose(agent.act(obs, deterministic=True), before)
    with pytest.raises(ValueError, match="expects 7"):
        snapshot.act(np.ones(3))


def wait_for(condition, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "background trainer did not get there"
        time.sleep(0.01)


def test_trainer_pretrains_publishes_and_keeps_the_ratio() -> None:
    agent = make_agent()
    generator = torch.Generator().manual_seed(0)
    snapshots: list[int] = []
    checkpoints: list[dict] = []
    episodes: list[int] = []
    logged: list[tuple[int, dict[str, float]]] = []
    turns: list[int] = []  # one entry per turn of the trainer's loop (an update or an idle wait)
    trainer = BackgroundTrainer(
        agent, lambda b: agent.update(random_batch(generator, b)),
        lambda ep: episodes.append(ep) or ep,
        BackgroundConfig(batch_size=32, publish_every_updates=5, updates_per_env_step=2.0,
                         checkpoint_every_updates=10, log_every_updates=6),
        pretrain_updates=12, buffer_transitions=100,
        on_snapshot=lambda s: snapshots.append(s.version),
        on_checkpoint=lambda c: checkpoints.append(c.as_dict()),
        on_metrics=lambda n, metrics: logged.append((n, dict(metrics))),
        on_progress=lambda: turns.append(1))

    def after_three_more_turns() -> None:
        seen = len(turns)
        wait_for(lambda: len(turns) >= seen + 3)

    trainer.start()
    wait_for(lambda: trainer.snapshot is not None)
    assert snapshots[0] == 12 and trainer.counters.offline_updates == 12
    after_three_more_turns()
    assert trainer.counters.online_updates == 0  # no env steps yet: the ratio allows none
    trainer.submit_episode(4)
    wait_for(lambda: trainer.counters.online_updates == 8)
    after_three_more_turns()  # each a chance to update past the ratio (2 x 4 steps)
    assert trainer.counters.online_updates == 8 and agent.num_updates == 20
    trainer.stop()
    assert not trainer.alive and trainer.error is None
    assert episodes == [4] and trainer.counters.env_steps == 4
    assert snapshots == [12, 15, 20] and trainer.snapshot.version == 20
    assert [c["offline_updates"] + c["online_updates"] for c in checkpoints] == [10, 20]
    assert checkpoints[-1]["online_started"] is True
    assert [n for n, _ in logged] == [6, 12, 18]
    durations = trainer.update_seconds  # every update's, in order
    for k, (_, metrics) in enumerate(logged):  # the losses, and the rate of the 6 updates logged
        assert np.isfinite(metrics["critic_loss"])
        assert metrics["updates_per_s"] == pytest.approx(6 / sum(durations[6 * k:6 * k + 6]))


def test_trainer_resumes_counters_and_reports_errors() -> None:
    agent = make_agent()
    trainer = BackgroundTrainer(
        agent, lambda b: agent.update({"obs": torch.zeros(b, 2)}), lambda ep: 0,
        BackgroundConfig(),
        pretrain_updates=5, counters=TrainerCounters(offline_updates=2), buffer_transitions=999)
    trainer.start()
    wait_for(lambda: not trainer.alive)
    assert trainer.error is not None  # a bad batch: the error is kept for the node to report
    assert trainer.counters.offline_updates == 2
