"""The twin node: the MuJoCo twin standing in for the robot, its object and its camera.

It publishes what the drivers publish (joint states, telemetry, the object's state, camera
images) and obeys only the safety supervisor's gated COMMAND, never COMMAND_RAW, so the twin
graph exercises the same safety path as the real robot. Physics advances by wall-clock time
(``realtime``) or by one publish period per tick. An EPISODE ``reset`` event teleports the scene.
``viewer:=true`` opens a live view (sim_twin.viewer: a window, or a refreshing PNG when headless).
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
import queue
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import mujoco
import numpy as np

from robot_rl.nodes import topics
from robot_rl.nodes.robot_state import RobotStatePublishers
from robot_rl.robot_config import load_robot
from robot_rl.ros import messages as m
from robot_rl.ros.api import Node
from robot_rl.ros.qos import QOS_DEFAULT, QOS_SENSOR_DATA
from robot_rl.ros.runtime import make_node, run
from sim_twin.twin import Twin
from sim_twin.viewer import Viewer, open_viewers

MAX_CATCH_UP_S = 0.25  # an overloaded machine slows the twin down rather than spiralling
TELEMETRY_PERIOD_S = 0.1
CAMERA = "realsense"
DEPTH_MAX_MM = 65535


def camera_info(model: mujoco.MjModel, camera: str, width: int, height: int,
                stamp_s: float, frame_id: str) -> m.CameraInfo:
    """Pinhole intrinsics of an MJCF camera (MuJoCo's fovy is vertical; square pixels)."""
    fovy_rad = math.radians(float(model.cam_fovy[model.camera(camera).id]))
    f_px = 0.5 * height / math.tan(0.5 * fovy_rad)
    cx, cy = (width - 1) / 2.0, (height - 1) / 2.0
    return m.CameraInfo(
        header=m.header(stamp_s, frame_id), width=width, height=height,
        distortion_model="plumb_bob", d=[0.0] * 5,
        k=[f_px, 0.0, cx, 0.0, f_px, cy, 0.0, 0.0, 1.0],
        r=[1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0],
        p=[f_px, 0.0, cx, 0.0, 0.0, f_px, cy, 0.0, 0.0, 0.0, 1.0, 0.0])


def depth_to_mm(depth_m: np.ndarray) -> np.ndarray:
    """RealSense's z16: uint16 millimetres, 0 where there is no valid depth."""
    mm = np.where(np.isfinite(depth_m), np.round(depth_m * 1000.0), 0.0)
    return np.clip(mm, 0, DEPTH_MAX_MM).astype(np.uint16)


class CameraWorker:
    """Renders snapshots of the scene on its own thread, so a slow renderer (llvmpipe: tens of ms
    per 640x480 frame) does not stall the joint states; a frame is dropped while one renders."""

    def __init__(self, model: mujoco.MjModel, width: int, height: int,
                 publish: Callable[[np.ndarray, np.ndarray, float], None]) -> None:
        self._model, self._width, self._height = model, width, height
        self._publish = publish
        self._jobs: queue.Queue[tuple[mujoco.MjData, float] | None] = queue.Queue(maxsize=1)
        self._thread = threading.Thread(target=self._run, name="twin-camera", daemon=True)
        self._thread.start()

    def offer(self, data: mujoco.MjData, stamp_s: float) -> None:
        with contextlib.suppress(queue.Full):
            self._jobs.put_nowait((copy.copy(data), stamp_s))

    def _run(self) -> None:
        # GL contexts belong to the thread that creates them
        rgb = mujoco.Renderer(self._model, height=self._height, width=self._width)
        depth = mujoco.Renderer(self._model, height=self._height, width=self._width)
        depth.enable_depth_rendering()
        try:
            while (job := self._jobs.get()) is not None:
                data, stamp_s = job
                rgb.update_scene(data, camera=CAMERA)
                depth.update_scene(data, camera=CAMERA)
                self._publish(rgb.render(), depth.render().astype(np.float32), stamp_s)
        finally:
            rgb.close()
            depth.close()

    def close(self) -> None:
        with contextlib.suppress(queue.Empty):
            self._jobs.get_nowait()  # make room for the stop marker (only this thread offers)
        self._jobs.put_nowait(None)
        self._thread.join(timeout=2.0)


class TwinNode:
    def __init__(self, argv: list[str]) -> None:
        self.node: Node = make_node("twin", argv=argv)
        p = self.node.declare_parameter
        robot = p("robot", "dclaw", "calibration name or YAML path")
        task = p("task", "", "the task whose scene the twin plays (the calibration's "
                             "tasks.<task>.scene); '': the robot's model_mjcf")
        publish_rate_hz = p("publish_rate_hz", 100.0, "joint state rate (Hz)")
        camera_rate_hz = p("camera_rate_hz", 0.0, "rgb+depth rate (Hz); 0: no camera")
        seed = p("seed", 0, "random seed of the scene")
        self._realtime = p("realtime", True, "advance physics by wall-clock time")
        self._temperature_c = p("temperature_c", 35.0, "reported servo temperature (deg C)")
        self._width = p("camera_width", 640, "image width (px)")
        self._height = p("camera_height", 480, "image height (px)")
        timestep_s = p("physics_timestep_s", 0.002, "MuJoCo time step (s)")
        viewer = p("viewer", False, "live view: MuJoCo's window, or a PNG without a display")
        viewer_png = p("viewer_png", "", "also write the latest frame to this PNG file")
        viewer_rate_hz = p("viewer_rate_hz", 20.0, "live view refresh rate (Hz)")
        positive = {"publish_rate_hz": publish_rate_hz, "camera_width": self._width,
                    "camera_height": self._height, "physics_timestep_s": timestep_s,
                    "viewer_rate_hz": viewer_rate_hz}
        bad = {k: v for k, v in positive.items() if not v > 0}
        if bad or camera_rate_hz < 0:
            raise ValueError(f"node {self.node.fully_qualified_name}: parameters {bad} must be "
                             f"> 0 and camera_rate_hz >= 0 (got {camera_rate_hz})")
        self.calibration = load_robot(robot)
        self.twin = Twin(self.calibration, task=task or None, physics_timestep_s=timestep_s,
                         seed=seed)
        self.twin.reset_to_task_start(seed)  # until the first episode's reset event
        self._period_s = 1.0 / publish_rate_hz
        self._names = list(self.calibration.joint_names)
        self._debt_s = 0.0
        self._last_tick_s: float | None = None
        self._last_telemetry_s = -math.inf
        self._bad_command_logged = False
        self._make_endpoints()
        self.node.create_timer(self._period_s, self._tick)
        self._camera: CameraWorker | None = None
        if camera_rate_hz > 0:
            self._camera = CameraWorker(self.twin.model, self._width, self._height,
                                        self._publish_camera)
            self.node.create_timer(1.0 / camera_rate_hz,
                                   lambda: self._camera.offer(self.twin.data, self.node.now_s()))
        self._viewers: list[Viewer] = []
        if viewer or viewer_png:
            self._open_viewers(viewer, viewer_png, viewer_rate_hz)
        self.node.get_logger().info(
            f"twin of {self.calibration.robot} ({self.twin.object_joint}) publishing "
            f"{self._joints.topic} at {publish_rate_hz:g} Hz, obeying {self._command_topic}")

    def _open_viewers(self, window: bool, png_path: str, rate_hz: float) -> None:
        self._viewers, notes = open_viewers(self.twin.model, self.twin.data, window=window,
                                            png_path=png_path, width=self._width,
                                            height=self._height, camera=CAMERA)
        for note in notes:
            self.node.get_logger().info(note)

        def refresh() -> None:  # on the executor, like _tick: never during a physics step
            for view in list(self._viewers):
                if (error := getattr(view, "error", None)) is not None:
                    self.node.get_logger().error(f"live view {view.description} stopped: {error}")
                    self._viewers.remove(view)
                else:
                    view.update(self.twin.data)

        self.node.create_timer(1.0 / rate_hz, refresh)

    def _make_endpoints(self) -> None:
        node = self.node
        state = RobotStatePublishers.create(node)
        self._joints, self._temperature = state.joints, state.temperature
        self._errors = state.hardware_error
        self._object = node.create_publisher(m.JointState, topics.OBJECT_STATE, QOS_SENSOR_DATA)
        self._status = node.create_publisher(m.String, topics.EPISODE_STATUS, QOS_DEFAULT)
        self._color = node.create_publisher(m.Image, topics.CAMERA_COLOR, QOS_SENSOR_DATA)
        self._depth = node.create_publisher(m.Image, topics.CAMERA_DEPTH, QOS_SENSOR_DATA)
        self._info = node.create_publisher(m.CameraInfo, topics.CAMERA_INFO, QOS_SENSOR_DATA)
        command = node.create_subscription(m.JointState, topics.COMMAND, self._on_command,
                                           QOS_DEFAULT)
        self._command_topic = command.topic
        node.create_subscription(m.String, topics.EPISODE, self._on_episode, QOS_DEFAULT)

    # ---- physics and state ---------------------------------------------------------------------
    def _tick(self) -> None:
        now = time.monotonic()
        if not self._realtime or self._last_tick_s is None:
            elapsed_s = self._period_s
        else:
            elapsed_s = now - self._last_tick_s
        self._last_tick_s = now
        self._debt_s = min(self._debt_s + elapsed_s, MAX_CATCH_UP_S)
        steps = int(self._debt_s / self.twin.physics_timestep_s + 1e-9)
        if steps:
            self._debt_s -= steps * self.twin.physics_timestep_s
            self.twin.advance(steps * self.twin.physics_timestep_s)
        self._publish_state()

    def _publish_state(self) -> None:
        stamp_s = self.node.now_s()
        twin = self.twin
        # the object first: a node acting on each joint state then sees the same instant's object
        self._object.publish(m.joint_state(
            [twin.object_joint], [twin.object_position()], [twin.object_velocity()],
            stamp_s=stamp_s))
        self._joints.publish(m.joint_state(
            self._names, twin.joint_positions_rad(), twin.joint_velocities_rad_s(),
            twin.joint_efforts_a(), stamp_s=stamp_s))
        if stamp_s - self._last_telemetry_s >= TELEMETRY_PERIOD_S:
            self._last_telemetry_s = stamp_s
            n = len(self._names)
            self._temperature.publish(m.Float32MultiArray(data=[self._temperature_c] * n))
            self._errors.publish(m.UInt8MultiArray(data=bytes(n)))

    def _publish_camera(self, rgb: np.ndarray, depth_m: np.ndarray, stamp_s: float) -> None:
        """Runs on the camera thread: publishers are thread-safe."""
        frame = "camera_color_optical_frame"
        self._color.publish(m.image_from_numpy(rgb, "rgb8", stamp_s, frame))
        self._depth.publish(m.image_from_numpy(depth_to_mm(depth_m), "16UC1", stamp_s, frame))
        self._info.publish(camera_info(self.twin.model, CAMERA, self._width, self._height,
                                       stamp_s, frame))

    # ---- inputs --------------------------------------------------------------------------------
    def _on_command(self, msg: m.JointState) -> None:
        names = list(msg.name)
        if sorted(names) != sorted(self._names) or len(msg.position) != len(names):
            self._warn_once(f"command on {self._command_topic} ignored: names {names} with "
                            f"{len(msg.position)} positions, expected {self._names}")
            return
        by_name = dict(zip(names, msg.position))
        targets = np.array([by_name[n] for n in self._names])
        if not np.isfinite(targets).all():
            self._warn_once(f"command on {self._command_topic} ignored: non-finite {targets}")
            return
        self.twin.set_joint_targets(targets)

    def _warn_once(self, text: str) -> None:
        if not self._bad_command_logged:
            self.node.get_logger().warning(text + " (further bad commands are not logged)")
        self._bad_command_logged = True

    def _on_episode(self, msg: m.String) -> None:
        try:
            event = json.loads(msg.data)
        except json.JSONDecodeError as exc:
            self.node.get_logger().error(f"{topics.EPISODE}: not JSON ({exc}): {msg.data[:200]!r}")
            return
        if not isinstance(event, dict) or event.get("event") != "reset":
            return
        episode = event.get("episode")
        try:
            self._reset(event)
        except (TypeError, ValueError) as exc:
            self.node.get_logger().error(f"{topics.EPISODE}: reset of episode {episode} "
                                         f"failed: {exc}")
            self._reply({"event": "reset_failed", "episode": episode, "error": str(exc)})
            return
        self._reply({"event": "reset_done", "episode": episode})

    def _reset(self, event: dict[str, Any]) -> None:
        cal = self.calibration
        default = np.clip(np.zeros(cal.n_joints), cal.lower_rad, cal.upper_rad)
        joints = np.asarray(event.get("joint_positions_rad", default), dtype=float)
        seed = event.get("seed")
        self.twin.reset(joints, float(event.get("object_position", 0.0)),
                        seed=None if seed is None else int(seed))
        self._debt_s, self._last_tick_s = 0.0, None
        self._publish_state()  # the new state goes out before the reply

    def _reply(self, payload: dict[str, Any]) -> None:
        self._status.publish(m.String(data=json.dumps(payload)))

    def close(self) -> None:
        if self._camera is not None:
            self._camera.close()
        for view in self._viewers:
            view.close()
        self.twin.close()


def main(argv: list[str] | None = None) -> int:
    return run(TwinNode, sys.argv[1:] if argv is None else argv)
