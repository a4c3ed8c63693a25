"""The offline-to-online toolkit's switches each change what they claim: symmetric sampling,
LayerNorm critics, the random-subset minimum, G updates per env step (fused), the actor every k,
the warm start, and the keeper of the handed policy."""

from __future__ import annotations

import dataclasses
import time

import numpy as np
import pytest
import torch

from robot_rl.learning.awac import AWAC
from robot_rl.learning.background import BackgroundConfig, BackgroundTrainer
from robot_rl.learning.checkpoint import load_checkpoint, restore_agent, save_checkpoint
from robot_rl.learning.config import AWACConfig
from robot_rl.learning.factory import make_replay, train_step, updates_in
from robot_rl.learning.keeper import PolicyKeeper
from robot_rl.learning.networks import QEnsemble, aggregate_q
from robot_rl.learning.replay import SymmetricReplay

pytestmark = pytest.mark.usefixtures("one_torch_thread")

OBS, ACT = 5, 2
SMALL = dict(actor_hidden_sizes=(16, 16), critic_hidden_sizes=(16, 16), batch_size=32)


def batch(n: int, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {"obs": torch.randn(n, OBS, generator=g),
            "action": torch.rand(n, ACT, generator=g) * 2 - 1,
            "reward": -torch.rand(n, generator=g), "next_obs": torch.randn(n, OBS, generator=g),
            "done": torch.zeros(n)}


def steps(n: int, value: float) -> dict[str, np.ndarray]:
    """n recorded steps whose observations all hold ``value`` (to tell the sources apart)."""
    return {"observation": np.full((n, OBS), value, np.float32),
            "next_observation": np.full((n, OBS), value, np.float32),
            "action": np.zeros((n, ACT), np.float32), "reward": np.zeros(n, np.float32),
            "terminated": np.zeros(n, bool)}


def transitions(n: int, value: float) -> dict[str, np.ndarray]:
    data = steps(n, value)
    return {"obs": data["observation"], "action": data["action"], "reward": data["reward"],
            "next_obs": data["next_observation"], "done": np.zeros(n, np.float32)}


# ---- symmetric sampling --------------------------------------------------------------------
def test_a_symmetric_batch_is_half_online_whatever_the_buffer_sizes() -> None:
    config = AWACConfig(**SMALL, replay="symmetric")
    replay = make_replay(config, steps(5000, 1.0), online_capacity=100, seed=0)
    assert isinstance(replay, SymmetricReplay)
    rng = np.random.default_rng(0)
    assert replay.sample(256, rng)["is_online"].sum() == 0  # nothing online yet: all offline
    replay.add_episode(transitions(10, -1.0))  # 10 online transitions against 5000 offline
    sample = replay.sample(256, rng)
    online = sample["obs"][:, 0] == -1.0
    assert int(online.sum()) == 128 == int(sample["is_online"].sum())
    assert torch.equal(online, sample["is_online"].bool())
    quarter = make_replay(dataclasses.replace(config, symmetric_offline_fraction=0.25),
                          steps(5000, 1.0), online_capacity=100, seed=0)
    quarter.add_episode(transitions(10, -1.0))
    assert int((quarter.sample(256, rng)["obs"][:, 0] == -1.0).sum()) == 192


def test_each_of_the_g_updates_of_a_step_gets_a_half_online_batch() -> None:
    """G updates are sampled as one block and AWAC.update takes them as consecutive slices:
    the block must be split per slice (split once, five updates of ten saw only the dataset
    and five only the online experience)."""
    config = AWACConfig(**SMALL, replay="symmetric")
    agent = AWAC(OBS, ACT, config, seed=0)
    replay = make_replay(config, steps(5000, 1.0), online_capacity=100, seed=0)
    replay.add_episode(transitions(10, -1.0))
    seen: list[torch.Tensor] = []
    agent.update = lambda b, n_updates=1: seen.append(b["obs"][:, 0]) or {}  # type: ignore
    train_step(agent, replay, 10 * config.batch_size, np.random.default_rng(0))
    online_share = (seen[0].reshape(10, config.batch_size) == -1.0).float().mean(dim=1)
    torch.testing.assert_close(online_share, torch.full((10,), 0.5))


def test_uniform_replay_gives_ten_online_rows_in_five_thousand_about_none() -> None:
    """The contrast symmetric sampling is for: uniform replay draws by buffer share."""
    replay = make_replay(AWACConfig(**SMALL), steps(5000, 1.0), online_capacity=100, seed=0)
    replay.add_episode(transitions(10, -1.0))
    online = (replay.sample(256, np.random.default_rng(0))["obs"][:, 0] == -1.0).sum()
    assert online < 10  # expected 0.5 of 256


def test_without_the_offline_data_online_batches_are_all_online() -> None:
    config = AWACConfig(**SMALL, keep_offline_data=False)
    replay = make_replay(config, steps(500, 1.0), online_capacity=100, seed=0)
    rng = np.random.default_rng(0)
    assert (replay.sample(64, rng)["obs"][:, 0] == 1.0).all()  # pretraining: the dataset
    replay.add_episode(transitions(10, -1.0))
    assert (replay.sample(64, rng)["obs"][:, 0] == -1.0).all()
    with pytest.raises(ValueError, match="keep_offline_data"):
        AWACConfig(keep_offline_data=False, replay="balanced")


def test_symmetric_replay_state_round_trips() -> None:
    replay = SymmetricReplay.of_transitions(OBS, ACT, 50, 50)
    replay.add_offline_episode(transitions(20, 1.0))
    replay.add_episode(transitions(7, -1.0))
    back = SymmetricReplay.of_transitions(OBS, ACT, 50, 50)
    back.load_state_dict(replay.state_dict())
    assert (len(back.offline), len(back.online)) == (20, 7)
    a = replay.sample(16, np.random.default_rng(3))
    b = back.sample(16, np.random.default_rng(3))
    for key in a:
        torch.testing.assert_close(a[key], b[key])


# ---- LayerNorm in the critics --------------------------------------------------------------
def test_layer_norm_is_in_the_critic_and_bounds_q_far_from_the_data() -> None:
    torch.manual_seed(0)
    plain = QEnsemble(OBS, ACT, (32, 32), n_critics=3)
    normed = QEnsemble(OBS, ACT, (32, 32), n_critics=3, layer_norm=True)
    assert len(list(normed.parameters())) == len(list(plain.parameters())) + 4  # gain, shift x2
    obs, action = torch.randn(4, OBS), torch.rand(4, ACT)
    with torch.no_grad():
        for net in (plain, normed):  # a last layer with weight to show the growth
            net.net.weights[-1].normal_()
        far_plain = [plain(obs * k, action).abs().max() for k in (1e2, 1e4)]
        far_normed = [normed(obs * k, action).abs().max() for k in (1e4, 1e6)]
        # LayerNorm'd features are at most sqrt(H) in size: |Q| <= sqrt(32) * sum |w_last| + |b|
        bound = (32 ** 0.5) * normed.net.weights[-1].abs().sum(dim=(1, 2)).max() + 1.0
    assert far_plain[1] > 50 * far_plain[0]  # without: Q grows with the input
    assert far_normed[1] <= bound and far_normed[0] <= bound
    torch.testing.assert_close(far_normed[1], far_normed[0], rtol=1e-2, atol=1e-2)  # saturated


def test_an_agent_with_layer_norm_trains_its_gains() -> None:
    agent = AWAC(OBS, ACT, AWACConfig(**SMALL, critic_layer_norm=True))
    before = [g.detach().clone() for g in agent.critic.net.norm_gains]
    assert len(before) == 2
    agent.update(batch(32))
    assert all(not torch.equal(b, g) for b, g in zip(before, agent.critic.net.norm_gains))
    assert not AWAC(OBS, ACT, AWACConfig(**SMALL)).critic.net.norm_gains  # off by default


def test_layer_norm_checkpoint_round_trips(tmp_path) -> None:
    config = AWACConfig(**SMALL, critic_layer_norm=True, n_critics=4,
                        critic_aggregation="subset_min")
    agent = AWAC(OBS, ACT, config)
    agent.update(batch(32))
    path = save_checkpoint(tmp_path / "a.pt", agent, None, {}, {}, action_mode="velocity")
    back = AWAC(OBS, ACT, config)
    restore_agent(load_checkpoint(path), back)
    q = agent.critic(batch(8)["obs"], batch(8)["action"])
    torch.testing.assert_close(back.critic(batch(8)["obs"], batch(8)["action"]), q)


# ---- the random-subset minimum ---------------------------------------------------------------
def constant_target_critics(agent: AWAC) -> None:
    """Target member n outputs -n everywhere."""
    with torch.no_grad():
        for p in agent.critic_target.net.weights:
            p.zero_()
        for n in range(agent.config.n_critics):
            agent.critic_target.net.biases[-1][n].fill_(-float(n))


def test_the_subset_min_uses_two_of_ten_critics_drawn_anew_each_update() -> None:
    config = AWACConfig(**SMALL, n_critics=10, critic_aggregation="subset_min",
                        critic_subset=2, gamma=1.0)
    agent = AWAC(OBS, ACT, config)
    constant_target_critics(agent)
    reward, done = torch.zeros(3), torch.zeros(3)
    targets = [agent.td_target(reward, torch.randn(3, OBS), done) for _ in range(900)]
    for y in targets:  # one pair per update, shared by the batch
        assert torch.all(y == y[0])
    values = torch.stack([y[0] for y in targets])
    # min of 2 distinct members of 0..9 is -max(i, j): never 0 (that takes 2 zeros), and
    # E[max] = sum_k k * k / 45 = 285 / 45 (the full minimum would be -9 every time)
    assert set(values.tolist()) == {-float(k) for k in range(1, 10)}
    assert values.mean().item() == pytest.approx(-285 / 45, abs=0.35)
    full = AWAC(OBS, ACT, dataclasses.replace(config, critic_aggregation="min"))
    constant_target_critics(full)
    assert torch.all(full.td_target(reward, torch.randn(3, OBS), done) == -9.0)


def test_subset_min_over_given_members_and_the_actor_reads_the_mean() -> None:
    q = torch.tensor([[0.0, 5.0], [-1.0, 2.0], [-4.0, 3.0]])
    torch.testing.assert_close(aggregate_q(q, "subset_min", 1.0, torch.tensor([0, 1])),
                               torch.tensor([-1.0, 2.0]))
    agent = AWAC(OBS, ACT, AWACConfig(**SMALL, n_critics=3, critic_aggregation="subset_min"))
    torch.testing.assert_close(agent._actor_q(q), q.mean(dim=0))
    with pytest.raises(ValueError, match="critic_subset"):
        AWACConfig(n_critics=2, critic_aggregation="subset_min", critic_subset=3)


# ---- G updates per env step, fused; the actor every k -----------------------------------------
def adam_steps(agent: AWAC, module: torch.nn.Module) -> set[int]:
    state = agent.optimizer.state
    return {int(state[p]["step"]) if p in state else 0 for p in module.parameters()}


def test_a_block_of_g_rows_makes_g_updates_equal_to_g_single_ones() -> None:
    config = AWACConfig(**SMALL)
    fused, single = AWAC(OBS, ACT, config, seed=1), AWAC(OBS, ACT, config, seed=1)
    block = batch(3 * 32)
    fused.update(block, n_updates=3)
    for i in range(3):
        single.update({k: v[i * 32:(i + 1) * 32] for k, v in block.items()})
    assert fused.num_updates == single.num_updates == 3
    assert adam_steps(fused, fused.critic) == {3}
    for a, b in zip(fused.critic.parameters(), single.critic.parameters()):
        torch.testing.assert_close(a, b)
    for a, b in zip(fused.actor.parameters(), single.actor.parameters()):
        torch.testing.assert_close(a, b)
    with pytest.raises(ValueError, match="n_updates=2"):
        fused.update(batch(33), n_updates=2)


def test_train_step_makes_g_updates_from_g_batches_of_rows() -> None:
    agent = AWAC(OBS, ACT, AWACConfig(**SMALL))
    replay = make_replay(agent.config, steps(200, 0.5), online_capacity=10, seed=0)
    train_step(agent, replay, 10 * 32, np.random.default_rng(0))
    assert agent.num_updates == 10 and adam_steps(agent, agent.critic) == {10}
    train_step(agent, replay, 32, np.random.default_rng(0))
    assert agent.num_updates == 11
    assert updates_in(64, 32) == 2 and updates_in(48, 32) == 1 and updates_in(16, 32) == 1


def test_online_the_actor_steps_every_kth_update_the_critic_every_update() -> None:
    agent = AWAC(OBS, ACT, AWACConfig(**SMALL, actor_update_every=5))
    agent.update(batch(64), n_updates=2)  # offline: both every update
    assert adam_steps(agent, agent.actor) == {2} and adam_steps(agent, agent.critic) == {2}
    agent.start_online()
    actor_before = [p.detach().clone() for p in agent.actor.parameters()]
    metrics = agent.update(batch(4 * 32, seed=1), n_updates=4)
    assert adam_steps(agent, agent.actor) == {2} and adam_steps(agent, agent.critic) == {6}
    assert all(torch.equal(a, b) for a, b in zip(actor_before, agent.actor.parameters()))
    assert np.isfinite(metrics["critic_loss"]) and np.isfinite(metrics["adv_weight_mean"])
    agent.update(batch(32, seed=2))  # the 5th online update has the actor term
    assert adam_steps(agent, agent.actor) == {3} and adam_steps(agent, agent.critic) == {7}
    agent.update(batch(5 * 32, seed=3), n_updates=5)
    assert adam_steps(agent, agent.actor) == {4} and adam_steps(agent, agent.critic) == {12}


def test_the_first_online_updates_of_a_critic_warmup_leave_the_actor_as_pretrained() -> None:
    agent = AWAC(OBS, ACT, AWACConfig(**SMALL, critic_warmup_updates=3, actor_update_every=2))
    agent.update(batch(64), n_updates=2)  # offline: the warm-up does not apply
    assert adam_steps(agent, agent.actor) == {2}
    agent.start_online()
    pretrained = [p.detach().clone() for p in agent.actor.parameters()]
    agent.update(batch(3 * 32, seed=1), n_updates=3)
    assert adam_steps(agent, agent.actor) == {2} and adam_steps(agent, agent.critic) == {5}
    assert all(torch.equal(a, b) for a, b in zip(pretrained, agent.actor.parameters()))
    # after it, every k-th update as before: online updates 4 (index 3, the 2nd of its pair)
    agent.update(batch(32, seed=2))
    assert adam_steps(agent, agent.actor) == {3}
    agent.update(batch(2 * 32, seed=3), n_updates=2)
    assert adam_steps(agent, agent.actor) == {4} and adam_steps(agent, agent.critic) == {8}


def test_a_critic_only_update_skips_the_actors_forward_pass(monkeypatch) -> None:
    agent = AWAC(OBS, ACT, AWACConfig(**SMALL, actor_update_every=3))
    agent.start_online()
    calls: list[int] = []
    monkeypatch.setattr(agent, "_actor_loss", lambda *a: calls.append(1) or 1 / 0)
    agent.update(batch(64), n_updates=2)  # updates 1 and 2 of 3: critic only
    assert calls == []


# ---- warm start, the schedule, and the trainer's blocks ----------------------------------------
def wait_for(condition, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "background trainer did not get there"
        time.sleep(0.01)


def test_the_trainer_waits_for_the_warm_start_then_makes_g_per_step_in_blocks() -> None:
    agent = AWAC(OBS, ACT, AWACConfig(**SMALL, warm_start_steps=100))
    replay = make_replay(agent.config, steps(200, 0.5), online_capacity=1000, seed=0)
    rng = np.random.default_rng(0)
    blocks: list[int] = []

    def step(rows: int):
        before = agent.num_updates
        metrics = train_step(agent, replay, rows, rng)
        blocks.append(agent.num_updates - before)
        return metrics

    trainer = BackgroundTrainer(agent, step, lambda n: n,
                                BackgroundConfig(batch_size=32, updates_per_env_step=4.0),
                                buffer_transitions=200)
    trainer.start()
    wait_for(lambda: trainer.snapshot is not None)
    trainer.submit_episode(60)
    trainer.submit_episode(30)
    wait_for(lambda: trainer.counters.env_steps == 90)
    time.sleep(0.2)
    assert trainer.counters.online_updates == 0 and agent.num_updates == 0  # warm start
    trainer.submit_episode(25)  # 115 steps: 15 past the warm start, 4 updates each
    wait_for(lambda: trainer.counters.online_updates == 60)
    time.sleep(0.2)
    trainer.stop()
    assert trainer.error is None and agent.num_updates == 60
    assert set(blocks) == {4}  # fused blocks of G


def test_the_in_process_schedule_counts_from_the_warm_start() -> None:
    from robot_rl.pipeline.stages import UpdateSchedule

    schedule = UpdateSchedule(10, warm_start_steps=100)
    assert schedule.blocks(0, 60) == [] and schedule.blocks(60, 120) == [10] * 20
    assert sum(schedule.blocks(0, 1000)) == 9000
    assert UpdateSchedule(3).blocks(5, 7) == [3, 3]
    assert UpdateSchedule(10, 5).blocks(0, 7) == [10, 10]


# ---- the keeper: fine-tuning hands over the best-measured policy ---------------------------------
def test_the_keeper_hands_over_the_best_measured_policy_ties_to_the_later() -> None:
    agent = AWAC(OBS, ACT, AWACConfig(**SMALL, handed_policy="best"))
    obs = np.ones((2, OBS), np.float32)
    keeper = agent.keeper
    assert agent.handed_actor() is agent.actor  # nothing measured: the actor itself
    keeper.record(1.0, 0, agent.actor)
    offline_action = agent.act(obs, deterministic=True)
    agent.update(batch(32))
    agent.update(batch(32, seed=1))
    assert not keeper.record(0.7, 500, agent.actor)  # the dip: not kept
    assert not np.allclose(agent.act(obs, deterministic=True), offline_action)
    with torch.no_grad():
        handed_action = agent.handed_actor()(torch.as_tensor(obs))[0].numpy()
    np.testing.assert_allclose(handed_action, offline_action, atol=1e-6)
    assert keeper.record(1.0, 1000, agent.actor)  # as good and later: kept
    assert keeper.kept.label == 1000 and keeper.offline.label == 0
    final = AWAC(OBS, ACT, AWACConfig(**SMALL))
    final.keeper.record(1.0, 0, final.actor)
    assert final.handed_actor() is final.actor  # handed_policy final (the library default)


def test_the_keeper_travels_in_the_checkpoint(tmp_path) -> None:
    agent = AWAC(OBS, ACT, AWACConfig(**SMALL, handed_policy="best"))
    agent.keeper.record(0.9, 0, agent.actor)
    agent.update(batch(32))
    path = save_checkpoint(tmp_path / "k.pt", agent, None, {}, {}, action_mode="velocity")
    back = AWAC(OBS, ACT, agent.config)
    restore_agent(load_checkpoint(path), back)
    assert back.keeper.kept == agent.keeper.kept
    x = torch.ones(1, OBS)
    torch.testing.assert_close(back.handed_actor()(x)[0], agent.handed_actor()(x)[0])
    old = agent.state_dict()
    del old["keeper"]  # a checkpoint from before the keeper
    AWAC(OBS, ACT, agent.config).load_state_dict(old)


def test_the_trainer_feeds_the_keeper_windows_of_exploring_episodes() -> None:
    class Episode:
        def __init__(self, success: bool) -> None:
            self.success, self.length = success, 10

    agent = AWAC(OBS, ACT, AWACConfig(**SMALL, keeper_window_episodes=2, warm_start_steps=10**6))
    trainer = BackgroundTrainer(agent, lambda rows: {}, lambda ep: ep.length,
                                BackgroundConfig(batch_size=32, updates_per_env_step=1.0))
    trainer.start()
    wait_for(lambda: trainer.counters.online_started)
    for success in (True, True, False, True):
        trainer.submit_episode(Episode(success))
    wait_for(lambda: trainer.counters.episodes == 4)
    trainer.stop()
    assert trainer.error is None
    assert agent.keeper.offline.success == 1.0 and agent.keeper.kept.success == 1.0
    assert agent.keeper.kept.label == 20  # the second window (0.5) did not replace it


def test_keeper_records_even_a_zero_first() -> None:
    keeper = PolicyKeeper()
    policy = torch.nn.Linear(2, 2)
    assert keeper.record(0.0, 0, policy) and keeper.record(0.0, 10, policy)
    assert keeper.kept.label == 10


def test_the_learner_node_owes_no_updates_for_the_warm_start() -> None:
    """Its budget's end waits until the updates owed are made: counted from the warm start, as
    the trainer makes them (else a run with a warm start would never finish)."""
    from types import SimpleNamespace

    from robot_rl.learning.background import TrainerCounters
    from robot_rl.nodes.learner import LearnerNode

    counters = TrainerCounters(online_updates=9000, env_steps=1900, online_started=True)
    node = SimpleNamespace(
        config=SimpleNamespace(awac=AWACConfig(batch_size=32, warm_start_steps=1000)),
        params={"train": True}, updates_per_env_step=10.0, _acted_steps=1900,
        trainer=SimpleNamespace(counters=counters, buffer_transitions=5000))
    assert LearnerNode._training_caught_up(node)  # 10 x (1900 - 1000) made
    counters.online_updates = 8990
    assert not LearnerNode._training_caught_up(node)


def test_the_handed_checkpoint_holds_the_kept_policy_and_the_agent_keeps_its_own(
        tmp_path) -> None:
    from robot_rl.learning.factory import load_agent
    from robot_rl.pipeline.stages import save_handed
    from robot_rl.run_config import PipelineConfig

    config = PipelineConfig(awac=AWACConfig(**SMALL, handed_policy="best"))
    agent = AWAC(OBS, ACT, config.awac)
    agent.keeper.record(1.0, 0, agent.actor)
    kept = {k: v.clone() for k, v in agent.actor.state_dict().items()}
    agent.update(batch(32))
    last = {k: v.clone() for k, v in agent.actor.state_dict().items()}
    path = save_handed(tmp_path / "handed.pt", agent, config, {"online_env_steps": 1}, "velocity")
    for key, value in agent.actor.state_dict().items():  # the agent still has its last actor
        torch.testing.assert_close(value, last[key])
    handed = load_agent(path, config.awac).actor.state_dict()
    assert not torch.equal(kept["trunk.layers.0.weight"], last["trunk.layers.0.weight"])
    for key, value in handed.items():
        torch.testing.assert_close(value, kept[key])
    resumed = save_checkpoint(tmp_path / "learner.pt", agent, None, {}, {}, action_mode="velocity")
    for key, value in load_agent(resumed, config.awac, handed=True).actor.state_dict().items():
        torch.testing.assert_close(value, kept[key])
    for key, value in load_agent(resumed, config.awac).actor.state_dict().items():
        torch.testing.assert_close(value, last[key])
