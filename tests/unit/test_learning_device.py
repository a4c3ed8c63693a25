"""Where the learner trains: AWACConfig.device, resolved once, checked where it is read.

This machine has no GPU: the CPU tests check the names, the errors and the cross-device resume rule;
the CUDA tests (skipped without a GPU) train on the GPU and resume and act on the CPU."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch

from robot_rl.config import ConfigError
from robot_rl.learning import AWAC, AWACConfig, BalancedReplay
from robot_rl.learning.background import PolicySnapshot
from robot_rl.learning.checkpoint import load_checkpoint, restore_agent, save_checkpoint
from robot_rl.learning.config import check_device_name, config_to_dict
from robot_rl.learning.device import resolve_device
from robot_rl.learning.factory import make_replay, new_agent, train_step
from robot_rl.run_config import load_pipeline_config

pytestmark = pytest.mark.usefixtures("one_torch_thread")
SMALL = dict(actor_hidden_sizes=(16, 16), critic_hidden_sizes=(16, 16), batch_size=32)
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error without CUDA")


def _steps(n: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    obs = rng.normal(1.0, 3.0, size=(n, 5)).astype(np.float32)
    return {"observation": obs, "action": rng.uniform(-1, 1, (n, 2)).astype(np.float32),
            "reward": -np.ones(n, np.float32), "next_observation": obs + 0.1,
            "terminated": np.arange(n) == n - 1, "truncated": np.zeros(n, bool)}


@pytest.mark.parametrize("name", ["cpu", "auto", "cuda", "cuda:0", "cuda:12"])
def test_device_names_users_write_are_accepted(name: str) -> None:
    check_device_name(name)
    assert AWACConfig(device=name).device == name


@pytest.mark.parametrize("name", ["gpu", "CUDA", "cuda:", "cuda:x", "cpu:0", "", "mps"])
def test_other_device_names_are_refused_where_the_config_is_read(name: str) -> None:
    with pytest.raises(ValueError, match=r"AWACConfig.device: .* is not one of cpu, cuda, cuda:N "
                                         r"or auto"):
        AWACConfig(device=name)


def test_a_config_file_or_override_naming_another_device_is_refused_with_its_source() -> None:
    with pytest.raises(ConfigError, match=r"valve.yaml: awac: AWACConfig.device: 'gpu' is not"):
        load_pipeline_config("valve", ["awac.device=gpu"])


def test_the_default_is_the_cpu_and_auto_takes_a_gpu_only_where_torch_sees_one() -> None:
    assert AWACConfig().device == "cpu"
    assert load_pipeline_config("valve").awac.device == "cpu"
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected
    assert AWAC(5, 2, AWACConfig(**SMALL, device="auto")).device.type == expected


@no_cuda
def test_asking_for_a_gpu_that_is_not_there_names_the_setting_before_any_training() -> None:
    with pytest.raises(ValueError, match=r"awac.device: 'cuda', but torch .* sees no CUDA device; "
                                         r"use 'cpu', or 'auto'"):
        AWAC(5, 2, AWACConfig(**SMALL, device="cuda"))
    with pytest.raises(ValueError, match=r"sees no CUDA device"):  # the replay's network too
        make_replay(AWACConfig(**SMALL, device="cuda:1", replay="balanced"), _steps(40, 0),
                    online_capacity=10, seed=0)


def test_a_checkpoint_from_another_device_type_resumes_its_weights_and_restarts_its_noise(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A CUDA generator's state is 16 bytes, a CPU one's 5 kB: set_state would refuse it. The weights,
    optimiser and counters resume exactly; the noise restarts from the seed and the update count,
    the same way every time, and the log says so."""
    config = AWACConfig(**SMALL)
    data = _steps(64, 0)
    agent = new_agent(config, data, seed=3)
    replay = make_replay(config, data, online_capacity=0, seed=3)
    rng = np.random.default_rng(0)
    for _ in range(3):
        train_step(agent, replay, config.batch_size, rng)
    state = agent.state_dict()
    assert state["generator"].numel() > 16
    state["generator"] = state["act_generator"] = torch.zeros(16, dtype=torch.uint8)
    path = save_checkpoint(tmp_path / "other_device.pt", agent, agent.normalizer,
                           config_to_dict(config), {}, action_mode="velocity")
    payload = load_checkpoint(path)
    payload["agent"] = state

    resumed = []
    for _ in range(2):
        fresh = AWAC(5, 2, config, seed=3)
        with caplog.at_level(logging.WARNING, logger="robot_rl.learning.awac"):
            restore_agent(payload, fresh)
        resumed.append(fresh)
    assert "random state is from another device type" in caplog.text
    assert "restarts from seed 3 at update 3" in caplog.text
    for name, value in agent.actor.state_dict().items():
        assert torch.equal(resumed[0].actor.state_dict()[name], value), name
    assert resumed[0].num_updates == 3
    obs = data["observation"][:4]
    sampled = [r.act(obs, deterministic=False) for r in resumed]
    np.testing.assert_array_equal(sampled[0], sampled[1])  # a fresh stream, but a defined one
    assert not np.array_equal(sampled[0], agent.act(obs, deterministic=False))


@needs_cuda
def test_training_on_the_gpu_then_acting_and_resuming_on_the_cpu(tmp_path: Path) -> None:
    config = AWACConfig(**SMALL, device="cuda", replay="balanced")
    data = _steps(200, 0)
    agent = new_agent(config, data, seed=0)
    replay = make_replay(config, data, online_capacity=100, seed=0)
    assert isinstance(replay, BalancedReplay) and replay.device.type == "cuda"
    replay.add_episode({"obs": data["observation"][:50], "action": data["action"][:50],
                        "reward": data["reward"][:50], "next_obs": data["next_observation"][:50],
                        "done": np.zeros(50, np.float32)})
    rng = np.random.default_rng(0)
    for _ in range(5):
        metrics = train_step(agent, replay, config.batch_size, rng)
    assert agent.actor.trunk.layers[0].weight.device.type == "cuda"
    assert np.isfinite(metrics["critic_loss"])
    obs = data["observation"][:4]
    snapshot = PolicySnapshot.from_agent(agent)  # the acting copy lives on the CPU, in numpy
    assert snapshot.uses_numpy
    np.testing.assert_allclose(np.stack([snapshot.act(o) for o in obs]),
                               agent.act(obs, deterministic=True), atol=1e-5)

    path = save_checkpoint(tmp_path / "gpu.pt", agent, agent.normalizer, config_to_dict(config), {},
                           action_mode="velocity")
    on_cpu = AWAC(5, 2, AWACConfig(**SMALL), seed=0)
    restore_agent(load_checkpoint(path), on_cpu)
    np.testing.assert_allclose(on_cpu.act(obs, deterministic=True),
                               agent.act(obs, deterministic=True), atol=1e-5)
    on_cpu.update({k: torch.as_tensor(v) for k, v in replay.sample(32, rng).items()})
