"""The learner node: acts for one or several robots and trains AWAC in a background thread.

At start it resumes ``run_dir/learner.pt`` if present (weights, optimiser, normaliser, counters)
and reloads its online replay from ``run_dir/online.zarr``; otherwise it pretrains on
``pretrain_dataset``. Then it runs the acting loop of ``nodes.actor.ActingShell`` with the
trainer's latest policy snapshot, stores every finished episode (replay and online.zarr),
publishes the weights on POLICY (latched) and checkpoints atomically.

Files in ``run_dir`` for whoever follows the run (``robot-rl demo`` does): ``offline.pt`` right
after pretraining, ``episodes.csv`` (one line per online episode), and ``status.json`` (counters
and phase, rewritten atomically every STATUS_PERIOD_S). With ``max_online_env_steps`` the node
stops acting once that many online env steps are stored, finishes the updates that
``updates_per_env_step`` owes them, writes its final checkpoint and exits by itself.
"""

from __future__ import annotations

import csv
import json
import os
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from robot_rl.agent.episode import FinishedEpisode
from robot_rl.agent.tasks import env_id_task
from robot_rl.agent.weights import snapshot_to_bytes
from robot_rl.config import to_dict
from robot_rl.data import EpisodeStore, transitions
from robot_rl.data.replay import TRANSITION_UNITS
from robot_rl.learning import (
    AWAC,
    MetricsLogger,
    Normalizer,
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
from robot_rl.learning.factory import Replay, batch_from_steps, make_replay, train_step
from robot_rl.nodes import topics
from robot_rl.nodes.actor import ActingShell, declare_acting_parameters
from robot_rl.pipeline.config import PipelineConfig, load_pipeline_config
from robot_rl.robot_config import robot_digest
from robot_rl.ros import messages as m
from robot_rl.ros.api import Node
from robot_rl.ros.qos import QOS_LATCHED
from robot_rl.ros.runtime import make_node, run

CHECKPOINT = "learner.pt"
OFFLINE_CHECKPOINT = "offline.pt"
ONLINE_STORE = "online.zarr"
EPISODE_LOG = "episodes.csv"
STATUS = "status.json"
POLICY_CHECK_PERIOD_S = 0.25
STATUS_PERIOD_S = 0.5
# The trainer thread holds the GIL between torch calls; a node callback that wakes on a joint
# state waits for it up to the interpreter's switch interval (CPython default 5 ms, the whole
# control-loop budget). bench/control_loop.py, 20 Hz, act_on joint_states, three alternating runs
# on a quiet 2-core machine: state -> command_raw p50 1.6-2.1 ms at 0.5 ms, 1.9-2.2 ms at 5 ms,
# 2.6-3.2 ms at 0.1 ms; the p99s overlap between 0.5 and 5 ms (a small gain, kept).
GIL_SWITCH_INTERVAL_S = 0.0005
EPISODE_LOG_COLUMNS = ("episode", "robot_namespace", "steps", "env_steps", "success",
                       "episode_return", "policy_version", "wall_time_s")


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
        "updates_per_env_step": p("updates_per_env_step", 0.0, "0: train continuously; "
                                  "-1: the config's finetune.updates_per_env_step"),
        "max_online_env_steps": p("max_online_env_steps", 0, "stop after this many online env "
                                  "steps; 0: never; -1: the config's finetune.env_steps"),
        "publish_every_updates": p("publish_every_updates", 50, "policy snapshot period"),
        "trainer_threads": p("trainer_threads", 1, "torch threads of the trainer; 0: default"),
        "replay_capacity": p("replay_capacity", 200_000, "online transitions kept in replay"),
    }


class LearnerNode:
    def __init__(self, argv: list[str]) -> None:
        self.node: Node = make_node("learner", argv=argv)
        self.params = declare_learner_parameters(self.node)
        log = self.node.get_logger()
        profile = self.params["profile"] or None
        self.config: PipelineConfig = load_pipeline_config(self.params["config"], None, profile)
        # the config names its task and robot: they are the defaults, so config:=drawer suffices
        config_task = env_id_task(self.config.env_id)
        acting = declare_acting_parameters(self.node, robot=self.config.robot,
                                           task=config_task or "valve")
        if config_task and config_task != acting["task"]:
            name = self.node.fully_qualified_name
            self.node.destroy()
            raise ValueError(
                f"node {name}: parameter task is {acting['task']!r} but "
                f"config {self.params['config']!r} is for {config_task!r} ({self.config.env_id}); "
                f"pass task:={config_task} (and its robot)")
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
        self.replay, n_transitions = self._replay(offline, online)
        self.generator = np.random.default_rng((self.config.seed, self.agent.num_updates))
        self.metrics = MetricsLogger(self.run_dir / "learner")
        pretrain = self.params["pretrain_updates"]
        self.updates_per_env_step, self.max_env_steps = self._online_budget()
        self._acted_steps = counters.env_steps  # env steps handed to the trainer (node thread)
        self._acting_done = bool(self.max_env_steps) and self._acted_steps >= self.max_env_steps
        self._episode_log = _open_episode_log(self.run_dir / EPISODE_LOG)
        self.trainer = BackgroundTrainer(
            self.agent, self._train_step, self._ingest,
            BackgroundConfig(
                batch_size=self.config.awac.batch_size,
                publish_every_updates=self.params["publish_every_updates"],
                updates_per_env_step=self.updates_per_env_step,
                checkpoint_every_updates=self.params["checkpoint_every_updates"],
                num_threads=self.params["trainer_threads"]),
            pretrain_updates=(self.config.pretrain.updates if pretrain < 0 else pretrain)
            if offline is not None else 0,
            train=self.params["train"], counters=counters, buffer_transitions=n_transitions,
            on_snapshot=self._on_snapshot, on_checkpoint=self._checkpoint,
            on_pretrained=self._on_pretrained, on_metrics=self.metrics.log, on_log=log.info)
        self._policy_pub = self.node.create_publisher(m.UInt8MultiArray, topics.POLICY,
                                                      QOS_LATCHED)
        self.node.create_timer(POLICY_CHECK_PERIOD_S, self._publish_policy)
        self.node.create_timer(STATUS_PERIOD_S, self._on_status_timer)
        sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)
        self.trainer.start()
        log.info(f"learner in {self.run_dir}: {self.agent.num_updates} updates so far, "
                 f"{counters.episodes} online episodes, {n_transitions} transitions in replay")

    # ---- start-up ----------------------------------------------------------------------------
    def _online_budget(self) -> tuple[float, int]:
        """(updates per env step, max online env steps); -1 picks the config's finetune value."""
        ratio, steps = self.params["updates_per_env_step"], self.params["max_online_env_steps"]
        finetune = self.config.finetune
        ratio = float(finetune.updates_per_env_step) if ratio == -1 else ratio
        steps = finetune.env_steps if steps == -1 else steps
        if ratio < 0 or steps < 0:
            raise ValueError(f"node {self.node.fully_qualified_name}: updates_per_env_step and "
                             f"max_online_env_steps must be >= 0 or -1 (the config's), got "
                             f"{ratio}, {steps}")
        return ratio, steps

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
                                   units=TRANSITION_UNITS)

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

    def _replay(self, offline: dict[str, np.ndarray] | None,
                online: dict[str, np.ndarray] | None) -> tuple[Replay, int]:
        """The config's replay (uniform or balanced): the dataset as offline data, the online
        episodes stored before a restart as online data."""
        empty = {key: np.zeros((0, self.task.observation_size), np.float32)
                 for key in ("observation", "next_observation")}
        empty.update(action=np.zeros((0, self.task.n_joints), np.float32),
                     reward=np.zeros(0, np.float32), terminated=np.zeros(0, bool))
        replay = make_replay(self.config.awac, offline if offline is not None else empty,
                             online_capacity=self.params["replay_capacity"],
                             seed=self.config.seed)
        if online is not None and len(online["reward"]):
            replay.add_episode(batch_from_steps(online))
        return replay, len(replay)

    # ---- trainer-thread callbacks ------------------------------------------------------------
    def _train_step(self, batch_size: int) -> Mapping[str, float]:
        return train_step(self.agent, self.replay, batch_size, self.generator)

    def _ingest(self, episode: FinishedEpisode) -> int:
        self.store.add_episode(episode.steps, episode.info)
        self.replay.add_episode(batch_from_steps(episode.steps))
        return episode.length

    def _on_snapshot(self, snapshot: PolicySnapshot) -> None:
        data = snapshot_to_bytes(snapshot, task=self.task.name, robot=self.shell.calibration.robot)
        self._policy_bytes = (snapshot.version, data)

    def _checkpoint(self, counters: TrainerCounters, name: str = CHECKPOINT) -> None:
        """save_checkpoint writes atomically: a kill never leaves a half checkpoint."""
        save_checkpoint(self.run_dir / name, self.agent, self.agent.normalizer,
                        to_dict(self.config), counters.as_dict())

    def _on_pretrained(self, counters: TrainerCounters) -> None:
        self._checkpoint(counters, OFFLINE_CHECKPOINT)
        self.node.get_logger().info(f"offline policy: {self.run_dir / OFFLINE_CHECKPOINT}")

    # ---- node-thread callbacks ---------------------------------------------------------------
    def _snapshot(self) -> PolicySnapshot | None:
        if self.trainer.error is not None:
            raise RuntimeError(f"trainer failed: {self.trainer.error!r}") from self.trainer.error
        # no policy, no new episode: the acting shell stays idle once the budget is spent
        return None if self._acting_done else self.trainer.snapshot

    def _submit(self, episode: FinishedEpisode) -> None:
        self.trainer.submit_episode(episode)
        self._acted_steps += episode.length
        info = episode.info
        row = (info.get("episode", -1), info.get("robot_namespace", ""), episode.length,
               self._acted_steps, int(bool(episode.success)),
               f"{float(episode.steps['reward'].sum()):.6g}", info.get("policy_version", -1),
               f"{time.time():.3f}")
        self._episode_log[1].writerow(row)
        self._episode_log[0].flush()
        if self.max_env_steps and not self._acting_done and \
                self._acted_steps >= self.max_env_steps:
            self._acting_done = True
            self.node.get_logger().info(
                f"online budget reached: {self._acted_steps} env steps "
                f"(max_online_env_steps {self.max_env_steps}); finishing the updates owed")

    def _on_status_timer(self) -> None:
        if self._acting_done and self._training_caught_up():
            self.node.get_logger().info("online budget done; stopping")
            self.node.request_shutdown()  # spin returns; close() writes the final checkpoint
        self._write_status("finishing" if self._acting_done else
                           "online" if self.trainer.snapshot is not None else "pretraining")

    def _training_caught_up(self) -> bool:
        """Every episode ingested and the updates ``updates_per_env_step`` owes them done."""
        counters, trainer = self.trainer.counters, self.trainer
        if counters.env_steps < self._acted_steps:
            return False
        if not (trainer.train and self.updates_per_env_step > 0):
            return True
        if trainer.buffer_transitions < trainer.config.batch_size:
            return True  # nothing can be trained on; nothing is owed
        return counters.online_updates >= self.updates_per_env_step * counters.env_steps

    def _write_status(self, phase: str) -> None:
        """Atomically (write, then rename): a reader never sees half a file."""
        counters = self.trainer.counters
        status = {**counters.as_dict(), "phase": phase, "num_updates": self.agent.num_updates,
                  "pretrain_updates": self.trainer.pretrain_updates,
                  "max_online_env_steps": self.max_env_steps,
                  "updates_per_env_step": self.updates_per_env_step,
                  "acted_env_steps": self._acted_steps, "pid": os.getpid(),
                  "wall_time_s": time.time()}
        path = self.run_dir / STATUS
        tmp = path.with_name(f".{STATUS}.tmp")
        tmp.write_text(json.dumps(status))
        os.replace(tmp, path)

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
        self._episode_log[0].close()
        failed = self.trainer.alive or self.trainer.error is not None
        self._write_status("failed" if failed else "done")


def _open_episode_log(path: Path) -> tuple[Any, Any]:
    """(file, csv writer) appending to ``path``; the header only in a new file."""
    is_new = not path.exists() or path.stat().st_size == 0
    stream = open(path, "a", newline="")  # noqa: SIM115 - closed in LearnerNode.close
    writer = csv.writer(stream)
    if is_new:
        writer.writerow(EPISODE_LOG_COLUMNS)
    return stream, writer


def main(argv: list[str] | None = None) -> int:
    return run(LearnerNode, sys.argv[1:] if argv is None else argv)
