"""The actor node: the policy next to a robot, with weights received on POLICY; no training.

``ActingShell`` is the acting loop shared with the learner node: per robot namespace it keeps the
latest JOINT_STATES and OBJECT_STATE, runs an ``EpisodeMachine`` at ``control_rate_hz``, publishes
EPISODE events and COMMAND_RAW (never COMMAND: the safety node owns that; with relative actions
it listens to COMMAND, since each step starts from the supervisor's last command). A COMMAND_RAW
header carries the stamp of the joint state it answers, so measurement-to-command latency is
visible on the wire.

A pixel task's node also subscribes to its camera (the task config's ``image.camera``, or the
``cameras`` parameter per namespace): by default to the camera node's view stream
(``view/color/image_raw``: the camera side cuts the view, see ``nodes.camera_view``), with
``camera_frames:=full`` to the full frames, cut here. Each step pairs the joint state with the
closest frame in time (``agent.frames.LatestFrames``); a step without one within
``image.max_frame_age_s`` is skipped and named (``stale frame``, ``no frame``), and an episode's
first step uses a frame stamped after its reset. The policy then acts on the task's vector (no
object state) and the view; the object's state still gives the reward and the episode's end,
unless a success model gives them: then nothing needs OBJECT_STATE (a cell with no sensor on the
object), and where it is published it only gives the logged ``true_success``.

``act_on`` picks what clocks a robot's steps. ``joint_states`` (the default): the joint-state
callback steps the robot on the first state at or after its next nominal control time
(``agent.schedule.ControlSchedule``), so a command follows its measurement without waiting for a
timer; a fallback timer steps any robot that has not stepped for 1.5 periods, so staleness, reset
timeouts and episode events still happen when its states stop. ``timer``: one timer steps every
robot each period, whenever the states arrived.

``intervene`` (the learner node): per robot the shell also listens to the teleop node's TAKEOVER and
COMMAND_OPERATOR (role intervene). While the latest TAKEOVER is true and younger than
``takeover_timeout_s``, the operator's latest targets go to the episode machine in place of the
policy's (held to one step from the last COMMAND there; targets older than the timeout: the last
COMMAND is held), and still leave on COMMAND_RAW: the supervisor gates them, and an e-stop it
latched holds the operator as it holds the policy. A TAKEOVER gone silent hands back. Every step
records who acted. ``success_model``: a factory of success detectors (one per robot, for its
debounce) that give reward and success instead of the task's rule.

Clocks: ages, the control schedule and episode timing count on the node's steady clock
(``Node.steady_s``), so under ``use_sim_time`` they are sim seconds. When an episode ends, the
next one's reset goes out in the same step: a lockstep twin waits for an answer to the state that
ended it, and no other state would come to step on. Episodes are ``online`` (exploring) or, when
the node's ``plan`` says so, ``eval`` (the policy's mean, from a fixed set of starts; see
``EpisodeMachine.plan``).
"""

from __future__ import annotations

import csv
import dataclasses
import os
import sys
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import numpy as np

from robot_rl.agent.episode import (
    EpisodeConfig,
    EpisodeMachine,
    FinishedEpisode,
    Phase,
    Policy,
    SuccessModel,
)
from robot_rl.agent.events import EventError, decode_event, encode_event
from robot_rl.agent.frames import LatestFrames, ViewFrame
from robot_rl.agent.observation import JointOrder, LatestState
from robot_rl.agent.schedule import ControlSchedule
from robot_rl.agent.sites import task_sites
from robot_rl.agent.tasks import make_task
from robot_rl.agent.weights import WeightsError, snapshot_from_bytes
from robot_rl.data.transition_arrays import UNNAMED_ACTION_MODE
from robot_rl.learning.background import PolicySnapshot
from robot_rl.learning.pixel_agent import PixelAgent, PixelPolicySnapshot
from robot_rl.nodes import topics
from robot_rl.nodes.camera_view import take_frame
from robot_rl.nodes.topics import RobotTopics, robot_topics
from robot_rl.robot_config import load_robot
from robot_rl.ros import messages as m
from robot_rl.ros.api import Node
from robot_rl.ros.qos import QOS_DEFAULT, QOS_LATCHED, QOS_SENSOR_DATA
from robot_rl.ros.runtime import make_node, run

Snapshot = PolicySnapshot | PixelPolicySnapshot  # a state task's policy, or a pixel task's
SnapshotSource = Callable[[], Snapshot | None]
EpisodeSink = Callable[[FinishedEpisode], None]
SuccessModels = Callable[[], SuccessModel]
# called before each episode begins: plans its kind and start (EpisodeMachine.plan); False: none
EpisodePlanner = Callable[["_Robot"], bool]
ACT_ON = ("joint_states", "timer")
CAMERA_FRAMES = ("view", "full")
FALLBACK_CHECKS_PER_PERIOD = 2  # a silent robot is stepped 1.5 to 2 periods after its last step
# sim time: a step that waits for what it needs (the object state of its instant, the supervisor's
# command answering the previous step) goes on with what it has after this much wall time (the
# supervisor may send nothing: no feasible command)
GATED_WAIT_S = 0.5
# A pixel policy acts on one small view (a 64x64 conv encoder): torch's default of a thread per
# core only adds thread wake-ups beside the twin and the safety node. On 2 cores the gated
# command's p99 was 36 ms with 2 threads and 7.8 ms with 1 (bench/control_loop.py --pixels).
ACTING_TORCH_THREADS = 1
# Acting uses only the newest state: with a queue of one, the states that piled up while the node
# was busy arrive as the newest one alone, and the step answers it rather than the oldest.
QOS_NEWEST_STATE = dataclasses.replace(QOS_SENSOR_DATA, depth=1)


def declare_acting_parameters(node: Node, robot: str = "dclaw", task: str = "valve",
                              observation: str = "state") -> dict[str, Any]:
    """The parameters every acting node (learner, actor) has; ``robot``, ``task`` and
    ``observation`` are their defaults (the learner takes them from its pipeline config)."""
    p = node.declare_parameter
    return {
        "robot": p("robot", robot, "calibration name or YAML path"),
        "task": p("task", task, "a registered task (python -m robot_rl.catalog): valve, "
                  "drawer, ..."),
        "observation": p("observation", observation, "what the policy observes: state (the "
                         "object's state) | pixels (proprioception and the task's camera view)"),
        "namespaces": p("namespaces", ["/hand"], "robot namespaces this node acts for"),
        "object_topics": p("object_topics", [""], "OBJECT_STATE per namespace ('': its "
                                                  "station's, see agent.observation)"),
        "control_rate_hz": p("control_rate_hz", 20.0, "acting rate (Hz)"),
        "act_on": p("act_on", "joint_states", "what clocks acting: joint_states (act on the "
                    "first joint state at or after each control time; a fallback timer steps a "
                    "robot whose states stop) | timer (a timer at control_rate_hz)"),
        "stale_periods": p("stale_periods", 3.0, "a state older than this many periods is stale"),
        "reset_timeout_s": p("reset_timeout_s", 3.0, "re-send a reset after this (s)"),
        "deterministic": p("deterministic", False, "act with the policy mean (no exploration)"),
        "seed": p("seed", 0, "episode resets and exploration noise"),
        "log_every_episodes": p("log_every_episodes", 10, "success rate every N episodes"),
        "cameras": p("cameras", [""], "a pixel task's camera namespace per robot namespace "
                                      "('': the task config's image.camera)"),
        "camera_frames": p("camera_frames", "view", "a pixel task's frames: view (the camera "
                           "node's view stream, cut on the camera side) | full (full frames, "
                           "cut here)"),
    }


class _Robot:
    """One robot's endpoints, latest state and episode machine."""

    def __init__(self, topics_: RobotTopics, latest: LatestState, machine: EpisodeMachine,
                 schedule: ControlSchedule) -> None:
        self.topics, self.latest, self.machine = topics_, latest, machine
        self.schedule = schedule
        self.command: Any = None
        self.episode: Any = None
        self.frames: LatestFrames | None = None  # a pixel task's camera
        self.start_stamp_s: float | None = None  # first joint state after this reset's done
        self.successes: list[bool] = []
        self.takeover = False                  # the latest TAKEOVER
        self.takeover_received_s = -np.inf
        self.operator_rad: np.ndarray | None = None  # the latest COMMAND_OPERATOR
        self.operator_received_s = -np.inf
        # sim time, relative actions: the stamp of the state the last command_raw answered, and
        # whether the supervisor's COMMAND for it has come (the next step starts from it)
        self.acted_stamp_s: float | None = None
        self.gated = True
        self.deferred_since_s: float | None = None  # wall time a step began waiting for it


class ActingShell:
    """The acting loop of one node over one or several robots."""

    def __init__(self, node: Node, params: dict[str, Any], snapshot: SnapshotSource,
                 on_episode: EpisodeSink | None = None,
                 first_episodes: dict[str, int] | None = None,
                 plan: EpisodePlanner | None = None, *, intervene: bool = False,
                 takeover_timeout_s: float = 0.5,
                 success_model: SuccessModels | None = None) -> None:
        self.node, self.params = node, params
        self._plan = plan
        if intervene and not takeover_timeout_s > 0:
            raise ValueError(f"node {node.fully_qualified_name}: takeover_timeout_s must be > 0, "
                             f"got {takeover_timeout_s}")
        self.intervene, self.takeover_timeout_s = intervene, float(takeover_timeout_s)
        self._success_model = success_model
        self.calibration = load_robot(params["robot"])
        try:
            self.task = make_task(params["task"], self.calibration).with_observation(
                params["observation"])
        except ValueError as err:
            raise ValueError(f"node {node.fully_qualified_name}: parameter observation: "
                             f"{err}") from None
        if self.task.uses_pixels:
            import torch  # the state policy acts in numpy: only a pixel task's encoder needs it

            default = torch.get_num_threads()
            torch.set_num_threads(ACTING_TORCH_THREADS)
            node.get_logger().info(f"acting from pixels on {ACTING_TORCH_THREADS} torch thread "
                                   f"(torch's default here: {default})")
        # neither the policy (a pixel task's vector) nor the reward (a classifier) reads the
        # object: its state, where published, only gives the logged true_success
        self.object_optional = self.task.uses_pixels and success_model is not None
        self._sites = task_sites(self.task)
        self._snapshot, self._on_episode = snapshot, on_episode
        rate = params["control_rate_hz"]
        if not rate > 0:
            raise ValueError(f"node {node.fully_qualified_name}: control_rate_hz must be > 0, "
                             f"got {rate}")
        self.period_s = 1.0 / rate
        self.act_on = params["act_on"]
        if self.act_on not in ACT_ON:
            raise ValueError(f"node {node.fully_qualified_name}: parameter 'act_on' must be one "
                             f"of {', '.join(ACT_ON)}; got {self.act_on!r}")
        if params["camera_frames"] not in CAMERA_FRAMES:
            raise ValueError(f"node {node.fully_qualified_name}: parameter 'camera_frames' must "
                             f"be one of {', '.join(CAMERA_FRAMES)}; got "
                             f"{params['camera_frames']!r}")
        self._rng = np.random.default_rng(params["seed"] + 17)
        self._sim_time = node.uses_sim_time
        self._names = list(self.calibration.joint_names)
        self._order = JointOrder(self._names)
        self.inference_s: deque[float] = deque(maxlen=2000)
        self.finished = 0
        self.robots = [self._make_robot(i, ns, (first_episodes or {}).get(ns, 0))
                       for i, ns in enumerate(params["namespaces"])]
        if self.act_on == "timer":
            node.create_timer(self.period_s, self.tick)
        else:
            node.create_timer(self.period_s / FALLBACK_CHECKS_PER_PERIOD, self._fallback)
        if self._sim_time and self.act_on == "joint_states":
            node.create_wall_timer(GATED_WAIT_S / 10, self._release)

    def _make_robot(self, index: int, namespace: str, first_episode: int) -> _Robot:
        objects = self.params["object_topics"]
        names = robot_topics(namespace, objects[index] if index < len(objects) else "")
        latest = LatestState(self._names, self.params["stale_periods"] * self.period_s,
                             self._sites, object_optional=self.object_optional)
        config = EpisodeConfig(reset_timeout_s=self.params["reset_timeout_s"],
                               seed=(self.params["seed"] * 7919 + index) % 2**31)
        success_model = self._success_model() if self._success_model is not None else None
        robot = _Robot(names, latest,
                       EpisodeMachine(self.task, config, first_episode=first_episode,
                                      tag=names.namespace, success_model=success_model),
                       ControlSchedule(self.period_s))
        node = self.node
        # the executor takes subscriptions in the order they were made: what a step needs comes
        # before the joint state that triggers it, so that when they wait in one spin the step
        # sees them. The supervisor's last command first (steps start from it; in lockstep it
        # and the next state come within a millisecond), then the object state of the instant.
        # steps start from what the supervisor sent; a handover is held to a step from it
        if self.task.actions.steps_from_command or self.intervene:
            node.create_subscription(m.JointState, names.command,
                                     lambda msg: self._on_command(robot, msg), QOS_DEFAULT)
        node.create_subscription(m.JointState, names.object_state,
                                 lambda msg: self._on_object(robot, msg), QOS_NEWEST_STATE)
        node.create_subscription(m.JointState, names.joint_states,
                                 lambda msg: self._on_joints(robot, msg), QOS_NEWEST_STATE)
        node.create_subscription(m.String, names.episode_status,
                                 lambda msg: self._on_status(robot, msg), QOS_DEFAULT)
        if self.task.image is not None:
            cameras = self.params["cameras"]
            self._subscribe_camera(robot, cameras[index] if index < len(cameras) else "")
        if self.intervene:
            node.create_subscription(m.Bool, names.takeover,
                                     lambda msg: self._on_takeover(robot, msg), QOS_DEFAULT)
            node.create_subscription(m.JointState, names.command_operator,
                                     lambda msg: self._on_operator(robot, msg), QOS_DEFAULT)
        robot.command = node.create_publisher(m.JointState, names.command_raw, QOS_DEFAULT)
        robot.episode = node.create_publisher(m.String, names.episode, QOS_DEFAULT)
        node.get_logger().info(f"acting for {names.namespace}: {names.joint_states} + "
                               f"{names.object_state}"
                               f"{' (optional)' if self.object_optional else ''} -> "
                               f"{robot.command.topic} at "
                               f"{1.0 / self.period_s:g} Hz on {self.act_on}")
        return robot

    def _subscribe_camera(self, robot: _Robot, camera: str) -> None:
        """The pixel task's camera: its view stream, or its full frames (``camera_frames``)."""
        view = self.task.image
        assert view is not None
        camera = camera or view.camera
        full = self.params["camera_frames"] == "full"
        robot.frames = LatestFrames(view, full_frames=full)
        color = topics.camera_topic(camera, topics.COLOR if full else topics.VIEW_COLOR)
        self.node.create_subscription(m.Image, color,
                                      lambda msg: self._on_frame(robot, msg, color, False),
                                      QOS_SENSOR_DATA)
        if view.depth:
            depth = topics.camera_topic(camera, topics.ALIGNED_DEPTH if full else
                                        topics.VIEW_DEPTH)
            self.node.create_subscription(m.Image, depth,
                                          lambda msg: self._on_frame(robot, msg, depth, True),
                                          QOS_SENSOR_DATA)
        self.node.get_logger().info(f"{robot.topics.namespace}: camera {color} "
                                    f"({view.width}x{view.height} view"
                                    f"{', cut here' if full else ''})")

    # ---- inputs ----------------------------------------------------------------------------
    def _on_frame(self, robot: _Robot, msg: m.Image, topic: str, depth: bool) -> None:
        assert robot.frames is not None
        try:
            take_frame(robot.frames, msg, depth)
        except ValueError as err:
            self.node.get_logger().warning(f"{topic}: {err}")

    def _on_joints(self, robot: _Robot, msg: m.JointState) -> None:
        now = self.node.steady_s()
        try:
            robot.latest.on_joints(msg.name, msg.position, msg.velocity,
                                   m.stamp_to_s(msg.header.stamp), now)
        except ValueError as err:
            self.node.get_logger().warning(f"{robot.topics.joint_states}: {err}")
            return
        robot.schedule.observe(now)
        if self.act_on == "joint_states" and robot.schedule.due(now):
            self._try_step(robot)

    def _try_step(self, robot: _Robot) -> None:
        """Step now, or once what the step needs has come (``_incomplete``)."""
        if self._incomplete(robot):
            if robot.deferred_since_s is None:
                robot.deferred_since_s = time.monotonic()  # _completed or _release steps it
            return
        snapshot = self._snapshot()
        self._step(robot, snapshot, self._policy(snapshot))

    def _incomplete(self, robot: _Robot) -> bool:
        """Under sim time, what a step on the newest joint state needs but has not got yet: the
        object state of the same instant, and with relative actions the supervisor's command for
        the previous step (the step starts from it). They come from other writers and processes
        at about the same instant as the joint state, in either order; waiting for them costs no
        sim time (a lockstep twin waits too) and makes the step the same each run. On wall time
        the state would age instead, so there a step takes what has come."""
        if not self._sim_time:
            return False
        latest = robot.latest
        if not self.object_optional and latest.object_stamp_s is not None and \
                latest.object_stamp_s < latest.joint_stamp_s:
            return True  # an optional object state (see __init__) is not waited for
        return (self.task.actions.steps_from_command and not robot.gated
                and robot.machine.phase is Phase.RUNNING)

    def _completed(self, robot: _Robot) -> None:
        """Something a deferred step waited for came: step now if nothing else is missing."""
        if robot.deferred_since_s is not None and not self._incomplete(robot):
            snapshot = self._snapshot()
            self._step(robot, snapshot, self._policy(snapshot))

    def _release(self) -> None:
        """Wall timer (sim time): steps that waited GATED_WAIT_S go on with what they have."""
        now = time.monotonic()
        for robot in self.robots:
            if robot.deferred_since_s is not None and now - robot.deferred_since_s >= \
                    GATED_WAIT_S:
                robot.gated = True
                snapshot = self._snapshot()
                self._step(robot, snapshot, self._policy(snapshot))

    def _on_object(self, robot: _Robot, msg: m.JointState) -> None:
        try:
            robot.latest.on_object(msg.position, msg.velocity, self.node.steady_s(),
                                   m.stamp_to_s(msg.header.stamp))
        except ValueError as err:
            self.node.get_logger().warning(f"{robot.topics.object_state}: {err}")
            return
        self._completed(robot)

    def _on_command(self, robot: _Robot, msg: m.JointState) -> None:
        try:
            if len(msg.position) == 0:  # reorder() would read it as zeros
                raise ValueError("a command without positions")
            robot.machine.on_command(self._order.reorder(msg.name, msg.position, "position"))
        except ValueError as err:
            self.node.get_logger().warning(f"{robot.topics.command}: {err}; the next step "
                                           "starts from the node's own last targets")
        if robot.acted_stamp_s is not None and m.stamp_to_s(msg.header.stamp) >= \
                robot.acted_stamp_s:
            robot.gated = True
            self._completed(robot)

    def _on_takeover(self, robot: _Robot, msg: m.Bool) -> None:
        robot.takeover, robot.takeover_received_s = bool(msg.data), time.monotonic()

    def _on_operator(self, robot: _Robot, msg: m.JointState) -> None:
        try:
            targets = self._order.reorder(msg.name, msg.position, "position")
            if len(msg.position) == 0 or not np.all(np.isfinite(targets)):
                raise ValueError("targets without positions or not finite")
        except ValueError as err:
            self.node.get_logger().warning(f"{robot.topics.command_operator}: {err}; ignored")
            return
        robot.operator_rad, robot.operator_received_s = targets, time.monotonic()

    def _operator_targets(self, robot: _Robot, now_s: float) -> np.ndarray | None:
        """The operator's targets for this step, or None when the policy is in control."""
        if not (robot.takeover and now_s - robot.takeover_received_s <= self.takeover_timeout_s):
            return None  # not taken over, or its TAKEOVER went silent: a release
        if robot.operator_rad is not None and \
                now_s - robot.operator_received_s <= self.takeover_timeout_s:
            return robot.operator_rad
        return robot.machine.last_gated_rad  # in control, no fresh targets: hold

    def _on_status(self, robot: _Robot, msg: m.String) -> None:
        try:
            event = decode_event(msg.data, robot.topics.episode_status)
        except EventError as err:
            self.node.get_logger().warning(str(err))
            return
        now = self.node.steady_s()
        warning = robot.machine.on_status(event, now)
        if warning:
            self.node.get_logger().warning(warning)
        if self.act_on == "joint_states" and robot.machine.ready_to_start(
                robot.latest.received_s, robot.latest.stamp_s):
            # the state measured after the reset came before its reset_done (sim time: both at
            # one instant); a lockstep twin sends no other, so act on it now
            self._try_step(robot)

    # ---- stepping ----------------------------------------------------------------------------
    def tick(self) -> None:
        """The control timer (``act_on: timer``): every robot, once per period."""
        snapshot = self._snapshot()
        policy = self._policy(snapshot)
        for robot in self.robots:
            self._step(robot, snapshot, policy)

    def _fallback(self) -> None:
        """(``act_on: joint_states``) steps the robots whose joint states stopped."""
        now = self.node.steady_s()
        late = [robot for robot in self.robots if robot.schedule.overdue(now)]
        if late:
            snapshot = self._snapshot()
            policy = self._policy(snapshot)
            for robot in late:
                self._step(robot, snapshot, policy)

    def _step(self, robot: _Robot, snapshot: Snapshot | None,
              policy: Policy | None) -> None:
        """One control step of one robot on its latest state; both clocks come here."""
        robot.deferred_since_s = None  # whatever a deferred step waited for, it is taken now
        now = self.node.steady_s()
        robot.schedule.acted(now)
        state = robot.latest.task_state(now)
        staleness = robot.latest.staleness(now)
        out = self._tick(robot, now, state, snapshot, policy, staleness)
        if out.finished is not None:
            self._finished(robot, out.finished, snapshot)
            # the sink may have waited for training: the newest policy, and the time it is now
            # (a reset sent "then" would look overdue at once and go out twice)
            snapshot, now = self._snapshot(), self.node.steady_s()
            self._tick(robot, now, state, snapshot, self._policy(snapshot), staleness)

    def _tick(self, robot: _Robot, now: float, state: Any, snapshot: Snapshot | None,
              policy: Policy | None, staleness: str | None) -> Any:
        """The machine's tick, and what it asks for published; its output."""
        if robot.machine.phase is Phase.IDLE and policy is not None and self._plan is not None \
                and not self._plan(robot):  # the kind and start of the episode about to begin
            policy = None  # none to run now: stay idle
        if robot.machine.kind == "eval" and policy is not None:
            policy = self._policy(snapshot, deterministic=True)
        frame, stale = self._frame(robot, state is not None)
        operator = self._operator_targets(robot, now) if self.intervene else None
        out = robot.machine.tick(now, state, robot.latest.received_s, policy, staleness or stale,
                                 frame=frame, operator_rad=operator,
                                 state_stamp_s=robot.latest.stamp_s)
        for text in out.warnings:
            self.node.get_logger().warning(text)
        for event, fields in out.events:
            robot.episode.publish(m.String(data=encode_event(
                event, robot.machine.episode, **fields)))
        if out.targets_rad is not None:
            robot.command.publish(m.joint_state(self._names, out.targets_rad,
                                                stamp_s=robot.latest.joint_stamp_s))
            robot.acted_stamp_s, robot.gated = robot.latest.joint_stamp_s, False
        return out

    def _frame(self, robot: _Robot, have_state: bool) -> tuple[ViewFrame | None, str | None]:
        """A pixel task's view for the latest joint state (None and why when there is none).
        An episode's first step takes a frame stamped at or after the first joint state received
        after its reset_done: an earlier one may still show the last episode's scene."""
        if robot.frames is None or not have_state:
            return None, None
        machine, latest = robot.machine, robot.latest
        not_before = None
        if machine.phase is not Phase.RESETTING:
            robot.start_stamp_s = None  # the next reset sets it anew
        else:
            done = machine.reset_done_s
            if done is None or latest.joint_received_s < done:
                robot.start_stamp_s = None
                return None, None  # not yet: the machine waits for the reset
            if robot.start_stamp_s is None:
                robot.start_stamp_s = latest.joint_stamp_s
            not_before = robot.start_stamp_s
        return robot.frames.pair(latest.joint_stamp_s, not_before_s=not_before)

    def _policy(self, snapshot: Snapshot | None,
                deterministic: bool = False) -> Policy | None:
        if snapshot is None:
            return None
        rng = None if self.params["deterministic"] or deterministic else self._rng

        def act(obs: Any) -> np.ndarray:
            started = time.perf_counter()
            action = snapshot.act(obs, rng)
            self.inference_s.append(time.perf_counter() - started)
            return action
        return act

    def _finished(self, robot: _Robot, episode: FinishedEpisode,
                  snapshot: Snapshot | None) -> None:
        episode.info["policy_version"] = -1 if snapshot is None else snapshot.version
        robot.successes.append(episode.success)
        self.finished += 1
        if self._on_episode is not None:
            self._on_episode(episode)
        every = self.params["log_every_episodes"]
        if every > 0 and self.finished % every == 0:
            self.node.get_logger().info(self.summary(every))

    def summary(self, last: int) -> str:
        rates = []
        for robot in self.robots:
            recent = robot.successes[-last:]
            rate = f"{np.mean(recent):.0%}" if recent else "-"
            rates.append(f"{robot.topics.namespace} {rate} of {len(recent)}")
        lat = np.array(self.inference_s) * 1e3
        latency = (f"; inference p50 {np.percentile(lat, 50):.2f} ms p99 "
                   f"{np.percentile(lat, 99):.2f} ms" if lat.size else "")
        return f"{self.finished} episodes; success of the last {last}: {', '.join(rates)}{latency}"


class ActorNode:
    """Acts with the latest weights from POLICY; sends nothing before the first weights.

    With ``checkpoint`` it acts with that checkpoint's policy from the start instead (a finished
    policy on the robot, no learner: ``robot-rl deploy``), and POLICY is not listened to.
    ``episode_log`` appends one CSV row per finished episode; after ``max_episodes`` episodes the
    node stops acting and exits by itself."""

    def __init__(self, argv: list[str]) -> None:
        self.node: Node = make_node("actor", argv=argv)
        params = declare_acting_parameters(self.node)
        p = self.node.declare_parameter
        self.deploy = {
            "checkpoint": p("checkpoint", "", "act with this checkpoint's policy (.pt) from the "
                            "start; '': wait for weights on POLICY"),
            "episode_log": p("episode_log", "", "CSV file: one row per finished episode "
                             "(appended); '': none"),
            "max_episodes": p("max_episodes", 0, "stop acting and exit after this many "
                              "episodes; 0: never"),
        }
        self._snapshot: Snapshot | None = None
        self._done = False
        self._log = _EpisodeLog(self.deploy["episode_log"]) if self.deploy["episode_log"] \
            else None
        self.shell = ActingShell(self.node, params, self._current, self._on_episode)
        if self.deploy["checkpoint"]:
            self._load_checkpoint(self.deploy["checkpoint"])
            return
        sub = self.node.create_subscription(m.UInt8MultiArray, topics.POLICY, self._on_policy,
                                            QOS_LATCHED)
        self.node.get_logger().info(f"waiting for weights on {sub.topic}")

    def _current(self) -> Snapshot | None:
        return None if self._done else self._snapshot

    def _load_checkpoint(self, path: str) -> None:
        task = self.shell.task
        snapshot, meta = snapshot_from_checkpoint(path, f"task {task.name}",
                                                  task.unnamed_action_mode)
        problem = self._refusal(snapshot, meta, path)
        if problem:
            self.node.destroy()
            raise ValueError(f"node {self.node.fully_qualified_name}: parameter checkpoint: "
                             f"{problem}")
        self._snapshot = snapshot
        self.node.get_logger().info(f"acting with {path} ({meta['task']}, {meta['action_mode']} "
                                    f"actions, {snapshot.obs_dim} observations)")

    def _on_policy(self, msg: m.UInt8MultiArray) -> None:
        try:
            snapshot, meta = snapshot_from_bytes(msg.data)
        except WeightsError as err:
            self.node.get_logger().error(f"{topics.POLICY}: {err}")
            return
        problem = self._refusal(snapshot, meta, f"{topics.POLICY}: weights v{snapshot.version}")
        if problem:
            self.node.get_logger().error(problem)
            return
        if self._snapshot is None:
            self.node.get_logger().info(f"first weights received: v{snapshot.version}")
        self._snapshot = snapshot

    def _refusal(self, snapshot: Snapshot, meta: dict[str, Any], what: str) -> str:
        """Why the policy cannot act for this node's task ('' when it can)."""
        view = self.shell.task.image
        if isinstance(snapshot, PixelPolicySnapshot) != (view is not None):
            kinds = ("camera view" if view is None else "object state",
                     "pixels" if view is not None else "state")
            return (f"{what}: a policy that acts on the {kinds[0]}; task "
                    f"{self.shell.task.name} observes {kinds[1]}: not acting with them")
        if view is not None and dataclasses.replace(
                snapshot.view, max_frame_age_s=view.max_frame_age_s) != view:
            return (f"{what} were trained on the view {snapshot.view}; task "
                    f"{self.shell.task.name}'s is {view}: not acting with them")
        expected = self.shell.task.observation_size
        if snapshot.obs_dim != expected or snapshot.act_dim != self.shell.task.n_joints:
            return (f"{what} (task {meta.get('task', '?')}) take {snapshot.obs_dim} "
                    f"observations and give {snapshot.act_dim} actions; task "
                    f"{self.shell.task.name} needs {expected} and {self.shell.task.n_joints}")
        trained, mode = meta.get("action_mode", UNNAMED_ACTION_MODE), self.shell.task.actions.mode
        if trained != mode:
            return (f"{what} were trained with {trained} actions; task {self.shell.task.name} "
                    f"acts with {mode} actions: not acting with them")
        return ""

    def _on_episode(self, episode: FinishedEpisode) -> None:
        if self._log is not None:
            self._log.write(episode, self.shell.finished)
        limit = self.deploy["max_episodes"]
        if limit > 0 and self.shell.finished >= limit and not self._done:
            self._done = True  # no policy, no new episode: nothing more is sent
            self.node.get_logger().info(f"{self.shell.finished} episodes done (max_episodes "
                                        f"{limit}): {self.shell.summary(limit)}; stopping")
            self.node.request_shutdown()

    def close(self) -> None:
        if self._log is not None:
            self._log.close()


EPISODE_LOG_COLUMNS = ("episode", "robot_namespace", "steps", "success", "episode_return",
                       "policy_version", "wall_time_s")


class _EpisodeLog:
    """One CSV row per finished episode, flushed at once (whoever follows the node reads it)."""

    def __init__(self, path: str) -> None:
        is_new = not os.path.exists(path) or os.path.getsize(path) == 0
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        self._file = open(path, "a", newline="")  # noqa: SIM115 - closed in close()
        self._csv = csv.writer(self._file)
        if is_new:
            self._csv.writerow(EPISODE_LOG_COLUMNS)
            self._file.flush()

    def write(self, episode: FinishedEpisode, count: int) -> None:
        info = episode.info
        self._csv.writerow((info.get("episode", count - 1), info.get("robot_namespace", ""),
                            episode.length, int(bool(episode.success)),
                            f"{float(episode.steps['reward'].sum()):.6g}",
                            info.get("policy_version", -1), f"{time.time():.3f}"))
        self._file.flush()

    def close(self) -> None:
        self._file.close()


def snapshot_from_checkpoint(path: str, consumer: str, unnamed_action_mode: str | None
                             ) -> tuple[Snapshot, dict[str, Any]]:
    """The acting policy of a checkpoint (what ``robot-rl eval`` runs), and its task and action
    mode as POLICY's metadata names them (``learning.checkpoint.trained_action_mode``: one that
    names none is read as ``unnamed_action_mode``, or refused where that is None). Its networks
    are rebuilt from the settings it stores, on the CPU; a bad file is one line naming it
    (CheckpointError)."""
    from robot_rl.config import from_dict
    from robot_rl.learning.checkpoint import (
        CheckpointError,
        load_checkpoint,
        stored_awac_settings,
        trained_action_mode,
    )
    from robot_rl.learning.config import AWACConfig
    from robot_rl.learning.factory import agent_from_checkpoint
    from robot_rl.registry import env_id_task

    state = load_checkpoint(path)
    stored = stored_awac_settings(state)
    if stored is None:
        raise CheckpointError(path, "stores no AWAC settings to rebuild its policy from")
    awac = from_dict(AWACConfig, {**stored, "device": "cpu", "compile": False},
                     source=f"{path} (its stored config)", prefix="awac")
    agent = agent_from_checkpoint(state, awac)
    config = state["config"] if isinstance(state["config"], dict) else {}
    meta = {"task": env_id_task(config.get("env_id", "")) or config.get("env_id", "?"),
            "action_mode": trained_action_mode(state, consumer, unnamed_action_mode)}
    if isinstance(agent, PixelAgent):  # the encoder acts too
        return PixelPolicySnapshot.from_agent(agent), meta
    return PolicySnapshot.from_agent(agent), meta


def main(argv: list[str] | None = None) -> int:
    return run(ActorNode, sys.argv[1:] if argv is None else argv)
