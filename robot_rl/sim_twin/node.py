"""The twin node: the MuJoCo twin standing in for the robot, its object and its camera.

It publishes what the drivers publish (joint states, telemetry, the object's state, camera
images) and obeys only the safety supervisor's gated COMMAND, never COMMAND_RAW, so the twin
graph exercises the same safety path as the real robot. An EPISODE ``reset`` event teleports the
scene and is answered on EPISODE_STATUS (reset_done names the stamp of the state published after
the teleport). ``viewer:=true`` opens a live view (sim_twin.viewer: a window, or a refreshing PNG
when headless). With ``view_task`` it also publishes that pixel task's camera view
(``nodes.camera_view``), rendered as its gymnasium env renders it, at ``view_rate_hz``.

Time, three ways (docs/ros2.md, "Simulated time"):
- wall clock (``use_sim_time`` false, the default): physics advances by wall-clock time
  (``realtime``) or by one publish period per tick; stamps are system time.
- simulated time (``use_sim_time:=true``): the twin is the graph's clock. Its time starts at 0
  and only grows (an episode reset takes one step too), goes out on ``/clock`` before the state
  of each instant, and stamps everything. Free-running, it advances one publish period per
  publish period of wall time.
- lockstep (``use_sim_time:=true lockstep:=true``): one step is one control period
  (``1/control_rate_hz``), taken once the controller has answered the last state and its answer
  has been gated: a COMMAND_RAW stamped at or after that state's stamp (the acting node stamps it
  with the state it acted on) and then the supervisor's COMMAND stamped at or after it (its basis
  stamp, contract C1), or an EPISODE reset. So the graph runs as fast as its slowest node, and the
  same commands give the same states. COMMAND_RAW only times the steps: the twin obeys COMMAND
  alone. The supervisor's own commands (a watchdog hold while the controller is silent, e.g. a
  learner waiting for its updates) are obeyed but answer nothing, so sim time waits for the
  controller. When the supervisor sends nothing for an answered step (no feasible command), the
  step goes on ``GATE_GRACE_S`` later. Without an answer within ``lockstep_timeout_s`` of wall
  time the twin steps anyway, counts a timeout, and steps at real-time pace until answers come
  again (a controller that stopped, a dead node); before the first answer it runs at real-time
  pace too. Counters go to /diagnostics.
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
from robot_rl.nodes.camera_view import ViewPublisher, declare_view_parameters
from robot_rl.nodes.robot_state import RobotStatePublishers
from robot_rl.robot_config import load_robot
from robot_rl.ros import messages as m
from robot_rl.ros.api import CLOCK_TOPIC, QOS_CLOCK_WRITER, Node
from robot_rl.ros.qos import QOS_DEFAULT, QOS_SENSOR_DATA
from robot_rl.ros.runtime import make_node, run
from robot_rl.sim_twin.twin import CAMERA_FRAME, Twin, render_view_with, view_quality_model
from robot_rl.sim_twin.viewer import Viewer, open_viewers
from robot_rl.tasks.camera import ImageObservationConfig

MAX_CATCH_UP_S = 0.25  # an overloaded machine slows the twin down rather than spiralling
TELEMETRY_PERIOD_S = 0.1
LOCKSTEP_POLL_S = 0.02  # how often lockstep checks its wall-clock deadline (timeouts, grace,
# real-time pace while no answers come: a fallback, 20 ms late at most; waits cost polls)
# an answered step the supervisor sent nothing for goes on after this (wall s); its COMMAND comes
# within milliseconds of the COMMAND_RAW it gates when it comes at all
GATE_GRACE_S = 0.5
DIAGNOSTICS_PERIOD_S = 1.0  # wall seconds between the twin's clock diagnostics (sim time only)
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


class ViewWorker(CameraWorker):
    """Renders a pixel task's view as the twin's env does (``robot_rl.sim_twin.twin.render_view_with``:
    a small render with VIEW_QUALITY, then the task's cut) on a thread of its own; a frame is
    dropped while one renders."""

    def __init__(self, model: mujoco.MjModel, view: ImageObservationConfig,
                 publish: Callable[[np.ndarray, np.ndarray | None, float], None]) -> None:
        self._view = view
        super().__init__(view_quality_model(model), 0, 0, publish)  # type: ignore[arg-type]

    def _run(self) -> None:
        renderers: dict[tuple[int, int, bool], mujoco.Renderer] = {}

        def renderer(width: int, height: int, depth: bool) -> mujoco.Renderer:
            if (width, height, depth) not in renderers:  # on this thread: GL contexts are
                made = mujoco.Renderer(self._model, height=height, width=width)
                if depth:
                    made.enable_depth_rendering()
                renderers[(width, height, depth)] = made
            return renderers[(width, height, depth)]
        try:
            while (job := self._jobs.get()) is not None:
                data, stamp_s = job
                color, depth_mm = render_view_with(renderer, data, self._view)
                self._publish(color, depth_mm, stamp_s)  # type: ignore[arg-type]
        finally:
            for made in renderers.values():
                made.close()


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
        lockstep = p("lockstep", False, "sim time: step one control period per gated command "
                     "that answers the last state (needs use_sim_time)")
        control_rate_hz = p("control_rate_hz", 20.0, "lockstep: the rate of the controller "
                            "whose commands step the twin (the learner's control_rate_hz)")
        timeout_s = p("lockstep_timeout_s", 10.0, "lockstep: wall seconds to wait for a step's "
                      "command before stepping without it (counted in /diagnostics)")
        positive = {"publish_rate_hz": publish_rate_hz, "camera_width": self._width,
                    "camera_height": self._height, "physics_timestep_s": timestep_s,
                    "viewer_rate_hz": viewer_rate_hz, "control_rate_hz": control_rate_hz,
                    "lockstep_timeout_s": timeout_s}
        bad = {k: v for k, v in positive.items() if not v > 0}
        name = self.node.fully_qualified_name
        if bad or camera_rate_hz < 0:
            raise ValueError(f"node {name}: parameters {bad} must be "
                             f"> 0 and camera_rate_hz >= 0 (got {camera_rate_hz})")
        if lockstep and not self.node.uses_sim_time:
            raise ValueError(f"node {name}: lockstep:=true needs use_sim_time:=true (in "
                             "lockstep the twin's clock, not the wall clock, is the graph's time)")
        self.calibration = load_robot(robot)
        self.twin = Twin(self.calibration, task=task or None, physics_timestep_s=timestep_s,
                         seed=seed)
        self.twin.reset_to_task_start(seed)  # until the first episode's reset event
        self._period_s = 1.0 / publish_rate_hz
        self._names = list(self.calibration.joint_names)
        self._debt_s = 0.0
        self._last_tick_s: float | None = None
        self._last_telemetry_s = -math.inf
        self._last_stamp_s = 0.0  # of the last joint state published, as receivers read it
        self._bad_command_logged = False
        self._make_endpoints(lockstep)
        self._camera: CameraWorker | None = None
        self._camera_period_s = 1.0 / camera_rate_hz if camera_rate_hz > 0 else math.inf
        self._next_camera_s = 0.0
        if camera_rate_hz > 0:
            self._camera = CameraWorker(self.twin.model, self._width, self._height,
                                        self._publish_camera)
        self._view_worker: ViewWorker | None = None
        view = declare_view_parameters(self.node, robot)
        view_rate_hz = p("view_rate_hz", 30.0, "rate of view_task's view stream (Hz)")
        if view is not None:
            if not view_rate_hz > 0:
                raise ValueError(f"node {self.node.fully_qualified_name}: view_rate_hz must be "
                                 f"> 0 with view_task, got {view_rate_hz}")
            self._view_pub = ViewPublisher(self.node, view, view.camera)
            self._view_worker = ViewWorker(self.twin.model, view, self._publish_view)
        self.clock: SimTimeKeeper | None = None
        self.lockstep: Lockstep | None = None
        if self.node.uses_sim_time:
            timing = self._start_sim_time(lockstep, control_rate_hz, timeout_s)
        else:
            self.node.create_timer(self._period_s, self._tick)
            if self._camera is not None:
                self.node.create_timer(self._camera_period_s, lambda: self._camera.offer(
                    self.twin.data, self.node.now_s()))
            timing = f"wall clock at {publish_rate_hz:g} Hz"
        if self._view_worker is not None:  # paced by wall time; stamped with the node's clock
            worker = self._view_worker
            timer = self.node.create_wall_timer if self.node.uses_sim_time else \
                self.node.create_timer
            timer(1.0 / view_rate_hz, lambda: worker.offer(self.twin.data, self.node.now_s()))
            self.node.get_logger().info(f"publishing the {view.width}x{view.height} view on "
                                        f"{self._view_pub.topic} at {view_rate_hz:g} Hz")
        self._viewers: list[Viewer] = []
        if viewer or viewer_png:
            self._open_viewers(viewer, viewer_png, viewer_rate_hz)
        self.node.get_logger().info(
            f"twin of {self.calibration.robot} ({self.twin.object_joint}) publishing "
            f"{self._joints.topic}, {timing}, obeying {self._command_topic}")

    def _start_sim_time(self, lockstep: bool, control_rate_hz: float, timeout_s: float) -> str:
        """The twin as the graph's clock: free-running on a wall timer, or lockstep."""
        node = self.node
        self._clock_pub = node.create_publisher(m.Clock, CLOCK_TOPIC, QOS_CLOCK_WRITER)
        self._diagnostics = node.create_publisher(m.DiagnosticArray, topics.DIAGNOSTICS,
                                                  QOS_DEFAULT)
        step_s = 1.0 / control_rate_hz if lockstep else self._period_s
        self.clock = SimTimeKeeper(self.twin.physics_timestep_s, step_s)
        if lockstep:
            self.lockstep = Lockstep(step_s, timeout_s)
            node.create_wall_timer(LOCKSTEP_POLL_S, self._lockstep_poll)
        else:
            node.create_wall_timer(step_s, lambda: self._sim_step("free"))
        node.create_wall_timer(DIAGNOSTICS_PERIOD_S, self._publish_clock_diagnostics)
        mode = (f"lockstep at {control_rate_hz:g} Hz (timeout {timeout_s:g} s)" if lockstep
                else f"free-running at {1.0 / step_s:g} Hz")
        return f"sim time on {CLOCK_TOPIC}, {mode}"

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

        self.node.create_wall_timer(1.0 / rate_hz, refresh)  # for people: wall time

    def _make_endpoints(self, lockstep: bool) -> None:
        node = self.node
        if lockstep:
            # what the controller answered, to time the steps (never obeyed: COMMAND is);
            # subscribed first, so that in one wake-up it is taken before the COMMAND gating it
            node.create_subscription(m.JointState, topics.COMMAND_RAW, self._on_command_raw,
                                     QOS_DEFAULT)
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

    # ---- simulated time --------------------------------------------------------------------------
    def _sim_step(self, how: str) -> None:
        """One step of sim time: physics, then /clock, then the state of the new instant."""
        assert self.clock is not None
        self.twin.advance(self.clock.step_s)
        self._advance_clock(how)
        self._publish_state()

    def _advance_clock(self, how: str, ticks: int | None = None) -> None:
        """``how``: what let the step go (Lockstep.stepped)."""
        assert self.clock is not None
        self.clock.advance(self._clock_pub, ticks)
        if self.lockstep is not None:
            self.lockstep.stepped(self.clock.now_ns, how)

    def _lockstep_reset_step(self) -> None:
        """A reset takes one step in lockstep, and states come during it as from a real reset:
        the teleported scene one physics time step in, then settled at the end of the step. The
        supervisor so sees two measurements at the new pose before the first command of the
        episode, and re-bases its rate limits there (one alone could leave no feasible command,
        hence no answer)."""
        assert self.clock is not None and self.lockstep is not None
        rest = self.clock.ticks_per_step - 1
        if rest > 0:
            self.clock.advance(self._clock_pub, ticks=1)
            self._publish_state()
            self.twin.advance(rest * self.twin.physics_timestep_s)
        self._advance_clock("reset", ticks=max(rest, 1))
        self._publish_state()

    def _lockstep_poll(self) -> None:
        """Wall timer: the first step, the steps no answer came for in time, and the answered
        steps the supervisor sent nothing for."""
        assert self.lockstep is not None
        if self.lockstep.due():
            self._sim_step("ungated" if self.lockstep.controller_answered else "unanswered")

    def _on_command_raw(self, msg: m.JointState) -> None:
        assert self.lockstep is not None
        self.lockstep.raw(_stamp_ns(msg.header.stamp))

    def _publish_clock_diagnostics(self) -> None:
        assert self.clock is not None
        values = self.clock.values()
        message = f"sim time {self.clock.now_s:.3f} s"
        if self.lockstep is not None:
            values.update(self.lockstep.values())
            message += f", lockstep, {self.lockstep.timeouts} timeouts"
        status = m.DiagnosticStatus(
            level=m.DiagnosticStatus.WARN if values.get("lockstep_timeouts") else
            m.DiagnosticStatus.OK, name=f"twin: {self.calibration.robot} clock",
            message=message, hardware_id=self.calibration.robot,
            values=[m.KeyValue(key=k, value=str(v)) for k, v in values.items()])
        self._diagnostics.publish(m.DiagnosticArray(header=m.header(self.clock.now_s),
                                                    status=[status]))

    def _publish_state(self) -> None:
        stamp_s = self.node.now_s() if self.clock is None else self.clock.now_s
        if self.clock is not None and self._camera is not None and \
                stamp_s >= self._next_camera_s:  # frames at the camera's rate of sim time
            self._next_camera_s = stamp_s + self._camera_period_s
            self._camera.offer(self.twin.data, stamp_s)
        twin = self.twin
        # the object first: a node acting on each joint state then sees the same instant's object
        self._object.publish(m.joint_state(
            [twin.object_joint], [twin.object_position()], [twin.object_velocity()],
            stamp_s=stamp_s))
        joints = m.joint_state(self._names, twin.joint_positions_rad(),
                               twin.joint_velocities_rad_s(), twin.joint_efforts_a(),
                               stamp_s=stamp_s)
        self._joints.publish(joints)
        self._last_stamp_s = m.stamp_to_s(joints.header.stamp)
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

    def _publish_view(self, color: np.ndarray, depth_mm: np.ndarray | None,
                      stamp_s: float) -> None:
        """Runs on the view thread; the view's intrinsics are the camera's, cut and scaled."""
        frame = "camera_color_optical_frame"
        info = camera_info(self.twin.model, self._view_pub.view.twin_camera, CAMERA_FRAME[0],
                           CAMERA_FRAME[1], stamp_s, frame)
        self._view_pub.publish_view(color, depth_mm, stamp_s, frame, info)

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
        if self.lockstep is not None and self.lockstep.gated(_stamp_ns(msg.header.stamp)):
            self._sim_step("answered")

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
        if self.lockstep is not None:
            self._lockstep_reset_step()  # answers the step the reset came in, takes one
            return  # (the states before the reply)
        if self.clock is not None:
            self._advance_clock("reset")  # the clock keeps counting across a reset
        self._publish_state()  # the new state goes out before the reply

    def _reply(self, payload: dict[str, Any]) -> None:
        if payload["event"] == "reset_done":
            # the learner starts the episode on a state stamped at or after this one: stamps
            # on the twin's own clock, so no clock is trusted across machines
            payload["stamp_s"] = self._last_stamp_s
        self._status.publish(m.String(data=json.dumps(payload)))

    def close(self) -> None:
        if self._camera is not None:
            self._camera.close()
        if self._view_worker is not None:
            self._view_worker.close()
        for view in self._viewers:
            view.close()
        self.twin.close()


def _stamp_ns(stamp: m.Time) -> int:
    return stamp.sec * 1_000_000_000 + stamp.nanosec


class SimTimeKeeper:
    """The twin's simulated time: a count of physics time steps, so stamps are exact multiples of
    the time step, starting at 0 and never going back (episode resets included)."""

    def __init__(self, physics_timestep_s: float, step_s: float) -> None:
        self.step_s = step_s
        self._timestep_ns = round(physics_timestep_s * 1e9)
        self._ticks_per_step = max(1, round(step_s / physics_timestep_s))
        self._ticks = 0  # physics time steps since the start
        self._started_wall_s = time.monotonic()
        self.steps = 0  # clock steps published

    @property
    def now_ns(self) -> int:
        """Integer nanoseconds: stamps compare exactly, as ``builtin_interfaces/Time`` does."""
        return self._ticks * self._timestep_ns

    @property
    def now_s(self) -> float:
        return self.now_ns / 1e9

    @property
    def ticks_per_step(self) -> int:
        return self._ticks_per_step

    def advance(self, publisher: Any, ticks: int | None = None) -> None:
        """One step of time (or ``ticks`` physics time steps), published on /clock (before
        anything stamped with it)."""
        self._ticks += self._ticks_per_step if ticks is None else ticks
        self.steps += 1
        sec, nanosec = divmod(self.now_ns, 1_000_000_000)
        publisher.publish(m.Clock(clock=m.Time(sec=sec, nanosec=nanosec)))

    def values(self) -> dict[str, Any]:
        wall_s = time.monotonic() - self._started_wall_s
        return {"sim_time_s": f"{self.now_s:.6f}", "clock_steps": self.steps,
                "wall_time_s": f"{wall_s:.3f}",
                "real_time_factor": f"{self.now_s / wall_s:.3f}" if wall_s > 0 else "0"}


class Lockstep:
    """When the lockstep twin steps: the rule of the module docstring, on the wall clock.

    Stamps compare in integer nanoseconds, as on the wire (in floats 1.15 and 1.1500000000000001
    would be two instants). ``raw(stamp_ns)``: a COMMAND_RAW came (the controller's answer when
    stamped at or after the awaited state). ``gated(stamp_ns)``: a COMMAND came; True when the
    step may go now (it gates the controller's answer).
    ``due()``: the wall-clock deadline passed: the first step, a timeout, real-time pace while
    no answers come, or the grace of an answered step the supervisor sent nothing for.
    ``stepped(stamp_ns, how)``: a step was taken ("answered", "reset", "ungated": answered but
    nothing gated, "unanswered"); the next one awaits the state stamped ``stamp_ns``.
    """

    def __init__(self, step_s: float, timeout_s: float) -> None:
        self.step_s, self.timeout_s = step_s, timeout_s
        self.awaiting_ns: int | None = None  # the stamp of the state awaiting its answer
        self.controller_answered = False  # a COMMAND_RAW answered it
        self._gated = False  # a COMMAND stamped at or after it came
        self.armed = False  # answers are coming: wait up to timeout_s for the next
        self._stepped_s = time.monotonic()
        self._answered_s = 0.0
        self.counts = {"answered": 0, "reset": 0, "ungated": 0, "unanswered": 0}
        self.timeouts = 0
        self._first = True  # the first step at once

    def raw(self, stamp_ns: int) -> None:
        if self.awaiting_ns is not None and stamp_ns >= self.awaiting_ns and \
                not self.controller_answered:
            self.controller_answered, self._answered_s = True, time.monotonic()

    def gated(self, stamp_ns: int) -> bool:
        """A COMMAND gates the answer if it comes after it (before it, it is the supervisor's
        own, e.g. a watchdog hold, and answers nothing)."""
        if self.controller_answered and stamp_ns >= (self.awaiting_ns or 0):
            self._gated = True
        return self.controller_answered and self._gated

    def due(self) -> bool:
        now = time.monotonic()
        if self._first:
            return True
        if self.controller_answered:
            return now >= self._answered_s + GATE_GRACE_S
        return now >= self._stepped_s + (self.timeout_s if self.armed else self.step_s)

    def stepped(self, stamp_ns: int, how: str) -> None:
        self.counts[how] = self.counts.get(how, 0) + 1
        if how == "unanswered":
            if self.armed:  # the first step of a gap without answers: one timeout
                self.timeouts += 1
            self.armed = False
        elif how != "free":
            self.armed = True
        self._first = False
        self.awaiting_ns, self._stepped_s = stamp_ns, time.monotonic()
        self.controller_answered = self._gated = False

    def values(self) -> dict[str, Any]:
        return {"lockstep_steps_answered": self.counts["answered"],
                "lockstep_resets": self.counts["reset"],
                "lockstep_steps_ungated": self.counts["ungated"],
                "lockstep_steps_unanswered": self.counts["unanswered"],
                "lockstep_timeouts": self.timeouts, "lockstep_timeout_s": self.timeout_s}


def main(argv: list[str] | None = None) -> int:
    return run(TwinNode, sys.argv[1:] if argv is None else argv)
