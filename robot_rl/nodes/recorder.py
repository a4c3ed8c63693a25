"""The recorder node: every observation topic of its robot and the gated COMMAND, sampled on the
control clock into a zarr episode store; EPISODE events start, end (commit) and discard episodes.

Run it in the robot's namespace (``-r __ns:=/hand``): JOINT_STATES, TEMPERATURE, COMMAND and
EPISODE resolve under it; OBJECT_STATE and the camera topics are absolute (remap them per
station). A crash loses at most the episode in progress (the store's commit protocol).

Who acted: every row records ``intervention``, whether an operator held control (the teleop node's
TAKEOVER, fresh) at the row's tick. A store created before that key existed keeps its keys (one
warning), since a dataset's episodes share one schema.

A pixel task (``observation:=pixels``): the recorder also subscribes to the task's camera (its view
stream, or full frames cut here with ``camera_frames:=full``, as the actor does) and each row holds
the view paired with the row's joint state by stamp (``agent.frames.LatestFrames``), with the task's
vector, the next one and the state layout (``agent.recording``): a store ``robot-rl pretrain`` and
the learner node take for a pixel policy, as they take the twin's. A tick without a view within
``image.max_frame_age_s`` is skipped and counted, never filled with an old frame; an episode's rows
start at the first joint state received after its start event, with a frame stamped no earlier.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np

from robot_rl.agent.events import EventError, decode_event
from robot_rl.agent.frames import LatestFrames, ViewFrame
from robot_rl.agent.observation import LatestState
from robot_rl.agent.recording import StepSampler
from robot_rl.agent.sites import task_sites
from robot_rl.agent.tasks import make_task
from robot_rl.config import to_dict
from robot_rl.data import EpisodeStore, EpisodeWriter
from robot_rl.data.store import software_version
from robot_rl.data.transition_arrays import PIXEL_UNITS, action_mode_extra, observation_extra
from robot_rl.nodes import topics
from robot_rl.nodes.actor import CAMERA_FRAMES
from robot_rl.nodes.camera_view import take_frame
from robot_rl.robot_config import load_robot, robot_digest
from robot_rl.ros import messages as m
from robot_rl.ros.api import Node
from robot_rl.ros.qos import QOS_DEFAULT, QOS_SENSOR_DATA
from robot_rl.ros.runtime import make_node, run

UNITS = {"stamp_s": "s", "joint_position_rad": "rad", "joint_velocity_rad_s": "rad/s",
         "joint_effort_a": "A", "temperature_c": "degC", "object_position": "rad or m",
         "object_velocity": "rad/s or m/s", "command_rad": "rad", "rgb": "rgb8",
         "depth_mm": "mm", "observation": "task layout (SI)", "action": "normalised [-1, 1]",
         "reward": "1", "intervention": "bool"}


class RecorderNode:
    def __init__(self, argv: list[str]) -> None:
        self.node: Node = make_node("recorder", argv=argv)
        p = self.node.declare_parameter
        robot = p("robot", "dclaw", "calibration name or YAML path")
        task = p("task", "valve", "task whose observation/action/reward keys are recorded "
                                  "('': raw topics only)")
        store_path = p("store", "recordings.zarr", "zarr episode store (created if absent)")
        self._operator = p("operator", "", "who drove the robot (stored per episode)")
        rate = p("control_rate_hz", 20.0, "sampling rate (Hz)")
        self._cameras = p("cameras", False, "record rgb and depth images")
        observation = p("observation", "state", "the task's observation: state | pixels (also "
                                                "record the task's camera view per row)")
        camera = p("camera", "", "a pixel task's camera namespace ('': the task's image.camera)")
        camera_frames = p("camera_frames", "view", "a pixel task's frames: view (the camera "
                                                   "node's view stream) | full (cut here)")
        stale_periods = p("stale_periods", 3.0, "skip a tick whose state is this many periods old")
        if not rate > 0:
            raise ValueError(f"node {self.node.fully_qualified_name}: control_rate_hz must be "
                             f"> 0, got {rate}")
        self.calibration = load_robot(robot)
        self._digest = robot_digest(robot)
        try:
            self.task = make_task(task, self.calibration).with_observation(observation) \
                if task else None
        except ValueError as err:
            raise ValueError(f"node {self.node.fully_qualified_name}: parameter observation: "
                             f"{err}") from None
        if camera_frames not in CAMERA_FRAMES:
            raise ValueError(f"node {self.node.fully_qualified_name}: parameter camera_frames "
                             f"must be one of {', '.join(CAMERA_FRAMES)}, got {camera_frames!r}")
        view = self.task.image if self.task is not None else None
        self.frames = LatestFrames(view, full_frames=camera_frames == "full") if view else None
        self._started_s: float | None = None  # steady time of the episode's start event
        self._not_before_s: float | None = None  # its first row's joint stamp
        self._names = list(self.calibration.joint_names)
        n = len(self._names)
        self.latest = LatestState(self._names, stale_periods / rate,
                                  task_sites(self.task) if self.task else None)
        self.sampler = StepSampler(n, self.task)
        self._effort = np.zeros(n)
        self._temperature = np.full(n, np.nan)
        self._command: np.ndarray | None = None
        self._images: dict[str, np.ndarray] = {}
        self._stale_s = stale_periods / rate
        self._takeover: tuple[float, bool] | None = None  # (received, operator in control)
        self.store = self._open(Path(store_path))
        self._record_takeover = not self.store.n_episodes or "intervention" in self.store.keys
        if not self._record_takeover:
            self.node.get_logger().warning(f"{store_path} was recorded without the "
                                           "'intervention' key: not recording who acted")
        self.writer = EpisodeWriter(self.store, background=True)
        self._episode: dict[str, Any] | None = None
        self._skipped = 0
        self._subscribe()
        if view is not None:
            self._subscribe_view(camera or view.camera, camera_frames == "full")
        self.node.create_timer(1.0 / rate, self._tick)
        self.node.get_logger().info(f"recording {self.node.resolve(topics.JOINT_STATES)} and "
                                    f"{self.node.resolve(topics.COMMAND)} at {rate:g} Hz into "
                                    f"{store_path} ({self.store.n_episodes} episodes so far)")

    def _open(self, path: Path) -> EpisodeStore:
        """Records into a new store, or appends to one recorded from the same robot, task,
        calibration and action mode; any other store is refused by name before it changes (one
        store holding two sources would read as one dataset)."""
        extra = None
        if self.task is not None:
            extra = action_mode_extra(self.task.actions.mode)
            if self.task.image is not None:
                extra |= observation_extra("pixels", to_dict(self.task.image))
        store = EpisodeStore.create_or_append(
            path, robot=self.calibration.robot, task=self.task.name if self.task else "raw",
            calibration_digest=self._digest,
            units={**UNITS, **(PIXEL_UNITS if self.frames is not None else {})}, extra=extra)
        if store.recovery is not None:
            self.node.get_logger().warning(f"{path}: {store.recovery}")
        return store

    def _subscribe(self) -> None:
        node = self.node
        node.create_subscription(m.JointState, topics.JOINT_STATES, self._on_joints,
                                 QOS_SENSOR_DATA)
        node.create_subscription(m.Float32MultiArray, topics.TEMPERATURE, self._on_temperature,
                                 QOS_SENSOR_DATA)
        node.create_subscription(m.JointState, topics.OBJECT_STATE, self._on_object,
                                 QOS_SENSOR_DATA)
        node.create_subscription(m.JointState, topics.COMMAND, self._on_command, QOS_DEFAULT)
        node.create_subscription(m.String, topics.EPISODE, self._on_episode, QOS_DEFAULT)
        node.create_subscription(m.Bool, topics.TAKEOVER, self._on_takeover, QOS_DEFAULT)
        if self._cameras:
            node.create_subscription(m.Image, topics.CAMERA_COLOR,
                                     lambda msg: self._on_image("rgb", msg), QOS_SENSOR_DATA)
            node.create_subscription(m.Image, topics.CAMERA_DEPTH,
                                     lambda msg: self._on_image("depth_mm", msg), QOS_SENSOR_DATA)

    def _subscribe_view(self, camera: str, full: bool) -> None:
        assert self.frames is not None
        view = self.frames.view
        color = topics.camera_topic(camera, topics.COLOR if full else topics.VIEW_COLOR)
        self.node.create_subscription(m.Image, color, lambda msg: self._on_view(msg, color, False),
                                      QOS_SENSOR_DATA)
        if view.depth:
            depth = topics.camera_topic(camera, topics.ALIGNED_DEPTH if full else
                                        topics.VIEW_DEPTH)
            self.node.create_subscription(m.Image, depth,
                                          lambda msg: self._on_view(msg, depth, True),
                                          QOS_SENSOR_DATA)
        self.node.get_logger().info(f"recording the view {color} ({view.width}x{view.height}"
                                    f"{', cut here' if full else ''})")

    # ---- inputs ------------------------------------------------------------------------------
    def _on_joints(self, msg: m.JointState) -> None:
        try:
            self.latest.on_joints(msg.name, msg.position, msg.velocity,
                                  m.stamp_to_s(msg.header.stamp), self.node.steady_s())
            self._effort = self.latest.order.reorder(msg.name, msg.effort, "effort")
        except ValueError as err:
            self.node.get_logger().warning(f"{topics.JOINT_STATES}: {err}")

    def _on_temperature(self, msg: m.Float32MultiArray) -> None:
        if len(msg.data) == len(self._names):
            self._temperature = np.asarray(msg.data, dtype=np.float64)

    def _on_object(self, msg: m.JointState) -> None:
        try:
            self.latest.on_object(msg.position, msg.velocity, self.node.steady_s(),
                                  m.stamp_to_s(msg.header.stamp))
        except ValueError as err:
            self.node.get_logger().warning(f"{topics.OBJECT_STATE}: {err}")

    def _on_command(self, msg: m.JointState) -> None:
        try:
            self._command = self.latest.order.reorder(msg.name, msg.position, "position")
        except ValueError as err:
            self.node.get_logger().warning(f"{topics.COMMAND}: {err}")

    def _on_takeover(self, msg: m.Bool) -> None:
        self._takeover = (self.node.steady_s(), bool(msg.data))

    def _operator_in_control(self, now: float) -> bool:
        return self._takeover is not None and self._takeover[1] and \
            now - self._takeover[0] <= self._stale_s

    def _on_view(self, msg: m.Image, topic: str, depth: bool) -> None:
        assert self.frames is not None
        try:
            take_frame(self.frames, msg, depth)
        except ValueError as err:
            self.node.get_logger().warning(f"{topic}: {err}")

    def _on_image(self, key: str, msg: m.Image) -> None:
        self._images[key] = np.array(m.image_to_numpy(msg))

    def _on_episode(self, msg: m.String) -> None:
        try:
            event = decode_event(msg.data, self.node.resolve(topics.EPISODE))
        except EventError as err:
            self.node.get_logger().warning(str(err))
            return
        kind = event["event"]
        if kind == "reset":
            self._goal = event.get("goal")
        elif kind == "start":
            self._start(event)
        elif kind == "end" and self._episode is not None:
            self._commit(bool(event.get("success", False)), event)
        elif kind == "discard" and self._episode is not None:
            self.writer.discard()
            self.node.get_logger().info(f"episode {self._episode.get('episode')} discarded")
            self._episode = None

    _goal: float | None = None

    def _start(self, event: dict[str, Any]) -> None:
        if self._episode is not None:
            self.node.get_logger().warning(f"episode {self._episode.get('episode')} had no end; "
                                           "discarded")
            self.writer.discard()
        goal = event.get("goal", self._goal)
        self._episode = {"episode": event.get("episode"), "goal": goal,
                         "seed": event.get("seed"), "operator": self._operator}
        if goal is None and self.task is not None:
            self.node.get_logger().warning("start event without a goal: recording goal 0.0")
        self.sampler.begin(0.0 if goal is None else float(goal), self._command)
        self._started_s, self._not_before_s = self.node.steady_s(), None

    def _commit(self, success: bool, event: dict[str, Any]) -> None:
        assert self._episode is not None
        info = {**self._episode, "success": success, "robot": self.calibration.robot,
                "task": self.task.name if self.task else "", "software_version":
                software_version(), "namespace": self.node.namespace,
                "calibration_digest": self._digest}
        if self.writer.n_steps == 0:
            self.node.get_logger().warning(f"episode {info['episode']}: no steps; not stored")
            self.writer.discard()
        else:
            index = self.writer.commit(info)
            self.node.get_logger().info(f"episode {info['episode']} stored as {index} "
                                        f"({self.store.n_steps} steps in total), "
                                        f"success {success}")
        self._episode = None

    # ---- the control tick --------------------------------------------------------------------
    def _tick(self) -> None:
        if self._episode is None:
            return
        now = self.node.steady_s()  # sim seconds under use_sim_time, as the states' ages
        state = self.latest.task_state(now)
        if state is None or self._command is None and self.task is not None:
            self._skipped += 1
            return
        command = self._command if self._command is not None else np.full(len(self._names),
                                                                           np.nan)
        raw = self.sampler.raw_row(self.node.now_s(), state, self._effort, self._temperature,
                                   command)
        if self._record_takeover:
            raw["intervention"] = np.bool_(self._operator_in_control(now))
        if self._cameras:
            if set(self._images) != {"rgb", "depth_mm"}:
                return
            raw.update(self._images)
        if self.frames is not None:
            frame = self._view()
            if frame is None:
                self._skipped += 1
                return
            raw["camera_color"] = frame.color
            if frame.depth is not None:
                raw["camera_depth"] = frame.depth
        row = self.sampler.step(raw, state, command)
        if row is not None:
            self.writer.append(row)

    def _view(self) -> ViewFrame | None:
        """The view paired with the latest joint state; None (the tick is skipped) before the
        episode's first fresh joint state or without a frame within the age limit."""
        assert self.frames is not None and self._started_s is not None
        latest = self.latest
        if self._not_before_s is None:
            if latest.joint_received_s < self._started_s:
                return None  # a state from before the episode's start
            self._not_before_s = latest.joint_stamp_s
        frame, _ = self.frames.pair(latest.joint_stamp_s, not_before_s=self._not_before_s)
        return frame

    def close(self) -> None:
        self.writer.close()


def main(argv: list[str] | None = None) -> int:
    return run(RecorderNode, sys.argv[1:] if argv is None else argv)
