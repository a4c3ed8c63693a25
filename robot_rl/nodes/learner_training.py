"""The learner's training side: the AWAC agent, its replay, ``online.zarr`` and the checkpoints.

It runs in a process of its own (``python -m robot_rl.nodes.learner_training FD``, started by
``nodes.trainer_link``) so that no gradient step holds the GIL of the node that acts; or, with
``trainer:=thread``, in a thread of the node. Either way it talks to the node over one
``multiprocessing`` connection, in tuples whose first item names the message:

node -> training:  ("spec", TrainingSpec) once, then ("episode", FinishedEpisode) ..., ("stop",)
training -> node:  ("ready", dict), ("snapshot", version, POLICY bytes),
                   ("progress", dict), ("log", level, text), ("failed", text), ("stopped", dict)

A pixel task (``observation: pixels``) trains a ``PixelAgent`` on its replay of frames (or frozen
features): the dataset and ``online.zarr`` must hold the task's view, and the episodes the node
hands over carry each step's view (``camera_color``).

With ``publish_when_trained`` (the node's ``wait_for_updates``) the training side also sends the
policy as soon as it has done every update owed to the steps it has (``updates_per_env_step``),
not only every ``publish_every_updates``: the node waits for exactly that policy.

A training process whose node dies exits at once (Linux: the kernel sends it SIGKILL; elsewhere it
sees the connection close) and writes no final checkpoint: as after a SIGKILL of the node, the last
periodic checkpoint and every stored episode are what a restart resumes from.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import os
import signal
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import numpy as np

from robot_rl.agent.episode import FinishedEpisode
from robot_rl.agent.tasks import make_task
from robot_rl.agent.weights import snapshot_to_bytes
from robot_rl.config import annotated_yaml, to_dict
from robot_rl.data import EpisodeStore, transitions
from robot_rl.data.transition_arrays import (
    PIXEL_UNITS,
    TRANSITION_UNITS,
    action_mode_extra,
    check_action_mode,
    check_observation_size,
    observation_extra,
)
from robot_rl.hil import InterventionTrend, add_online_episode, intervention_metrics
from robot_rl.hil.metrics import misdetection_metrics
from robot_rl.hil.replay import INTERVENTION_KEY
from robot_rl.learning import (
    AWAC,
    MetricsLogger,
    Normalizer,
    check_checkpoint_action_mode,
    episode_metrics,
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
from robot_rl.learning.device import resolve_device
from robot_rl.learning.factory import Replay, batch_from_steps, make_replay, train_step
from robot_rl.learning.pixel_agent import (
    PixelAgent,
    PixelPolicySnapshot,
    checkpoint_view,
    is_pixel_checkpoint,
    load_pixel_agent,
)
from robot_rl.learning.pixel_data import PixelReplay, check_pixel_store, pixel_replay
from robot_rl.robot_config import load_robot, robot_digest
from robot_rl.run_config import load_pipeline_config

CHECKPOINT = "learner.pt"
OFFLINE_CHECKPOINT = "offline.pt"
ONLINE_STORE = "online.zarr"
PROGRESS_PERIOD_S = 0.05  # counters to the node at most this often (its status and budget)


@dataclass(frozen=True)
class TrainingSpec:
    """What the training side needs from the node's parameters: plain values, so it pickles."""

    config: str                 # pipeline config name or YAML path
    profile: str | None
    run_dir: str
    pretrain_dataset: str       # '' for none
    pretrain_updates: int       # -1: the config's
    train: bool
    checkpoint_every_updates: int
    publish_every_updates: int
    updates_per_env_step: float
    trainer_threads: int
    trainer_device: str         # '' for the config's awac.device
    replay_capacity: int
    task: str                   # the node's task parameter
    robot: str                  # the node's robot parameter (calibration name or path)
    observation: str            # the node's observation parameter: state | pixels
    namespaces: tuple[str, ...]
    interventions: bool = True  # operators may take over (the node listens to TAKEOVER)
    publish_when_trained: bool = False  # a snapshot as soon as the updates owed are done


class LearnerTraining:
    """Builds the agent (resumed from ``learner.pt`` or fresh), the replay (dataset + stored online
    episodes) and the background trainer; every callback reports to the node through ``send``."""

    def __init__(self, spec: TrainingSpec, send: Any) -> None:
        self.spec, self._send = spec, send
        self.run_dir = Path(spec.run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.config = load_pipeline_config(spec.config, None, spec.profile)
        if spec.trainer_device:  # checked here so that its error names the parameter
            resolve_device(spec.trainer_device, "learner parameter trainer_device")
            self.config = dataclasses.replace(self.config, awac=dataclasses.replace(
                self.config.awac, device=spec.trainer_device))
        self.calibration = load_robot(spec.robot)
        self.task = make_task(spec.task, self.calibration).with_observation(spec.observation)
        self.store = self._open_store()
        # a store from before the intervention key keeps its schema (its episodes share one)
        self._record_flags = not self.store.n_episodes or INTERVENTION_KEY in self.store.keys
        hil = self.config.intervention
        self._to_offline = spec.interventions and hil.to_offline
        self.trend = InterventionTrend(hil.trend_window)
        offline = self._offline_data()
        self.agent, counters = self._agent(offline)
        if isinstance(self.agent, PixelAgent):  # its replay has no offline side to add them to
            self._to_offline = False
        online = self._stored_online()
        if online is not None:
            counters.env_steps, counters.episodes = self.store.n_steps, self.store.n_episodes
        self.replay, n_transitions = self._replay(offline, online)
        self.generator = np.random.default_rng((self.config.seed, self.agent.num_updates))
        self.metrics = MetricsLogger(self.run_dir / "learner")
        self.metrics.log_config(annotated_yaml(self.config))
        pretrain = spec.pretrain_updates if spec.pretrain_updates >= 0 else \
            self.config.pretrain.updates
        self._last_progress_s = 0.0
        self._sent_version = -1  # the version of the last snapshot sent
        self.trainer = BackgroundTrainer(
            self.agent, self._train_step, self._ingest,
            BackgroundConfig(batch_size=self.config.awac.batch_size,
                             publish_every_updates=spec.publish_every_updates,
                             updates_per_env_step=spec.updates_per_env_step,
                             checkpoint_every_updates=spec.checkpoint_every_updates,
                             log_every_updates=self.config.pretrain.log_every_updates,
                             num_threads=spec.trainer_threads),
            pretrain_updates=pretrain if offline is not None else 0,
            train=spec.train, counters=counters, buffer_transitions=n_transitions,
            on_snapshot=self._on_snapshot, on_checkpoint=self._checkpoint,
            on_pretrained=self._on_pretrained, on_metrics=self.metrics.log,
            on_log=lambda text: self._send("log", "info", text),
            on_progress=self._progress, on_error=self._on_error)

    def ready(self) -> dict[str, Any]:
        """What the node needs before it acts: episode numbering, counters, replay size."""
        return {"next_episode": {ns: self._next_episode(ns) for ns in self.spec.namespaces},
                **self._progress_info(), "pretrain_updates": self.trainer.pretrain_updates}

    # ---- start-up ----------------------------------------------------------------------------
    def _open_store(self) -> EpisodeStore:
        path = self.run_dir / ONLINE_STORE
        mode = self.task.actions.mode
        if path.exists():
            store = EpisodeStore.open(path, "a")
            if store.recovery is not None:
                self._send("log", "warning", f"{path}: {store.recovery}")
            check_action_mode(store, mode, f"task {self.task.name}")
            if self.task.image is not None and store.n_episodes:
                check_pixel_store(store, self.task, f"the learner (task {self.task.name})")
            return store
        view = self.task.image
        extra = action_mode_extra(mode)
        if view is not None:  # the store names its view: a learner of another is refused
            extra |= observation_extra("pixels", to_dict(view))
        return EpisodeStore.create(path, robot=self.calibration.robot, task=self.config.env_id,
                                   calibration_digest=robot_digest(self.spec.robot),
                                   units=TRANSITION_UNITS | (PIXEL_UNITS if view else {}),
                                   extra=extra)

    def _stored_online(self) -> dict[str, np.ndarray] | None:
        """The online episodes stored before a restart, with who acted where recorded."""
        if not self.store.n_episodes:
            return None
        online = transitions(self.store)
        if INTERVENTION_KEY in self.store.keys:
            online[INTERVENTION_KEY] = self.store.read(INTERVENTION_KEY).astype(bool)
        return online

    def _next_episode(self, namespace: str) -> int:
        """Episode indices continue after a restart (per robot namespace)."""
        last = -1
        for index in range(self.store.n_episodes):
            info = self.store.episode_info(index)
            if info.get("robot_namespace") == namespace:
                last = max(last, int(info.get("episode", -1)))
        return last + 1

    def _offline_data(self) -> dict[str, np.ndarray] | None:
        path = self.spec.pretrain_dataset
        if not path:
            return None
        with EpisodeStore.open(path, "r") as store:  # opened once for every check
            if self.task.image is not None:  # first: a store without frames is named as such
                check_pixel_store(store, self.task, f"the learner (task {self.task.name})")
            data = transitions(store)
            check_observation_size(data, f"pretrain_dataset {path}", self.task.observation_size,
                                   f"task {self.task.name}")
            check_action_mode(store, self.task.actions.mode, f"task {self.task.name}")
        return data

    def _agent(self, offline: dict[str, np.ndarray] | None
               ) -> tuple[AWAC | PixelAgent, TrainerCounters]:
        if self.task.image is not None:
            return self._pixel_agent(offline)
        obs_dim, act_dim = self.task.observation_size, self.task.n_joints
        agent = AWAC(obs_dim, act_dim, self.config.awac, seed=self.config.seed)
        path, state = self._resume_state()
        if state is not None:
            if is_pixel_checkpoint(state):
                raise ValueError(f"{path}: a pixel task's checkpoint; task {self.task.name} "
                                 f"observes the state")
            if (state["obs_dim"], state["act_dim"]) != (obs_dim, act_dim):
                raise ValueError(f"{path}: checkpoint is for obs_dim {state['obs_dim']}, "
                                 f"act_dim {state['act_dim']}; task {self.task.name} needs "
                                 f"{obs_dim}, {act_dim}")
            restore_agent(state, agent)
            return agent, self._resumed(path, state, agent.num_updates)
        normalizer = (Normalizer.from_data(offline["observation"]) if offline is not None
                      else Normalizer.identity(obs_dim))
        agent.set_normalizer(normalizer)
        return agent, TrainerCounters()

    def _resume_state(self) -> tuple[Path, dict[str, Any] | None]:
        """``learner.pt`` and its contents (None where there is none yet), refused by name if
        it was trained with another action mode than the task's."""
        path = self.run_dir / CHECKPOINT
        if not path.exists():
            return path, None
        state = load_checkpoint(path)
        check_checkpoint_action_mode(state, self.task.actions.mode, f"task {self.task.name}",
                                     self.task.unnamed_action_mode)
        return path, state

    def _resumed(self, path: Path, state: dict[str, Any], updates: int) -> TrainerCounters:
        """The counters a resumed agent carries on from, and the log line saying so."""
        self._send("log", "info", f"resumed {path} at update {updates}")
        return TrainerCounters(**{k: v for k, v in state["counters"].items()
                                  if k in TrainerCounters.__dataclass_fields__})

    def _pixel_agent(self, offline: dict[str, np.ndarray] | None
                     ) -> tuple[PixelAgent, TrainerCounters]:
        """A pixel task's agent: resumed from ``learner.pt`` (refused by name if it is a state
        task's or of another view), or new with the dataset's vector statistics."""
        view = self.task.image
        assert view is not None
        path, state = self._resume_state()
        if state is not None:
            if not is_pixel_checkpoint(state) or checkpoint_view(state) != view:
                raise ValueError(f"{path}: checkpoint is not for task {self.task.name}'s view "
                                 f"{view} (a state task's, or another view's)")
            agent = load_pixel_agent(state, self.config.awac, seed=self.config.seed)
            return agent, self._resumed(path, state, agent.num_updates)
        agent = PixelAgent(self.task.observation_size, self.task.n_joints, view,
                           self.config.awac, self.config.encoder, seed=self.config.seed)
        agent.set_state_normalizer(Normalizer.from_data(offline["observation"])
                                   if offline is not None
                                   else Normalizer.identity(self.task.observation_size))
        return agent, TrainerCounters()

    def _replay(self, offline: dict[str, np.ndarray] | None,
                online: dict[str, np.ndarray] | None) -> tuple[Replay | PixelReplay, int]:
        """The config's replay (uniform or balanced): the dataset as offline data, the online
        episodes stored before a restart as online data; operator transitions on both sides
        (``hil.replay``: HIL-SERL's rule), in offline room reserved for them."""
        if isinstance(self.agent, PixelAgent):
            return self._pixel_replay(offline)
        empty = {key: np.zeros((0, self.task.observation_size), np.float32)
                 for key in ("observation", "next_observation")}
        empty.update(action=np.zeros((0, self.task.n_joints), np.float32),
                     reward=np.zeros(0, np.float32), terminated=np.zeros(0, bool))
        capacity = self.spec.replay_capacity
        replay = make_replay(self.config.awac, offline if offline is not None else empty,
                             online_capacity=capacity, seed=self.config.seed,
                             extra_offline_capacity=capacity if self._to_offline else 0)
        if online is not None and len(online["reward"]):
            add_online_episode(replay, online, self._to_offline)
        return replay, len(replay)

    def _pixel_replay(self, offline: dict[str, np.ndarray] | None) -> tuple[PixelReplay, int]:
        """Frames (or frozen features) of the dataset, streamed from its store, then the online
        episodes stored before a restart, one at a time."""
        assert isinstance(self.agent, PixelAgent)
        capacity = self.spec.replay_capacity + self.store.n_steps
        if offline is not None:
            replay = pixel_replay(self.agent, Path(self.spec.pretrain_dataset), offline, capacity)
        else:
            replay = self.agent.make_replay(capacity)
        for _, steps in self.store.iter_episodes():
            replay.add_episode(batch_from_steps(steps))
        return replay, len(replay)

    # ---- trainer-thread callbacks ------------------------------------------------------------
    def _train_step(self, batch_size: int) -> Mapping[str, float]:
        return train_step(self.agent, self.replay, batch_size, self.generator)

    def _ingest(self, episode: FinishedEpisode) -> int:
        steps = {k: v for k, v in episode.steps.items()
                 if self._record_flags or k != INTERVENTION_KEY}
        self.store.add_episode(steps, episode.info)
        add_online_episode(self.replay, episode.steps, self._to_offline)
        # beside the losses, at the update count the episode arrived at (their step axis)
        self.metrics.log(self.agent.num_updates, {
            **episode_metrics(np.sum(episode.steps["reward"]), episode.success),
            **self._hil_metrics(episode)})
        return episode.length

    def _hil_metrics(self, episode: FinishedEpisode) -> dict[str, float]:
        """The intervention rate and its trend (as in process: ``pipeline.hil``), and, with a
        learned reward, the classifier's misdetections against the task's own rule."""
        flags = episode.steps.get(INTERVENTION_KEY)
        takeovers = int(episode.info.get("takeovers", 0))
        scalars = intervention_metrics(flags, takeovers)
        # the store holds this episode already: its step count is the trend's x
        scalars.update(self.trend.add(self.store.n_steps, scalars["intervention_rate"],
                                      takeovers))
        if "true_success" in episode.info:
            scalars.update(misdetection_metrics(episode.success, episode.info["true_success"]))
        return scalars

    def _on_snapshot(self, snapshot: PolicySnapshot | PixelPolicySnapshot) -> None:
        """The POLICY bytes: the node acts with what they decode to, as a remote actor does."""
        self._sent_version = snapshot.version
        self._send("snapshot", snapshot.version,
                   snapshot_to_bytes(snapshot, task=self.task.name,
                                     robot=self.calibration.robot,
                                     action_mode=self.task.actions.mode))
        self._progress(force=True)

    def _checkpoint(self, counters: TrainerCounters, name: str = CHECKPOINT) -> None:
        """save_checkpoint writes atomically: a kill never leaves a half checkpoint."""
        save_checkpoint(self.run_dir / name, self.agent, self.agent.normalizer,
                        to_dict(self.config), counters.as_dict(),
                        action_mode=self.task.actions.mode)

    def _on_pretrained(self, counters: TrainerCounters) -> None:
        self._checkpoint(counters, OFFLINE_CHECKPOINT)
        self._send("log", "info", f"offline policy: {self.run_dir / OFFLINE_CHECKPOINT}")

    def _on_error(self, error: BaseException) -> None:
        self._send("failed", f"{type(error).__name__}: {error}")

    def _progress_info(self) -> dict[str, Any]:
        return {"counters": self.trainer.counters.as_dict(), "num_updates": self.agent.num_updates,
                "buffer_transitions": self.trainer.buffer_transitions}

    def _trained(self) -> bool:
        """Online, and every update owed to the stored steps done (trainer thread)."""
        counters, ratio = self.trainer.counters, self.spec.updates_per_env_step
        return (self.spec.train and ratio > 0 and counters.online_started
                and counters.online_updates >= ratio * counters.env_steps)

    def _progress(self, force: bool = False) -> None:
        if self.spec.publish_when_trained and self.agent.num_updates != self._sent_version \
                and self._trained():
            # on the trainer thread, the only one touching the agent: the policy of these
            # updates, for the node that waits for it
            self._on_snapshot(PolicySnapshot.from_agent(self.agent))
            return  # _on_snapshot reported the progress
        now = time.monotonic()
        if force or now - self._last_progress_s >= PROGRESS_PERIOD_S:
            self._last_progress_s = now
            self._send("progress", self._progress_info())

    # ---- end ---------------------------------------------------------------------------------
    def close(self) -> dict[str, Any]:
        """Stop the trainer (it finishes its update and ingests queued episodes), then write the
        final checkpoint if it trained and stopped cleanly."""
        self.trainer.stop()
        checkpointed = False
        if self.trainer.alive:
            self._send("log", "error", "trainer did not stop; no final checkpoint")
        elif self.spec.train and self.trainer.error is None:
            self._checkpoint(self.trainer.counters)
            checkpointed = True
            self._send("log", "info", f"checkpoint at update {self.agent.num_updates}")
        self.metrics.close()
        return {**self._progress_info(), "checkpointed": checkpointed,
                "failed": self.trainer.alive or self.trainer.error is not None}


def serve(conn: Connection) -> int:
    """The training side of the connection, until ("stop",) or the node's end; the exit code."""
    lock = threading.Lock()

    def send(*message: Any) -> None:
        # the trainer thread and this one both send; if the node is gone, the loop below ends
        with lock, contextlib.suppress(BrokenPipeError, ConnectionResetError, EOFError):
            conn.send(message)

    try:
        kind, spec = conn.recv()
    except EOFError:
        return 1
    if kind != "spec":
        send("failed", f"protocol: expected ('spec', TrainingSpec) first, got {kind!r}")
        return 1
    try:
        training = LearnerTraining(spec, send)
    except Exception as err:  # reported by name to the node, which refuses to start
        send("failed", f"{type(err).__name__}: {err}")
        return 1
    send("ready", training.ready())
    training.trainer.start()
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            return 1  # the node died: no final checkpoint (see the module docstring)
        if message[0] == "episode":
            training.trainer.submit_episode(message[1])
        elif message[0] == "stop":
            break
    send("stopped", training.close())
    return 0


def _die_with_parent() -> None:
    """Linux: have the kernel SIGKILL this process when its parent (the node) dies."""
    parent = os.getppid()
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGKILL))  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return  # not Linux: the connection's end stops us instead
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2 or not argv[0].isdigit() or not argv[1].lstrip("-").isdigit():
        print("usage: python -m robot_rl.nodes.learner_training FD NICE  (started by the learner "
              "node, not by hand: FD is its end of the node's connection, NICE the niceness to "
              "add)", file=sys.stderr)
        return 2
    _die_with_parent()
    os.nice(int(argv[1]))  # training yields the CPU to the control loop's processes
    # Ctrl-C and launch's SIGINT/SIGTERM reach the whole process group: the node orders the stop
    # (and the final checkpoint) over the connection, so this process ignores them.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    return serve(Connection(int(argv[0])))


if __name__ == "__main__":
    sys.exit(main())
