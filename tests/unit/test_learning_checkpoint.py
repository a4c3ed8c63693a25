"""Checkpoints (weights_only=True, atomic, exact resume), the normaliser and the metrics logger."""

from __future__ import annotations

import csv
import math
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from robot_rl.learning.awac import AWAC
from robot_rl.learning.checkpoint import (
    CheckpointError,
    load_checkpoint,
    restore_agent,
    save_checkpoint,
)
from robot_rl.learning.config import AWACConfig, CollapseGuardConfig, config_to_dict
from robot_rl.learning.logger import MetricsLogger, UpdateRate
from robot_rl.learning.normalizer import Normalizer

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _batch(seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {"obs": torch.randn(32, 5, generator=g) * 3 + 1,
            "action": torch.rand(32, 2, generator=g) * 2 - 1,
            "reward": -torch.rand(32, generator=g), "next_obs": torch.randn(32, 5, generator=g),
            "done": torch.zeros(32)}


def _all_tensors(agent: AWAC) -> dict[str, torch.Tensor]:
    out = {f"actor.{k}": v for k, v in agent.actor.state_dict().items()}
    out |= {f"critic.{k}": v for k, v in agent.critic.state_dict().items()}
    out |= {f"target.{k}": v for k, v in agent.critic_target.state_dict().items()}
    for i, state in agent.optimizer.state_dict()["state"].items():
        out |= {f"adam.{i}.{k}": v for k, v in state.items()}
    return out


@pytest.mark.parametrize("objective", ["awr", "sac"])
def test_resume_is_bit_exact(tmp_path: Path, objective: str) -> None:
    config = AWACConfig(actor_hidden_sizes=(16, 16), critic_hidden_sizes=(16, 16),
                        actor_objective=objective,
                        collapse_guard=CollapseGuardConfig(conservative=True))
    agent = AWAC(5, 2, config, seed=1)
    norm = Normalizer.from_data(np.random.default_rng(0).normal(1, 3, (50, 5)))
    agent.set_normalizer(norm)
    for i in range(3):
        agent.update(_batch(i))
    agent.start_online()  # the guard's snapshot travels too
    agent.update(_batch(3))
    path = save_checkpoint(tmp_path / "ckpt.pt", agent, agent.normalizer, config_to_dict(config),
                           {"offline_updates": 3, "online_updates": 1, "online_started": True},
                           extra={"note": "test", "returns": [1.0, 2.0]}, action_mode="velocity")
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.pt"]  # no temp file left behind
    torch.load(path, weights_only=True)  # only safe types inside

    state = load_checkpoint(path)
    assert (state["obs_dim"], state["act_dim"]) == (5, 2)
    assert state["counters"] == {"offline_updates": 3, "online_updates": 1, "online_started": True}
    assert state["extra"]["returns"] == [1.0, 2.0]
    fresh = AWAC(5, 2, config, seed=99)  # different init: everything must come from the file
    restore_agent(state, fresh)
    assert fresh.num_updates == agent.num_updates == 4
    torch.testing.assert_close(fresh.normalizer.mean, agent.normalizer.mean, rtol=0, atol=0)

    agent.update(_batch(4))
    fresh.update(_batch(4))
    ours, theirs = _all_tensors(agent), _all_tensors(fresh)
    assert ours.keys() == theirs.keys()
    for key in ours:
        assert torch.equal(ours[key], theirs[key]), key
    obs = np.random.default_rng(1).normal(size=(3, 5))
    np.testing.assert_array_equal(agent.act(obs, deterministic=False),
                                  fresh.act(obs, deterministic=False))


def test_load_rejects_foreign_files(tmp_path: Path) -> None:
    path = tmp_path / "other.pt"
    torch.save({"format_version": 99}, path)
    with pytest.raises(ValueError, match="format_version 99"):
        load_checkpoint(path)
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="other.pt"):
        load_checkpoint(path)


def test_normalizer_statistics_floor_and_state() -> None:
    data = np.stack([np.linspace(0, 10, 101), np.full(101, 3.0)], axis=1)
    norm = Normalizer.from_data(data, std_floor=1e-2)
    assert float(norm.mean[0]) == pytest.approx(5.0)
    assert float(norm.std[1]) == pytest.approx(1e-2)  # constant feature: floored, finite
    x = norm.normalize(torch.tensor(data, dtype=torch.float32))
    assert torch.all(torch.isfinite(x))
    assert float(x[:, 0].std(unbiased=False)) == pytest.approx(1.0, rel=1e-4)
    back = Normalizer.from_state_dict(norm.state_dict())
    assert torch.equal(back.mean, norm.mean) and torch.equal(back.std, norm.std)
    with pytest.raises(ValueError, match="shape"):
        Normalizer.from_data(np.zeros(4))


def test_metrics_logger_writes_csv_and_tensorboard(tmp_path: Path) -> None:
    with MetricsLogger(tmp_path / "run") as logger:
        logger.log(1, {"critic_loss": 0.5, "q_mean": -1.0})
        logger.log(2, {"critic_loss": 0.25, "new_metric": 3.0})
    with open(tmp_path / "run" / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [(r["step"], r["name"], float(r["value"])) for r in rows] == [
        ("1", "critic_loss", 0.5), ("1", "q_mean", -1.0),
        ("2", "critic_loss", 0.25), ("2", "new_metric", 3.0)]
    assert list((tmp_path / "run" / "tensorboard").glob("events.out.tfevents.*"))
    MetricsLogger(tmp_path / "plain", tensorboard=False).close()
    assert not (tmp_path / "plain" / "tensorboard").exists()


def test_metrics_logger_keeps_the_config_in_a_file_and_in_tensorboard(tmp_path: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    with MetricsLogger(tmp_path / "run") as logger:
        logger.log_config("awac:\n  beta: 0.3\n")
    with MetricsLogger(tmp_path / "run") as logger:  # a resumed run records its own
        path = logger.log_config("awac:\n  beta: 0.4\n")
    assert path.read_text() == "awac:\n  beta: 0.4\n"
    texts = []
    for events in sorted((tmp_path / "run" / "tensorboard").glob("events.out.tfevents.*")):
        accumulator = EventAccumulator(str(events))
        accumulator.Reload()
        texts += [e.tensor_proto.string_val[0].decode()
                  for e in accumulator.Tensors("config/text_summary")]
    assert sorted(texts) == ["```yaml\nawac:\n  beta: 0.3\n```", "```yaml\nawac:\n  beta: 0.4\n```"]


def test_update_rate_counts_updates_over_their_own_time_since_the_last_read() -> None:
    rate = UpdateRate()
    assert math.isnan(rate.read())  # nothing counted: no rate rather than 0 or inf
    rate.add(10, 0.5)
    rate.add(30, 1.5)
    assert rate.read() == pytest.approx(20.0)
    assert math.isnan(rate.read())  # a read starts a fresh count
    with rate.timing(updates=4):
        time.sleep(0.05)
    assert 4 / 0.5 < rate.read() <= 4 / 0.05  # only the block's time: 80/s at most


# ---- a checkpoint that cannot be used: one line naming the file and what does not match ----------
def _saved(tmp_path: Path, config: AWACConfig, name: str = "ckpt.pt") -> Path:
    agent = AWAC(5, 2, config, seed=0)
    agent.set_normalizer(Normalizer.identity(5))
    return save_checkpoint(tmp_path / name, agent, agent.normalizer,
                           {"awac": config_to_dict(config)}, {}, action_mode="velocity")


def _one_line(err: pytest.ExceptionInfo, path: Path) -> str:
    text = str(err.value)
    assert isinstance(err.value, CheckpointError) and text.startswith(f"{path}: ")
    assert "\n" not in text and len(text) < 400, text
    return text


SMALL = dict(actor_hidden_sizes=(16, 16), critic_hidden_sizes=(16, 16))


def test_missing_junk_and_truncated_checkpoints_are_one_line(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(tmp_path / "none.pt")
    assert _one_line(err, tmp_path / "none.pt").endswith("no such checkpoint")
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(tmp_path)
    assert "is not a file" in _one_line(err, tmp_path)
    junk = tmp_path / "junk.pt"
    junk.write_text("not a checkpoint at all")
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(junk)
    assert "not a robot_rl checkpoint: torch.load cannot read it" in _one_line(err, junk)
    good = _saved(tmp_path, AWACConfig(**SMALL))
    cut = tmp_path / "cut.pt"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(cut)
    assert "torch.load cannot read it" in _one_line(err, cut)
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(3)}, foreign)
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(foreign)
    assert "no format_version in it" in _one_line(err, foreign)
    part = tmp_path / "part.pt"
    torch.save({"format_version": 1, "obs_dim": 5}, part)
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(part)
    assert "['act_dim', 'agent', 'normalizer', 'config', 'counters'] missing" in _one_line(err,
                                                                                           part)


def test_a_checkpoint_of_another_network_config_names_the_tensor_and_the_settings(
        tmp_path: Path) -> None:
    path = _saved(tmp_path, AWACConfig(**SMALL))
    state = load_checkpoint(path)
    wider = AWAC(5, 2, AWACConfig(actor_hidden_sizes=(32, 32), critic_hidden_sizes=(16, 16),
                                  n_critics=3, beta=0.3), seed=0)
    with pytest.raises(CheckpointError) as err:
        restore_agent(state, wider)
    text = _one_line(err, path)
    assert "actor.trunk.layers.0.weight is [16, 5] in the checkpoint, [32, 5] in this config" \
        in text
    assert ("trained with awac.actor_hidden_sizes [16, 16] (this config: [32, 32]), "
            "awac.beta 0.5 (this config: 0.3), awac.n_critics 2 (this config: 3)") in text
    sac = AWAC(5, 2, AWACConfig(**SMALL, actor_objective="sac"), seed=0)  # same shapes
    with pytest.raises(CheckpointError) as err:
        restore_agent(state, sac)
    text = _one_line(err, path)
    assert "does not load into this agent" in text
    assert "awac.actor_objective 'awr' (this config: 'sac')" in text
    other_task = AWAC(7, 2, AWACConfig(**SMALL), seed=0)
    with pytest.raises(CheckpointError) as err:
        restore_agent(state, other_task)
    assert "its networks take 5 observation values and give 2 actions; this agent's take 7" \
        in _one_line(err, path)
    # runtime settings are not a reason, and a fitting config loads
    same = AWAC(5, 2, AWACConfig(**SMALL, compile=False, device="cpu"), seed=3)
    restore_agent(state, same)
