"""The learner node: acts for one or several robots and trains AWAC in a background thread.

At start it resumes ``run_dir/learner.pt`` if present (weights, optimiser, normaliser, counters)
and reloads its online replay from ``run_dir/online.zarr``; otherwise it pretrains on
``pretrain_dataset``. Then it runs the acting loop of ``nodes.actor.ActingShell`` with the
trainer's latest policy snapshot, stores every finished episode (replay and online.zarr),
publishes the weights on POLICY (latched) and checkpoints atomically.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np

from robot_rl.agent.episode import FinishedEpisode
from robot_rl.agent.weights import snapshot_to_bytes
from robot_rl.config import to_dict
from robot_rl.data import EpisodeStore, transitions
from robot_rl.data.replay import TRANSITION_UNITS as UNITS
from robot_rl.learning import (
    AWAC,
    MetricsLogger,
    Normalizer,
    ReplayBuffer,
    load_checkpoint,
    restore_agent,
    save_checkpoint,
)
from robot_rl.learning.background import (
    BackgroundConfig,
    BackgroundTrainer,
    PolicySnapshot,
    TrainerCounters,
)
from robot_rl.learning.factory import batch_from_steps as _as_transitions
from robot_rl.nodes import topics
from robot_rl.nodes.actor import ActingShell, declare_acting_parameters
from robot_rl.pipeline.config import PipelineConfig, load_pipeline_config
from robot_rl.robot_config import robot_digest
from robot_rl.ros import messages as m
from robot_rl.ros.api import Node
from robot_rl.ros.qos import QOS_LATCHED
from robot_rl.ros.runtime import make_node, run

CHECKPOINT = "learner.pt"
ONLINE_STORE = "online.zarr"
POLICY_CHECK_PERIOD_S = 0.25


def declare_learner_parameters(node: Node) -> dict[str, Any]:
    p = node.declare_parameter
    return {
        "pretrain_dataset": p("pretrain_dataset", "", "zarr dataset to pretrain on ('': none)"),
        "pretrain_updates": p("pretrain_updates", -1, "offline updates; -1: the config's"),
        "run_dir": p("run_dir", "runs/learner", "checkpoint, online.zarr and metrics"),
        "checkpoint_every_updates": p("checkpoint_every_updates", 1000, "0: only at exit"),
        "train": p("train", True, "train; false: act with the loaded policy only"),
        "config": p("config", "valve", "pipeline config name or YAML path (AWAC settings)"),
        "profile": p("profile", "", "a profile of that config, e.g. quick"),
        "updates_per_env_step": p("updates_per_env_step", 0.0, "0: train continuously"),
        "publish_every_updates": p("publish_every_updates", 50, "policy snapshot period"),
        "trainer_threads": p("trainer_threads", 1, "torch threads of the trainer; 0: default"),
        "replay_capacity": p("replay_capacity", 200_000, "online transitions kept in replay"),
    }


class LearnerNode:
    def __init__(self, argv: list[str]) -> None:
        self.node: Node = make_node("learner", argv=argv)
        acting = declare_acting_parameters(self.node)
        self.params = declare_learner_parameters(self.node)
        log = self.node.get_logger()
        profile = self.params["profile"] or None
        self.config: PipelineConfig = load_pipeline_config(self.params["config"], None, profile)
        self.run_dir = Path(self.params["run_dir"])
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._policy_bytes: tuple[int, bytes] | None = None
        self._published_version = -1

        # the acting shell first: it knows the task (observation and action sizes)
        self.shell = ActingShell(self.node, acting, self._snapshot, self._submit,
                                 first_episodes={})
        self.task = self.shell.task
        self.store = self._open_store()
        for robot in self.shell.robots:
            robot.machine.episode = self._next_episode(robot.topics.namespace) - 1
        offline = self._offline_data()
        self.agent, counters = self._agent(offline)
        online = transitions(self.store) if self.store.n_episodes else None
        if online is not None:
            counters.env_steps, counters.episodes = self.store.n_steps, self.store.n_episodes
        self.buffer, n_transitions = self._buffer(offline, online)
        self.generator = np.random.default_rng((self.config.seed, self.agent.num_updates))
        self.metrics = MetricsLogger(self.run_dir / "learner")
        pretrain = self.params["pretrain_updates"]
        self.trainer = BackgroundTrainer(
            self.agent, self._sample, self._ingest,
            BackgroundConfig(
                batch_size=self.config.awac.batch_size,
                publish_every_updates=self.params["publish_every_updates"],
                updates_per_env_step=self.params["updates_per_env_step"],
                checkpoint_every_updates=self.params["checkpoint_every_updates"],
                num_threads=self.params["trainer_threads"]),
            pretrain_updates=(self.config.pretrain.updates if pretrain < 0 else pretrain)
            if offline is not None else 0,
            train=self.params["train"], counters=counters, buffer_transitions=n_transitions,
            on_snapshot=self._on_snapshot, on_checkpoint=self._checkpoint,
            on_metrics=self.metrics.log, on_log=log.info)
        self._policy_pub = self.node.create_publisher(m.UInt8MultiArray, topics.POLICY,
                                                      QOS_LATCHED)
        self.node.create_timer(POLICY_CHECK_PERIOD_S, self._publish_policy)
        self.trainer.start()
        log.info(f"learner in {self.run_dir}: {self.agent.num_updates} updates so far, "
                 f"{counters.episodes} online episodes, {n_transitions} transitions in replay")

    # ---- start-up ----------------------------------------------------------------------------
    def _open_store(self) -> EpisodeStore:
        path = self.run_dir / ONLINE_STORE
        if path.exists():
            store = EpisodeStore.open(path, "a")
            if store.recovery is not None:
                self.node.get_logger().warning(f"{path}: {store.recovery}")
            return store
        return EpisodeStore.create(path, robot=self.shell.calibration.robot,
                                   task=self.config.env_id,
                                   calibration_digest=robot_digest(self.shell.params["robot"]),
                                   units=UNITS)

    def _next_episode(self, namespace: str) -> int:
        """Episode indices continue after a restart (per robot namespace)."""
        last = -1
        for index in range(self.store.n_episodes):
            info = self.store.episode_info(index)
            if info.get("robot_namespace") == namespace:
                last = max(last, int(info.get("episode", -1)))
        return last + 1

    def _offline_data(self) -> dict[str, np.ndarray] | None:
        path = self.params["pretrain_dataset"]
        if not path:
            return None
        data = transitions(path)
        if data["observation"].shape[1] != self.task.observation_size:
            raise ValueError(f"pretrain_dataset {path}: observations have "
                             f"{data['observation'].shape[1]} values, task {self.task.name} "
                             f"makes {self.task.observation_size}")
        return data

    def _agent(self, offline: dict[str, np.ndarray] | None) -> tuple[AWAC, TrainerCounters]:
        obs_dim, act_dim = self.task.observation_size, self.task.n_joints
        agent = AWAC(obs_dim, act_dim, self.config.awac, seed=self.config.seed)
        path = self.run_dir / CHECKPOINT
        if path.exists():
            state = load_checkpoint(path)
            if (state["obs_dim"], state["act_dim"]) != (obs_dim, act_dim):
                raise ValueError(f"{path}: checkpoint is for obs_dim {state['obs_dim']}, "
                                 f"act_dim {state['act_dim']}; task {self.task.name} needs "
                                 f"{obs_dim}, {act_dim}")
            restore_agent(state, agent)
            counters = TrainerCounters(**{k: v for k, v in state["counters"].items()
                                          if k in TrainerCounters.__dataclass_fields__})
            self.node.get_logger().info(f"resumed {path} at update {agent.num_updates}")
            return agent, counters
        normalizer = (Normalizer.from_data(offline["observation"]) if offline is not None
                      else Normalizer.identity(obs_dim))
        agent.set_normalizer(normalizer)
        return agent, TrainerCounters()

    def _buffer(self, offline: dict[str, np.ndarray] | None,
                online: dict[str, np.ndarray] | None) -> tuple[ReplayBuffer, int]:
        parts = [d for d in (offline, online) if d is not None and len(d["reward"])]
        held = sum(len(d["reward"]) for d in parts)
        buffer = ReplayBuffer(self.task.observation_size, self.task.n_joints,
                              capacity=held + self.params["replay_capacity"])
        for data in parts:
            buffer.add_episode(_as_transitions(data))
        return buffer, held

    # ---- trainer-thread callbacks ------------------------------------------------------------
    def _sample(self, batch_size: int) -> Any:
        return self.buffer.sample(batch_size, self.generator)

    def _ingest(self, episode: FinishedEpisode) -> int:
        self.store.add_episode(episode.steps, episode.info)
        self.buffer.add_episode(_as_transitions(episode.steps))
        return episode.length

    def _on_snapshot(self, snapshot: PolicySnapshot) -> None:
        data = snapshot_to_bytes(snapshot, task=self.task.name, robot=self.shell.calibration.robot)
        self._policy_bytes = (snapshot.version, data)

    def _checkpoint(self, counters: TrainerCounters) -> None:
        """save_checkpoint writes atomically: a kill never leaves a half checkpoint."""
        save_checkpoint(self.run_dir / CHECKPOINT, self.agent, self.agent.normalizer,
                        to_dict(self.config), counters.as_dict())

    # ---- node-thread callbacks ---------------------------------------------------------------
    def _snapshot(self) -> PolicySnapshot | None:
        if self.trainer.error is not None:
            raise RuntimeError(f"trainer failed: {self.trainer.error!r}") from self.trainer.error
        return self.trainer.snapshot

    def _submit(self, episode: FinishedEpisode) -> None:
        self.trainer.submit_episode(episode)

    def _publish_policy(self) -> None:
        latest = self._policy_bytes
        if latest is None or latest[0] == self._published_version:
            return
        version, data = latest
        self._policy_pub.publish(m.UInt8MultiArray(data=data))
        self._published_version = version

    def close(self) -> None:
        self.trainer.stop()
        if self.trainer.alive:
            self.node.get_logger().error("trainer did not stop; no final checkpoint")
        elif self.params["train"]:
            self._checkpoint(self.trainer.counters)
            self.node.get_logger().info(f"checkpoint at update {self.agent.num_updates}")
        self.metrics.close()


def main(argv: list[str] | None = None) -> int:
    return run(LearnerNode, sys.argv[1:] if argv is None else argv)
