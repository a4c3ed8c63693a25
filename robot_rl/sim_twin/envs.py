"""Gymnasium environments on the twin: one per registered task (``robot_rl/ValveTurn-v0``,
``robot_rl/DrawerOpen-v0``, and any a package registers; robot_rl.registry).

``gymnasium.make(env_id, calibration=..., config=...)`` plays the task on any robot that has a
scene for it (``calibration``: a name, a YAML path or a RobotCalibration; the task's default robot
otherwise); ``config`` overrides the task's settings (a mapping or the task's config).

Episodes end with ``terminated=True`` at success (when the task's ``terminate_on_success`` is set,
the default): with AWAC's sparse reward (0 on success, -1 otherwise) the critic then learns
-(steps to success) and bootstraps nothing past it, and episodes stay short. ``truncated=True`` at
the task's episode length. Every step the optional ``command_gate`` sees the targets the policy
asked for and the measured state, and what it returns is what the servos receive.

Observations: a state task's vector (a Box); a pixel task's (``observation: pixels`` in its
config) a Dict of ``state`` (proprioception and goal, ``Task.proprio_layout``: no object state) and
``rgb`` (its camera view, uint8 (height, width, 3)), plus ``depth`` (uint16 mm) when the view has
depth. The view is rendered once per control step, at the step's end. ``info`` carries what the
policy does not see: ``object_position`` and ``state_observation`` (the task's state layout), for
scripted experts, evaluation and a state-based baseline recorded on the same episodes.
``obs_type="state+rgb"`` (a state task's vector plus a full-frame render) is the older way to
get images beside the state.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from robot_rl.registry import make_task, register_gym_envs, task_spec
from robot_rl.robot_config import RobotCalibration, load_robot
from robot_rl.sim_twin.randomization import RandomizationConfig
from robot_rl.sim_twin.twin import Twin
from robot_rl.tasks.base import Task, TaskState
from robot_rl.tasks.camera import ImageObservationConfig
from robot_rl.tasks.drawer import DrawerTaskConfig
from robot_rl.tasks.valve import ValveTaskConfig

CommandGate = Callable[[np.ndarray, dict[str, np.ndarray], float], np.ndarray]
OBS_TYPES = ("state", "state+rgb")


class TwinTaskEnv(gym.Env):
    """A task (robot_rl.tasks) played in the twin at the task's control period."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 20}

    def __init__(self, task: Task, *, obs_type: str = "state",
                 image_size: tuple[int, int] = (84, 84), camera: str = "realsense",
                 randomization: RandomizationConfig | None = None,
                 command_gate: CommandGate | None = None, render_mode: str | None = None,
                 physics_timestep_s: float = 0.002) -> None:
        if obs_type not in OBS_TYPES:
            raise ValueError(f"obs_type {obs_type!r}: expected one of {OBS_TYPES}")
        if obs_type != "state" and task.uses_pixels:
            raise ValueError(f"obs_type {obs_type!r}: task {task.name} declares observation: "
                             "pixels, whose view comes from its config's image; use obs_type "
                             "'state'")
        self.task = task
        self.state_task = task.state_variant()
        self.obs_type, self.image_size, self.camera = obs_type, tuple(image_size), camera
        self.command_gate, self.render_mode = command_gate, render_mode
        self.twin = Twin(task.calibration, task=task.name, physics_timestep_s=physics_timestep_s,
                         randomization=randomization)
        self.metadata = {**self.metadata, "render_fps": round(1.0 / task.control_period_s)}
        n = task.n_joints
        self.action_space = spaces.Box(-1.0, 1.0, (n,), np.float32)
        state_space = spaces.Box(-np.inf, np.inf, (task.observation_size,), np.float32)
        if task.image is not None:
            self.observation_space = spaces.Dict(pixel_spaces(state_space, task.image))
        elif obs_type == "state":
            self.observation_space = state_space
        else:
            width, height = self.image_size
            self.observation_space = spaces.Dict({
                "state": state_space,
                "rgb": spaces.Box(0, 255, (height, width, 3), np.uint8)})
        self.goal = 0.0
        self._steps = 0
        self._targets = np.zeros(n)
        self._previous_action = np.zeros(n, np.float32)

    # ---- gymnasium API -------------------------------------------------------------------------
    def reset(self, *, seed: int | None = None,
              options: dict[str, Any] | None = None) -> tuple[Any, dict]:
        """options: ``goal``, ``object_position``, ``joint_positions_rad`` override the draw."""
        super().reset(seed=seed)
        options = options or {}
        sample = self.task.sample_reset(self.np_random)
        joints = np.asarray(options.get("joint_positions_rad", sample.joint_positions_rad))
        self.goal = float(options.get("goal", sample.goal))
        physics_seed = int(self.np_random.integers(2**31))
        self.twin.reset(joints, float(options.get("object_position", sample.object_position)),
                        seed=physics_seed)
        self._targets = self.twin.joint_targets_rad()
        self._previous_action = self.task.targets_to_action(self._targets, self._targets)
        if self.task.actions.steps_from_command:
            self._previous_action = np.zeros_like(self._previous_action)
        self._steps = 0
        state = self.state()
        return self._observe(state), self._info(state)

    def step(self, action: np.ndarray) -> tuple[Any, float, bool, bool, dict]:
        action = np.clip(np.asarray(action, dtype=np.float32), -1.0, 1.0)
        targets = self.task.action_to_targets(action, self._targets)
        if self.command_gate is not None:
            measured = {"position_rad": self.twin.joint_positions_rad(),
                        "velocity_rad_s": self.twin.joint_velocities_rad_s(),
                        "effort_a": self.twin.joint_efforts_a()}
            targets = np.asarray(self.command_gate(targets, measured, self.twin.time_s),
                                 dtype=np.float64)
        self.twin.set_joint_targets(targets)
        self.twin.advance(self.task.control_period_s)
        self._targets, self._previous_action = targets, action
        self._steps += 1
        state = self.state()
        success = self.task.is_success(state, self.goal)
        reward = float(self.task.reward(state, self.goal))
        terminated = bool(success and self.task.config.terminate_on_success)
        truncated = self._steps >= self.task.episode_length_steps
        return self._observe(state), reward, terminated, truncated, self._info(state)

    @property
    def commanded_targets_rad(self) -> np.ndarray:
        """The joint targets the servos were last sent (after the command gate, if any)."""
        return self._targets.copy()

    def render(self) -> np.ndarray | None:
        if self.render_mode != "rgb_array":
            return None
        return self.twin.render(640, 480, camera=self.camera)

    def close(self) -> None:
        self.twin.close()

    # ---- helpers ---------------------------------------------------------------------------------
    def state(self) -> TaskState:
        twin = self.twin
        sites = self.task.required_sites
        positions = twin.site_positions_m(sites) if sites else np.zeros((0, 3))
        return TaskState(
            joint_positions_rad=twin.joint_positions_rad(),
            joint_velocities_rad_s=twin.joint_velocities_rad_s(),
            object_position=twin.object_position(), object_velocity=twin.object_velocity(),
            sites_m=dict(zip(sites, positions)))

    def state_observation(self, state: TaskState | None = None) -> np.ndarray:
        """The task's state layout now (what ``info['state_observation']`` holds)."""
        state = self.state() if state is None else state
        return self.state_task.observation(state, self.goal, self._previous_action)

    def _observe(self, state: TaskState) -> Any:
        obs = self.task.observation(state, self.goal, self._previous_action)
        if self.task.image is not None:
            rgb, depth = self.twin.render_view(self.task.image)
            return {"state": obs, "rgb": rgb} | ({} if depth is None else {"depth": depth})
        if self.obs_type == "state":
            return obs
        width, height = self.image_size
        return {"state": obs, "rgb": self.twin.render(width, height, camera=self.camera)}

    def _info(self, state: TaskState) -> dict:
        success = self.task.is_success(state, self.goal)
        return {"success": success, "is_success": success, "goal": self.goal,
                "object_position": state.object_position,
                "state_observation": self.state_observation(state),
                "joint_targets_rad": self._targets.copy(), "time_s": self.twin.time_s}


def pixel_spaces(state_space: spaces.Box, view: ImageObservationConfig) -> dict[str, spaces.Box]:
    """A pixel task's observation spaces: its vector, its colour view and (declared) depth."""
    out = {"state": state_space,
           "rgb": spaces.Box(0, 255, (view.height, view.width, 3), np.uint8)}
    if view.depth:
        out["depth"] = spaces.Box(0, 65535, (view.height, view.width), np.uint16)
    return out


class TaskEnv(TwinTaskEnv):
    """A registered task by name on a robot (its default robot unless ``calibration`` is given);
    ``config`` overrides the task's settings (a mapping or the task's config)."""

    def __init__(self, task: str, config: Any = None,
                 calibration: RobotCalibration | str | None = None, **kwargs: Any) -> None:
        if calibration is None:
            calibration = task_spec(task).default_robot
        if not isinstance(calibration, RobotCalibration):
            calibration = load_robot(calibration)
        super().__init__(make_task(task, calibration, config), **kwargs)


class ValveTurnEnv(TaskEnv):
    """Turn the D'Claw's valve to a goal angle (calibration ``dclaw`` unless given)."""

    def __init__(self, config: ValveTaskConfig | Mapping[str, Any] | None = None,
                 calibration: RobotCalibration | str = "dclaw", **kwargs: Any) -> None:
        super().__init__("valve", config, calibration, **kwargs)


class DrawerOpenEnv(TaskEnv):
    """Hook the handle and pull the drawer open (calibration ``arm6`` unless given)."""

    def __init__(self, config: DrawerTaskConfig | Mapping[str, Any] | None = None,
                 calibration: RobotCalibration | str = "arm6", **kwargs: Any) -> None:
        super().__init__("drawer", config, calibration, **kwargs)


def register_envs() -> None:
    """Every registered task's env id (robot_rl.registry.register_gym_envs; kept for callers)."""
    register_gym_envs()
