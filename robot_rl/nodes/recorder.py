"""The recorder node: every observation topic of its robot and the gated COMMAND, sampled on the
control clock into a zarr episode store; EPISODE events start, end (commit) and discard episodes.

Run it in the robot's namespace (``-r __ns:=/hand``): JOINT_STATES, TEMPERATURE, COMMAND and
EPISODE resolve under it; OBJECT_STATE and the camera topics are absolute (remap them per
station). A crash loses at most the episode in progress (the store's commit protocol).

Who acted: every row records ``intervention``, whether an operator held control (the teleop node's
TAKEOVER, fresh) at the row's tick. A store created before that key existed keeps its keys (one
warning), since a dataset's episodes share one schema.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np

from robot_rl.agent.events import EventError, decode_event
from robot_rl.agent.observation import LatestState
from robot_rl.agent.recording import StepSampler
from robot_rl.agent.sites import task_sites
from robot_rl.agent.tasks import make_task
from robot_rl.data import EpisodeStore, EpisodeWriter
from robot_rl.data.store import software_version
from robot_rl.data.transition_arrays import action_mode_extra
from robot_rl.nodes import topics
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
        stale_periods = p("stale_periods", 3.0, "skip a tick whose state is this many periods old")
        if not rate > 0:
            raise ValueError(f"node {self.node.fully_qualified_name}: control_rate_hz must be "
                             f"> 0, got {rate}")
        self.calibration = load_robot(robot)
        self._digest = robot_digest(robot)
        self.task = make_task(task, self.calibration) if task else None
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
        self.node.create_timer(1.0 / rate, self._tick)
        self.node.get_logger().info(f"recording {self.node.resolve(topics.JOINT_STATES)} and "
                                    f"{self.node.resolve(topics.COMMAND)} at {rate:g} Hz into "
                                    f"{store_path} ({self.store.n_episodes} episodes so far)")

    def _open(self, path: Path) -> EpisodeStore:
        """Records into a new store, or appends to one recorded from the same robot, task,
        calibration and action mode; any other store is refused by name before it changes (one
        store holding two sources would read as one dataset)."""
        store = EpisodeStore.create_or_append(
            path, robot=self.calibration.robot, task=self.task.name if self.task else "raw",
            calibration_digest=self._digest, units=UNITS,
            extra=action_mode_extra(self.task.actions.mode) if self.task else None)
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
        row = self.sampler.step(raw, state, command)
        if row is not None:
            self.writer.append(row)

    def close(self) -> None:
        self.writer.close()


def main(argv: list[str] | None = None) -> int:
    return run(RecorderNode, sys.argv[1:] if argv is None else argv)
