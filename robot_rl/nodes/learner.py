"""The learner node: acts for one or several robots while AWAC trains in a process of its own.

Its training side (``nodes.learner_training``: agent, replay, ``online.zarr``, checkpoints) resumes
``run_dir/learner.pt`` if present (weights, optimiser, normaliser, counters) and reloads its online
replay from ``run_dir/online.zarr``; otherwise it pretrains on ``pretrain_dataset``. This node runs
the acting loop of ``nodes.actor.ActingShell`` with the training side's latest policy snapshot,
hands it every finished episode, and publishes the weights on POLICY (latched). ``trainer:=process``
(the default) keeps gradient steps off this process's GIL, so acting never waits on them;
``trainer:=thread`` trains in a thread of this node, as before (bench/control_loop.py compares).

Files in ``run_dir`` for whoever follows the run (``robot-rl demo`` does): ``offline.pt`` right
after pretraining, ``episodes.csv`` (one line per online episode), ``evaluations.csv`` (one line
per evaluation episode), and ``status.json`` (counters and phase, rewritten atomically every
STATUS_PERIOD_S of wall time). With ``max_online_env_steps`` the node stops acting once that many
online env steps are stored (and the last evaluation is done), finishes the updates that
``updates_per_env_step`` owes them, writes its final checkpoint and exits by itself.

A human in the loop: with ``interventions`` (the default) an operator at a teleop node in its
intervene role takes over at any moment (TAKEOVER, COMMAND_OPERATOR in the robot's namespace;
``nodes.actor.ActingShell``): the operator's targets go out on COMMAND_RAW through the supervisor,
each step records who acted (``intervention`` in ``online.zarr``), operator transitions go to both
sides of the replay (``hil.replay``; the config's ``intervention.to_offline``), and the
intervention rate and its trend are logged with the losses (CSV, TensorBoard) and in
``episodes.csv``. ``reward_classifier``: a success classifier (``robot-rl reward train``) gives the
online episodes' reward, success and termination instead of the task's rule (threshold and
debounce: the config's ``reward`` section; 0 there: the classifier's own); the task's own success
is logged beside it as ``episode_true_success`` so that misdetections are counted where the
object's state is measured. A state task's observation includes the object's state, so there
OBJECT_STATE is still needed to act; a pixel task (``observation: pixels``) with a classifier
needs no object-state topic at all (``agent.observation.LatestState``'s ``object_optional``).

``eval_every_env_steps``: rounds of ``eval_episodes`` deterministic episodes between the
exploring ones (``agent.evaluation``), recorded apart from them and never trained on.

``wait_for_updates`` (what a lockstep graph wants: the launch files set it with ``lockstep``):
after each online episode the node acts on nothing until the training side has ingested it, done
the updates ``updates_per_env_step`` owes all the steps so far and sent the policy they made. The
next episode then acts with exactly what the in-process pipeline would (updates after each
episode), however fast the simulation runs; without it, a trainer in its own process does what it
can in the meantime, fewer updates per step the faster the world goes.
"""

from __future__ import annotations

import csv
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from robot_rl.agent.episode import FinishedEpisode, SuccessModel
from robot_rl.agent.evaluation import EvaluationRound, EvaluationSchedule
from robot_rl.config import ConfigError
from robot_rl.learning.background import PolicySnapshot
from robot_rl.learning.config import DEVICE_NAMES, check_device_name
from robot_rl.nodes import topics
from robot_rl.nodes.actor import ActingShell, declare_acting_parameters
from robot_rl.nodes.learner_training import TrainingSpec
from robot_rl.nodes.trainer_link import TRAINER_MODES, TrainerLink
from robot_rl.registry import env_id_task
from robot_rl.ros import messages as m
from robot_rl.ros.api import Node
from robot_rl.ros.qos import QOS_LATCHED
from robot_rl.ros.runtime import make_node, run
from robot_rl.run_config import PipelineConfig, check_graph_config, load_pipeline_config

EPISODE_LOG = "episodes.csv"
EVAL_LOG = "evaluations.csv"
STATUS = "status.json"
POLICY_CHECK_PERIOD_S = 0.25
STATUS_PERIOD_S = 0.5
TRAINER_READY_TIMEOUT_S = 600.0  # loading a large dataset and resuming a big replay take a while
# With trainer:=thread the trainer holds the GIL between torch calls; a node callback that wakes
# on a joint state waits for it up to the interpreter's switch interval (CPython default 5 ms, the
# whole control-loop budget). bench/control_loop.py, 20 Hz, act_on joint_states, three alternating
# runs on a quiet 2-core machine: state -> command_raw p50 1.6-2.1 ms at 0.5 ms, 1.9-2.2 ms at
# 5 ms, 2.6-3.2 ms at 0.1 ms; the p99s overlap between 0.5 and 5 ms (a small gain, kept).
GIL_SWITCH_INTERVAL_S = 0.0005
EPISODE_LOG_COLUMNS = ("episode", "robot_namespace", "steps", "env_steps", "success",
                       "episode_return", "policy_version", "wall_time_s", "takeovers",
                       "intervention_steps", "true_success")
# a log begun before the human-in-the-loop columns: appended to with its own columns
EPISODE_LOG_COLUMNS_V1 = EPISODE_LOG_COLUMNS[:8]
EVAL_LOG_COLUMNS = ("round", "env_steps", "episode", "robot_namespace", "draw", "steps",
                    "success", "episode_return", "policy_version", "wall_time_s")


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
        "trainer": p("trainer", "process", "where AWAC trains: process (its own, the default: "
                     "no gradient step holds this node's GIL) or thread (in this node)"),
        "trainer_nice": p("trainer_nice", 10, "niceness added to the training process "
                          "(trainer:=process), so the control loop goes first on a busy machine"),
        "trainer_threads": p("trainer_threads", 1, "torch threads of the trainer; 0: default"),
        "trainer_device": p("trainer_device", "", f"where AWAC trains: {DEVICE_NAMES}; '': the "
                            "config's awac.device (cpu unless the config says otherwise)"),
        "replay_capacity": p("replay_capacity", 200_000, "online transitions kept in replay"),
        "interventions": p("interventions", True, "an operator may take over (teleop node, "
                           "role intervene: TAKEOVER, COMMAND_OPERATOR)"),
        "takeover_timeout_s": p("takeover_timeout_s", 0.5, "a TAKEOVER older than this is a "
                                "release; operator targets older than this: hold"),
        "reward_classifier": p("reward_classifier", "", "success classifier file for reward "
                               "and success ('': the config's reward section)"),
        "wait_for_updates": p("wait_for_updates", False, "after each online episode, act on "
                              "nothing until the updates owed so far are done (lockstep sim "
                              "time: learning per step as in process)"),
        "eval_every_env_steps": p("eval_every_env_steps", 0, "a round of deterministic "
                                  "evaluation episodes every this many online env steps; 0: "
                                  "none; -1: the config's finetune.eval_every_env_steps"),
        "eval_episodes": p("eval_episodes", -1, "episodes per evaluation round; -1: the "
                           "config's eval.episodes"),
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
        name = self.node.fully_qualified_name
        try:
            check_graph_config(self.config, f"node {name}: config {self.params['config']!r}",
                               observation_allowed=True)
        except ConfigError:
            self.node.destroy()
            raise
        observation = (self.config.env_kwargs.get("config") or {}).get("observation", "state")
        acting = declare_acting_parameters(self.node, robot=self.config.robot,
                                           task=config_task or "valve", observation=observation)
        if acting["observation"] != observation:
            self.node.destroy()
            raise ValueError(f"node {name}: parameter observation is {acting['observation']!r} "
                             f"but config {self.params['config']!r} trains on {observation!r} "
                             f"(env_kwargs.config.observation)")
        if config_task and config_task != acting["task"]:
            self.node.destroy()
            raise ValueError(
                f"node {name}: parameter task is {acting['task']!r} but "
                f"config {self.params['config']!r} is for {config_task!r} ({self.config.env_id}); "
                f"pass task:={config_task} (and its robot)")
        if self.params["trainer_device"]:
            try:
                check_device_name(self.params["trainer_device"], f"node {name}: parameter "
                                  "trainer_device")
            except ValueError:
                self.node.destroy()
                raise
        if self.params["trainer"] not in TRAINER_MODES or not 0 <= self.params["trainer_nice"] <= 19:
            self.node.destroy()
            raise ValueError(f"node {name}: parameter 'trainer' must be one of "
                             f"{', '.join(TRAINER_MODES)} and 'trainer_nice' in 0..19 (a process "
                             f"may lower its priority, not raise it); got "
                             f"{self.params['trainer']!r}, {self.params['trainer_nice']}")
        self.run_dir = Path(self.params["run_dir"])
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._published_version = -1
        try:
            self._episode_log = _open_episode_log(self.run_dir / EPISODE_LOG)
        except (OSError, ValueError):
            self.node.destroy()
            raise

        # the acting shell first: it knows the task (observation and action sizes)
        try:
            success_model = self._success_models(task_has_view=observation == "pixels")
        except (OSError, ValueError) as err:
            self.node.destroy()
            raise ValueError(f"node {name}: parameter reward_classifier: {err}") from err
        self.shell = ActingShell(self.node, acting, self._snapshot, self._submit,
                                 first_episodes={}, plan=self._plan,
                                 intervene=self.params["interventions"],
                                 takeover_timeout_s=self.params["takeover_timeout_s"],
                                 success_model=success_model)
        self.task = self.shell.task
        self.updates_per_env_step, self.max_env_steps = self._online_budget()
        self._pending_draws: dict[str, int] = {}  # robot namespace -> eval draw it runs
        self.trainer = TrainerLink(self._training_spec(acting), self.params["trainer"], log,
                                   nice=self.params["trainer_nice"])
        try:
            ready = self.trainer.wait_ready(TRAINER_READY_TIMEOUT_S)
        except BaseException:
            self.trainer.stop(timeout_s=5.0)
            self.node.destroy()
            raise
        for robot in self.shell.robots:
            robot.machine.episode = ready["next_episode"][robot.topics.namespace] - 1
        counters = self.trainer.counters
        self._acted_steps = counters.env_steps  # env steps handed to the trainer
        self._acting_done = bool(self.max_env_steps) and self._acted_steps >= self.max_env_steps
        self.evaluation = self._evaluation_schedule()
        self._eval_log = _open_log(self.run_dir / EVAL_LOG, EVAL_LOG_COLUMNS)
        self._policy_pub = self.node.create_publisher(m.UInt8MultiArray, topics.POLICY,
                                                      QOS_LATCHED)
        # bookkeeping on wall time: a lockstep simulation that waits must not stop it
        self.node.create_wall_timer(POLICY_CHECK_PERIOD_S, self._publish_policy)
        self.node.create_wall_timer(STATUS_PERIOD_S, self._on_status_timer)
        sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)
        log.info(f"learner in {self.run_dir} (trainer: {self.params['trainer']}): "
                 f"{self.trainer.num_updates} updates so far, {counters.episodes} online "
                 f"episodes, {self.trainer.buffer_transitions} transitions in replay")

    # ---- start-up ----------------------------------------------------------------------------
    def _success_models(self, task_has_view: bool) -> Callable[[], SuccessModel] | None:
        """A factory of success detectors (one per robot), or None for the task's rule;
        ``task_has_view``: a pixel task (an image classifier needs its view)."""
        reward = self.config.reward
        path = self.params["reward_classifier"] or (reward.classifier if reward.source ==
                                                    "classifier" else "")
        if not path:
            if reward.source == "classifier":
                raise ValueError("the config's reward.source is classifier but names no file")
            return None
        from robot_rl.reward import SuccessDetector, load_classifier
        from robot_rl.reward.image_classifier import check_task_view
        classifier = load_classifier(path)
        check_task_view(classifier, task_has_view, path)
        SuccessDetector(classifier, reward.threshold or None, reward.debounce_frames or None)
        self.node.get_logger().info(f"reward and success from the classifier {path}")
        return lambda: SuccessDetector(classifier, reward.threshold or None,
                                       reward.debounce_frames or None)

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

    def _evaluation_schedule(self) -> EvaluationSchedule:
        every, episodes = self.params["eval_every_env_steps"], self.params["eval_episodes"]
        every = self.config.finetune.eval_every_env_steps if every == -1 else every
        episodes = self.config.eval.episodes if episodes == -1 else episodes
        try:
            return EvaluationSchedule(every, episodes, self._acted_steps)
        except ValueError as err:
            raise ValueError(f"node {self.node.fully_qualified_name}: parameters "
                             f"eval_every_env_steps, eval_episodes: {err}") from None

    @property
    def budget_reached(self) -> bool:
        return bool(self.max_env_steps) and self._acted_steps >= self.max_env_steps

    @property
    def acting_done(self) -> bool:
        """The online budget is spent and its last evaluation done: no more episodes."""
        return self.evaluation.done(self._acted_steps, self.budget_reached)

    def _training_spec(self, acting: dict[str, Any]) -> TrainingSpec:
        p = self.params
        return TrainingSpec(
            config=p["config"], profile=p["profile"] or None, run_dir=str(self.run_dir),
            pretrain_dataset=str(p["pretrain_dataset"]), pretrain_updates=p["pretrain_updates"],
            train=p["train"], checkpoint_every_updates=p["checkpoint_every_updates"],
            publish_every_updates=p["publish_every_updates"],
            updates_per_env_step=self.updates_per_env_step,
            trainer_threads=p["trainer_threads"], trainer_device=p["trainer_device"],
            replay_capacity=p["replay_capacity"],
            publish_when_trained=p["wait_for_updates"],
            task=acting["task"], robot=acting["robot"], observation=acting["observation"],
            namespaces=tuple(robot.topics.namespace for robot in self.shell.robots),
            interventions=p["interventions"])

    # ---- node-thread callbacks ---------------------------------------------------------------
    def _snapshot(self) -> PolicySnapshot | None:
        if self.trainer.error is not None:
            raise self.trainer.error
        # no policy, no new episode: the acting shell stays idle once the budget is spent
        return None if self.acting_done else self.trainer.snapshot

    def _plan(self, robot: Any) -> bool:
        """Before a robot's next episode: online or evaluation (and which start); False when
        none is to run now."""
        namespace = robot.topics.namespace
        if namespace in self._pending_draws:  # its evaluation episode never finished
            self.evaluation.discarded(self._pending_draws.pop(namespace))
        planned = self.evaluation.next_episode(self._acted_steps, self.budget_reached)
        if planned is None:
            return False
        kind, draw = planned
        robot.machine.plan(kind, draw if kind == "eval" else None)
        if kind == "eval":
            self._pending_draws[namespace] = draw
        return True

    def _submit(self, episode: FinishedEpisode) -> None:
        if episode.info.get("kind") == "eval":
            self._record_evaluation(episode)
            return
        self.trainer.submit_episode(episode)
        self._acted_steps += episode.length
        info = episode.info
        row = (info.get("episode", -1), info.get("robot_namespace", ""), episode.length,
               self._acted_steps, int(bool(episode.success)),
               f"{float(episode.steps['reward'].sum()):.6g}", info.get("policy_version", -1),
               f"{time.time():.3f}", int(info.get("takeovers", 0)),
               int(episode.steps["intervention"].sum()) if "intervention" in episode.steps
               else 0, int(info["true_success"]) if "true_success" in info else "")
        self._episode_log[1].writerow(row[:self._episode_log[2]])
        self._episode_log[0].flush()
        if self.budget_reached and self._acted_steps - episode.length < self.max_env_steps:
            self.node.get_logger().info(
                f"online budget reached: {self._acted_steps} env steps "
                f"(max_online_env_steps {self.max_env_steps}); finishing the updates owed")
        if self.params["wait_for_updates"]:
            self._wait_for_updates()

    def _wait_for_updates(self) -> None:
        """Act on nothing until the training side has caught up with every step so far (see the
        module docstring); a lockstep twin waits meanwhile."""
        if not (self.params["train"] and self.updates_per_env_step > 0):
            return
        self.trainer.wait_trained(self._acted_steps, self.updates_per_env_step,
                                  self.config.awac.batch_size,
                                  give_up=lambda: not self.node.ok())  # Ctrl-C stops it

    def _record_evaluation(self, episode: FinishedEpisode) -> None:
        info = episode.info
        self._pending_draws.pop(info.get("robot_namespace", ""), None)
        episode_return = float(episode.steps["reward"].sum())
        current = self.evaluation.finished(episode.success, episode_return)
        if current is None:
            self.node.get_logger().warning(f"evaluation episode {info.get('episode')} ended "
                                           "with no evaluation round open: not counted")
            return
        self._eval_log[1].writerow((
            current.index, current.env_steps, info.get("episode", -1),
            info.get("robot_namespace", ""), info.get("draw", -1), episode.length,
            int(bool(episode.success)), f"{episode_return:.6g}", info.get("policy_version", -1),
            f"{time.time():.3f}"))
        self._eval_log[0].flush()
        if current.complete:
            self._log_round(current)

    def _log_round(self, done: EvaluationRound) -> None:
        self.node.get_logger().info(
            f"evaluation {done.index} at {done.env_steps} online env steps: success "
            f"{done.success_rate:.0%} of {done.episodes} episodes, mean return "
            f"{done.mean_return:.2f}")

    def _on_status_timer(self) -> None:
        if self.trainer.error is not None:
            raise self.trainer.error  # a dead trainer ends the node even while nothing acts
        if self.acting_done and self._training_caught_up():
            self.node.get_logger().info("online budget done; stopping")
            self.node.request_shutdown()  # spin returns; close() writes the final checkpoint
        self._write_status("finishing" if self.acting_done else
                           "online" if self.trainer.snapshot is not None else "pretraining")

    def _training_caught_up(self) -> bool:
        """Every episode ingested and the updates ``updates_per_env_step`` owes them done."""
        counters, trainer = self.trainer.counters, self.trainer
        if counters.env_steps < self._acted_steps:
            return False
        if not (self.params["train"] and self.updates_per_env_step > 0):
            return True
        if trainer.buffer_transitions < self.config.awac.batch_size:
            return True  # nothing can be trained on; nothing is owed
        warm = self.config.awac.warm_start_steps  # no updates are owed for the warm start
        return counters.online_updates >= self.updates_per_env_step * max(
            0, counters.env_steps - warm)

    def _write_status(self, phase: str) -> None:
        """Atomically (write, then rename): a reader never sees half a file."""
        status = {**self.trainer.counters.as_dict(), "phase": phase,
                  "num_updates": self.trainer.num_updates,
                  "pretrain_updates": self.trainer.pretrain_updates,
                  "max_online_env_steps": self.max_env_steps,
                  "updates_per_env_step": self.updates_per_env_step,
                  "acted_env_steps": self._acted_steps, "pid": os.getpid(),
                  "evaluation_rounds": sum(r.complete for r in self.evaluation.rounds),
                  "use_sim_time": self.node.uses_sim_time, "time_s": self.node.now_s(),
                  "wall_time_s": time.time()}
        path = self.run_dir / STATUS
        tmp = path.with_name(f".{STATUS}.tmp")
        tmp.write_text(json.dumps(status))
        os.replace(tmp, path)

    def _publish_policy(self) -> None:
        latest = self.trainer.policy_bytes
        if latest is None or latest[0] == self._published_version:
            return
        version, data = latest
        self._policy_pub.publish(m.UInt8MultiArray(data=data))
        self._published_version = version

    def close(self) -> None:
        """The training side finishes its update and queued episodes, then checkpoints."""
        self.trainer.stop()
        self._episode_log[0].close()
        self._eval_log[0].close()
        final = self.trainer.final
        failed = final is None or final["failed"] or self.trainer.error is not None
        self._write_status("failed" if failed else "done")


def _open_episode_log(path: Path) -> tuple[Any, Any, int]:
    """The episode log: a log begun before the human-in-the-loop columns keeps its own."""
    return _open_log(path, EPISODE_LOG_COLUMNS, older=(EPISODE_LOG_COLUMNS_V1,))


def _open_log(path: Path, columns: tuple[str, ...],
              older: tuple[tuple[str, ...], ...] = ()) -> tuple[Any, Any, int]:
    """(file, csv writer, columns per row) appending to ``path``; the header only in a new file.
    A log begun with one of the ``older`` headers keeps its columns (rows never misalign); any
    other header is refused by name."""
    is_new = not path.exists() or path.stat().st_size == 0
    width = len(columns)
    if not is_new:
        with open(path, newline="") as existing:
            header = tuple(next(csv.reader(existing), ()))
        if header in older:
            width = len(header)
        elif header != columns:
            raise ValueError(f"{path}: header {list(header)} is not this log's "
                             f"({list(columns)}); move it away or use another run_dir")
    stream = open(path, "a", newline="")  # noqa: SIM115 - closed in LearnerNode.close
    writer = csv.writer(stream)
    if is_new:
        writer.writerow(columns)
    return stream, writer, width


def main(argv: list[str] | None = None) -> int:
    return run(LearnerNode, sys.argv[1:] if argv is None else argv)
