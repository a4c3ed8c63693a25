"""One scene's physics: the robot of a calibration file, its object, its camera.

Used by the gymnasium environments, by the twin ROS node and by the hardware emulators. The scene
is a task's (``RobotCalibration.scene_path(task)``: the robot with the task's objects), or the
robot's model when that already holds them. Joints are always in the calibration's order; the
object is the scene's one joint that is not a robot joint (the valve's hinge, the drawer's slide).
Units: rad, rad/s, m, s, A.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable, Sequence

import mujoco
import numpy as np

from robot_rl.robot_config import RobotCalibration
from robot_rl.sim_twin.randomization import ModelRandomizer, RandomizationConfig
from robot_rl.sim_twin.servos import torque_constant_nm_a
from robot_rl.tasks.camera import (
    ImageObservationConfig,
    crop_box,
    preprocess_color,
    preprocess_depth,
)

# The twin's D435-like camera streams 640x480 frames (robot_rl/calibration/cameras/d435_twin_dclaw.yaml):
# a task's crop is a part of this frame.
CAMERA_FRAME = (640, 480)
# Small renders for a policy: llvmpipe (MuJoCo's headless GL here) spends its time on geometry and
# multisampling, not on pixels. bench/render_cost.py: a 64x64 valve view costs several ms with
# the model's defaults (4x multisampling, spheres and capsules of 28 slices x 16 stacks) and under
# 1 ms with none and 12 x 6. Anti-aliasing comes from rendering at VIEW_SUPERSAMPLE x the view's
# size instead, then averaging pixel areas down, as the camera's own frames are.
VIEW_QUALITY = {"offsamples": 0, "numslices": 12, "numstacks": 6}
VIEW_SUPERSAMPLE = 2.0


class Twin:
    def __init__(self, calibration: RobotCalibration, *, task: str | None = None,
                 physics_timestep_s: float = 0.002,
                 randomization: RandomizationConfig | None = None,
                 seed: int | None = None) -> None:
        """``task`` picks the scene (the calibration's ``tasks.<task>.scene``); None: the
        robot's model, which must then hold the object."""
        self.calibration = calibration
        self.task = task
        self.model_path = calibration.scene_path(task)
        self.model = mujoco.MjModel.from_xml_path(str(self.model_path))
        self.model.opt.timestep = physics_timestep_s
        self.data = mujoco.MjData(self.model)
        self.randomization = randomization or RandomizationConfig()
        self._rng = np.random.default_rng(seed)
        self._bind_joints()
        self._kt_nm_a = np.array([j.torque_constant_nm_a or torque_constant_nm_a(j.model)
                                  for j in calibration.joints])
        self._randomizer = ModelRandomizer(self.model, self._actuators)
        # A Dynamixel in position mode follows its goal along a trapezoid-free profile capped at
        # Profile Velocity, which the driver sets from each joint's velocity limit; the twin's
        # servo setpoint (ctrl) moves the same way, so currents stay like the real servo's.
        self._profile_rad_s = calibration.velocity_limit_rad_s
        self._goal = np.zeros(self.n_joints)
        self._latency_steps = 0
        self._pending: np.ndarray | None = None
        self._noise = np.zeros(2 * self.n_joints + 1)
        self._renderers: dict[tuple[int, int, bool, bool], mujoco.Renderer] = {}
        self.reset(np.clip(np.zeros(self.n_joints), calibration.lower_rad, calibration.upper_rad),
                   0.0)

    # ---- construction ------------------------------------------------------------------------
    def _bind_joints(self) -> None:
        m, where = self.model, f"{self.model_path} (robot {self.calibration.robot})"
        names = [m.joint(i).name for i in range(m.njnt)]
        missing = [n for n in self.calibration.joint_names if n not in names]
        if missing:
            raise ValueError(f"{where}: calibration joints missing from the model: {missing}")
        ids = [m.joint(n).id for n in self.calibration.joint_names]
        self._qpos = np.array([m.jnt_qposadr[i] for i in ids])
        self._dof = np.array([m.jnt_dofadr[i] for i in ids])
        by_joint = {m.actuator_trnid[a, 0]: a for a in range(m.nu)
                    if m.actuator_trntype[a] == mujoco.mjtTrn.mjTRN_JOINT}
        unactuated = [n for n, i in zip(self.calibration.joint_names, ids) if i not in by_joint]
        if unactuated:
            raise ValueError(f"{where}: joints without an actuator: {unactuated}")
        self._actuators = np.array([by_joint[i] for i in ids])
        self.object_joint = self.calibration.object_joint(names, where)
        obj = m.joint(self.object_joint)
        self._obj_qpos, self._obj_dof = int(obj.qposadr[0]), int(obj.dofadr[0])

    # ---- public API --------------------------------------------------------------------------
    @property
    def joint_names(self) -> tuple[str, ...]:
        return self.calibration.joint_names

    @property
    def n_joints(self) -> int:
        return self.calibration.n_joints

    @property
    def time_s(self) -> float:
        return float(self.data.time)

    @property
    def physics_timestep_s(self) -> float:
        return float(self.model.opt.timestep)

    def reset(self, joint_positions_rad: np.ndarray, object_position: float,
              seed: int | None = None) -> None:
        """Puts the scene at rest at the given state, redrawing randomised parameters."""
        if seed is not None:
            self._rng = np.random.default_rng(seed)
        config = self.randomization
        self._randomizer.apply(config, self._rng)
        lo, hi = config.action_latency_s
        self._latency_steps = round(self._rng.uniform(lo, hi) / self.physics_timestep_s)
        mujoco.mj_resetData(self.model, self.data)
        joints = self._check(joint_positions_rad, "joint_positions_rad")
        self.data.qpos[self._qpos] = joints
        self.data.qpos[self._obj_qpos] = object_position
        self.data.ctrl[self._actuators] = joints
        self._goal = joints.copy()
        self._pending = None
        mujoco.mj_forward(self.model, self.data)
        self._draw_noise()

    def reset_to_task_start(self, seed: int | None = None) -> None:
        """At rest where the task's episodes start (its reset distribution, drawn with ``seed``),
        the object as the task resets it; the clipped zero pose when the twin plays no task. A
        node or a driver starts here: a robot's zero pose may be inside its scene's furniture
        (the UR5e's, stretched out, is in the drawer's cabinet)."""
        if self.task is None:
            zero = np.zeros(self.n_joints)
            self.reset(np.clip(zero, self.calibration.lower_rad, self.calibration.upper_rad),
                       0.0, seed)
            return
        from robot_rl.registry import make_task

        sample = make_task(self.task, self.calibration).sample_reset(np.random.default_rng(seed))
        self.reset(sample.joint_positions_rad, sample.object_position, seed)

    def set_joint_targets(self, targets_rad: np.ndarray) -> None:
        """Servo goals (calibration order); with latency they land part-way into advance()."""
        targets = self._check(targets_rad, "targets_rad")
        if self._latency_steps:
            self._pending = targets
        else:
            self._goal = targets

    def advance(self, duration_s: float) -> None:
        """Steps the physics by a whole number of substeps (at least one)."""
        steps = max(1, round(duration_s / self.physics_timestep_s))
        if self._pending is not None:
            delay = min(self._latency_steps, steps)
            self._step_toward_goal(delay)
            self._goal, self._pending = self._pending, None
            steps -= delay
        self._step_toward_goal(steps)
        self._draw_noise()

    def _step_toward_goal(self, steps: int) -> None:
        """Substeps with the servo setpoints moving to the goals at the profile velocity."""
        start = self.data.ctrl[self._actuators].copy()
        gap = self._goal - start
        max_step_rad = self._profile_rad_s * self.physics_timestep_s
        moving = min(steps, int(np.ceil(np.max(np.abs(gap) / max_step_rad, initial=0.0))))
        # the whole ramp at once: after k substeps each setpoint is k steps closer, or there
        reach = np.arange(1, moving + 1)[:, None] * max_step_rad
        for setpoint in start + np.clip(gap, -reach, reach):
            self.data.ctrl[self._actuators] = setpoint
            mujoco.mj_step(self.model, self.data)
        if steps > moving:  # at the goal: the rest in one call
            self.data.ctrl[self._actuators] = self._goal
            mujoco.mj_step(self.model, self.data, nstep=steps - moving)

    def joint_positions_rad(self) -> np.ndarray:
        return self.data.qpos[self._qpos] + self._noise[: self.n_joints]

    def joint_velocities_rad_s(self) -> np.ndarray:
        return self.data.qvel[self._dof] + self._noise[self.n_joints: 2 * self.n_joints]

    def joint_efforts_a(self) -> np.ndarray:
        """Servo current (A): the motor's torque over its torque constant.

        The joint damping in the model is the motor's back-EMF (stall torque / no-load speed): it
        lowers the torque a voltage-driven motor delivers at speed, not its current. So the motor
        torque is the actuator's force less that damping force, and a servo moving freely draws
        little current, as a real one does.
        """
        back_emf_nm = self.model.dof_damping[self._dof] * self.data.qvel[self._dof]
        return (self.data.actuator_force[self._actuators] - back_emf_nm) / self._kt_nm_a

    def joint_targets_rad(self) -> np.ndarray:
        """The setpoints the servos hold now (on their way to the goals at the profile velocity)."""
        return self.data.ctrl[self._actuators].copy()

    def object_position(self) -> float:
        return float(self.data.qpos[self._obj_qpos] + self._noise[-1])

    def object_velocity(self) -> float:
        return float(self.data.qvel[self._obj_dof])

    def site_positions_m(self, names: Sequence[str]) -> np.ndarray:
        """World positions (len(names), 3) of named MJCF sites."""
        try:
            return np.stack([self.data.site(n).xpos.copy() for n in names])
        except KeyError as err:
            raise KeyError(f"{self.model_path}: no site named in {list(names)}: {err}") from None

    def render(self, width: int = 640, height: int = 480, *, depth: bool = False,
               camera: str = "realsense") -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        """RGB uint8 (height, width, 3); with depth=True also depth in m, float32 (height, width)."""
        rgb = self._renderer(width, height, False)
        rgb.update_scene(self.data, camera=camera)
        image = rgb.render()
        if not depth:
            return image
        dep = self._renderer(width, height, True)
        dep.update_scene(self.data, camera=camera)
        return image, dep.render().astype(np.float32)

    def render_view(self, view: ImageObservationConfig,
                    frame: tuple[int, int] = CAMERA_FRAME) -> tuple[np.ndarray, np.ndarray | None]:
        """A task's camera view: (colour (height, width, 3) uint8, depth (height, width) uint16
        mm or None), as ``tasks.camera`` makes it from a camera's ``frame``-sized image, from a
        render just large enough for that crop at VIEW_SUPERSAMPLE x the view's size."""
        return render_view_with(lambda w, h, d: self._renderer(w, h, d, fast=True), self.data,
                                view, frame)

    def close(self) -> None:
        for renderer in self._renderers.values():
            renderer.close()
        self._renderers.clear()

    # ---- helpers -----------------------------------------------------------------------------
    def _renderer(self, width: int, height: int, depth: bool, fast: bool = False
                  ) -> mujoco.Renderer:
        """One renderer per size and kind, made once (a GL context and buffers each); ``fast``
        ones with VIEW_QUALITY, which the renderer reads when it is made."""
        key = (width, height, depth, fast)
        if key not in self._renderers:
            _headless_gl_fallback()
            quality = self.model.vis.quality
            saved = {name: getattr(quality, name) for name in VIEW_QUALITY}
            try:
                if fast:
                    for name, value in VIEW_QUALITY.items():
                        setattr(quality, name, value)
                renderer = mujoco.Renderer(self.model, height=height, width=width)
            finally:
                for name, value in saved.items():
                    setattr(quality, name, value)
            if depth:
                renderer.enable_depth_rendering()
            self._renderers[key] = renderer
        return self._renderers[key]

    def _check(self, values: np.ndarray, what: str) -> np.ndarray:
        values = np.asarray(values, dtype=np.float64)
        if values.shape != (self.n_joints,):
            raise ValueError(f"Twin({self.calibration.robot}).{what}: expected shape "
                             f"({self.n_joints},) in order {self.joint_names}, got {values.shape}")
        if not np.all(np.isfinite(values)):
            raise ValueError(f"Twin({self.calibration.robot}).{what}: non-finite value {values}")
        return values

    def _draw_noise(self) -> None:
        config, n = self.randomization, self.n_joints
        if not (config.joint_position_noise_rad or config.joint_velocity_noise_rad_s
                or config.object_position_noise):
            return
        scale = np.concatenate([np.full(n, config.joint_position_noise_rad),
                                np.full(n, config.joint_velocity_noise_rad_s),
                                [config.object_position_noise]])
        self._noise = self._rng.normal(0.0, 1.0, scale.shape) * scale




def render_view_with(renderer: Callable[[int, int, bool], mujoco.Renderer], data: mujoco.MjData,
                     view: ImageObservationConfig, frame: tuple[int, int] = CAMERA_FRAME
                     ) -> tuple[np.ndarray, np.ndarray | None]:
    """``Twin.render_view`` of the scene in ``data``, with renderers from ``renderer(width,
    height, depth)`` (made with VIEW_QUALITY): the env and the twin node's view stream render one
    picture the same way, so a policy trained in process sees on the graph what it learned on."""
    width, height = view_render_size(view, frame)
    color = renderer(width, height, False)
    color.update_scene(data, camera=view.twin_camera)
    image = preprocess_color(color.render(), view)
    if not view.depth:
        return image, None
    depth = renderer(width, height, True)
    depth.update_scene(data, camera=view.twin_camera)
    return image, preprocess_depth(depth_to_mm(depth.render()), view)


def view_quality_model(model: mujoco.MjModel) -> mujoco.MjModel:
    """A copy of ``model`` whose renderers are made with VIEW_QUALITY (for a renderer on another
    thread: the settings are read when a renderer is made, and the original stays as it is)."""
    fast = copy.copy(model)
    for name, value in VIEW_QUALITY.items():
        setattr(fast.vis.quality, name, value)
    return fast


def view_render_size(view: ImageObservationConfig,
                     frame: tuple[int, int] = CAMERA_FRAME) -> tuple[int, int]:
    """The full-frame render size whose crop holds about VIEW_SUPERSAMPLE x the view's pixels
    each way (never more than the camera's own frame)."""
    full_w, full_h = frame
    left, top, right, bottom = crop_box(full_w, full_h, view.crop)
    scale = min(1.0, max(VIEW_SUPERSAMPLE * view.width / (right - left),
                         VIEW_SUPERSAMPLE * view.height / (bottom - top)))
    return max(1, round(full_w * scale)), max(1, round(full_h * scale))


DEPTH_MAX_MM = 65535


def depth_to_mm(depth_m: np.ndarray) -> np.ndarray:
    """RealSense's z16: uint16 millimetres, 0 where there is no valid depth."""
    mm = np.where(np.isfinite(depth_m), np.round(np.asarray(depth_m, np.float64) * 1000.0), 0.0)
    return np.clip(mm, 0, DEPTH_MAX_MM).astype(np.uint16)


def _headless_gl_fallback() -> None:
    """MuJoCo picks its GL backend when it is first imported. If that happened before sim_twin could
    set MUJOCO_GL (someone imported mujoco first) on a machine without a display, the default (GLFW)
    cannot open a context: switch the renderer to EGL, as MUJOCO_GL=egl would have."""
    from mujoco.rendering.classic import gl_context

    if os.environ.get("DISPLAY") or getattr(gl_context, "_MUJOCO_GL", "x") not in ("", "glfw"):
        return
    from mujoco.egl import GLContext

    gl_context.GLContext = GLContext
