"""What every task shares: the state a task sees, the action mapping, and the real robot's reset steps.

A task is pure numpy: it turns measured state into observations, rewards and success, and
normalised actions in [-1, 1] into joint position targets inside the calibration's software limits.
The twin (sim_twin) and the ROS nodes feed it the same :class:`TaskState`.

Two kinds of observation (the task config's ``observation``):
``state`` (the default): the task's own layout (``state_layout``), which may read the object's
state (valve angle, drawer opening) and features derived from it;
``pixels``: proprioception and the goal only (``proprio_layout``: joint positions, joint velocities,
the previous action, the task's goal features), beside one camera view (``config.image``, see
``tasks.camera``). A real cell has joint encoders and a camera, but often no sensor on the object,
so nothing in a pixel task's vector reads the object: ``proprio_observation`` is a function of the
joints, the previous action and the goal alone. Reward and success still read the object's state
(a valve encoder, a drawer's end stop, a success classifier): they train the policy, never feed it.
"""

from __future__ import annotations

import abc
import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from robot_rl.config import from_dict
from robot_rl.robot_config import RobotCalibration
from robot_rl.tasks.camera import FULL_FRAME, ImageObservationConfig

ACTION_MODES = ("absolute", "relative", "velocity")
REWARDS = ("sparse", "dense")
OBSERVATIONS = ("state", "pixels")


@dataclass(frozen=True)
class TaskState:
    """Measured state at one control step (SI units; joints in calibration order)."""

    joint_positions_rad: np.ndarray
    joint_velocities_rad_s: np.ndarray
    object_position: float                      # valve angle (rad) or drawer opening (m)
    object_velocity: float                      # rad/s or m/s
    sites_m: dict[str, np.ndarray] = field(default_factory=dict)   # world positions of named sites


@dataclass(frozen=True)
class ResetSample:
    """Where an episode starts and what it aims for."""

    joint_positions_rad: np.ndarray
    object_position: float
    goal: float


@dataclass(frozen=True)
class ResetStep:
    """One step of the real robot's reset procedure, run in order by the reset node or an operator.

    kind: ``move_joints`` (go to joint_targets_rad within duration_s), ``scripted`` (run the named
    scripted motion until done or duration_s), ``measure`` (read a sensor, e.g. sample the goal from
    the measured object state), ``check`` (verify a condition, else fall through to the next step),
    ``operator`` (ask a person and wait for confirmation).
    """

    name: str
    kind: str
    description: str
    joint_targets_rad: tuple[float, ...] | None = None
    duration_s: float = 0.0
    condition: str | None = None


class ActionMapping:
    """Normalised actions <-> joint position targets inside the calibration's software limits.

    The usable range is the calibration's limits shrunk by the safety margin, so that a saturated
    action never asks the supervisor for a target it would clip. ``absolute``: -1..1 spans the range.
    ``relative``: the action is a step of at most ``safety.max_step_rad`` from the last command.
    ``velocity``: the action is a step of at most ``velocity_step_rad`` (the velocity limit times
    the control period, or ``max_step_rad`` where that is less), so that a saturated action is
    what the supervisor lets through (``relative`` asks for more on a joint whose velocity limit
    allows less than ``max_step_rad`` per period, and the supervisor clips it).
    """

    def __init__(self, calibration: RobotCalibration, mode: str, control_period_s: float) -> None:
        if mode not in ACTION_MODES:
            raise ValueError(f"action_mode {mode!r}: expected one of {ACTION_MODES}")
        margin = calibration.safety.position_margin_rad
        self.mode = mode
        self.lower_rad = calibration.lower_rad + margin
        self.upper_rad = calibration.upper_rad - margin
        self.step_rad = (velocity_step_rad(calibration, control_period_s) if mode == "velocity"
                         else np.full(calibration.n_joints, calibration.safety.max_step_rad))

    @property
    def steps_from_command(self) -> bool:
        """Whether an action is a step from the last command (relative, velocity), not a target."""
        return self.mode != "absolute"

    def to_targets(self, action: np.ndarray, current_targets_rad: np.ndarray) -> np.ndarray:
        action = np.clip(np.asarray(action, dtype=np.float64), -1.0, 1.0)
        if self.mode == "absolute":
            return self.lower_rad + 0.5 * (action + 1.0) * (self.upper_rad - self.lower_rad)
        targets = np.asarray(current_targets_rad, dtype=np.float64) + action * self.step_rad
        return np.clip(targets, self.lower_rad, self.upper_rad)

    def to_action(self, targets_rad: np.ndarray, current_targets_rad: np.ndarray) -> np.ndarray:
        """The action that asks for ``targets_rad`` (clipped to what one action can express)."""
        targets = np.asarray(targets_rad, dtype=np.float64)
        if self.mode == "absolute":
            action = 2.0 * (targets - self.lower_rad) / (self.upper_rad - self.lower_rad) - 1.0
        else:
            action = (targets - np.asarray(current_targets_rad)) / self.step_rad
        return np.clip(action, -1.0, 1.0).astype(np.float32)


def velocity_step_rad(calibration: RobotCalibration, control_period_s: float) -> np.ndarray:
    """Per joint, the most a target may move in one control period that neither the supervisor's
    velocity limit nor its step limit clips: min(velocity limit * period, max_step_rad)."""
    return np.minimum(calibration.velocity_limit_rad_s * control_period_s,
                      calibration.safety.max_step_rad)


class Task(abc.ABC):
    """A task: observation layout, reward, success, action mapping and reset distribution.

    A subclass names itself (``name``, as registered in robot_rl.registry) and its config
    dataclass (``config_class``: at least ``action_mode``, ``control_period_s``,
    ``episode_length_steps``, ``reward``, ``terminate_on_success``)."""

    name: ClassVar[str]
    config_class: ClassVar[type]
    config: Any
    required_sites: tuple[str, ...] = ()
    # where a pixel task's object is in its camera's frame (fractions x0, y0, x1, y1)
    default_crop: tuple[float, float, float, float] = FULL_FRAME
    # the action modes the config class defaulted to before today's default: a checkpoint saved
    # before checkpoints named their mode trained on one of them or on today's, unknowable which
    former_default_action_modes: ClassVar[tuple[str, ...]] = ()

    def __init__(self, calibration: RobotCalibration, config: Any = None) -> None:
        self.calibration = calibration
        self.config = self.make_config(calibration, config)
        self.actions = ActionMapping(calibration, self.config.action_mode,
                                     self.config.control_period_s)
        self.layout = self.observation_layout()

    @property
    def unnamed_action_mode(self) -> str | None:
        """The action mode of a checkpoint of this task that names none (saved before checkpoints
        recorded it, so trained on the task's default on its robot, as this task has it): None
        where the default has changed since (``former_default_action_modes``)."""
        return None if self.former_default_action_modes else self.config.action_mode

    @classmethod
    def make_config(cls, calibration: RobotCalibration,
                    overrides: Any | Mapping[str, Any] | None = None) -> Any:
        """The task's config on this robot: the config class's defaults, then the robot's
        settings for the task (its calibration's ``tasks.<name>.config``: a pose or a site name
        only the robot knows), then ``overrides`` (a mapping, e.g. a pipeline config's
        ``env_kwargs: {config: ...}``, named so in errors). A config instance is taken as it is."""
        if isinstance(overrides, cls.config_class):
            return overrides
        robot = calibration.task_settings(cls.name).config
        config = from_dict(cls.config_class, robot, source=calibration.where,
                           prefix=f"tasks.{cls.name}.config")
        if overrides:
            config = from_dict(cls.config_class, {**robot, **overrides},
                               source="env_kwargs", prefix="config")
        return config

    def scene_path(self) -> Any:
        """The twin's world for this task on this robot (the calibration's
        ``tasks.<name>.scene``, else its model)."""
        return self.calibration.scene_path(self.name)

    @property
    def observation_mode(self) -> str:
        """``state`` or ``pixels`` (the config's ``observation``)."""
        return getattr(self.config, "observation", "state")

    @property
    def uses_pixels(self) -> bool:
        return self.observation_mode == "pixels"

    @property
    def image(self) -> ImageObservationConfig | None:
        """The camera view a pixel task's policy sees (its crop resolved: the config's, else
        ``default_crop``); None for a state task."""
        return self.pixel_view() if self.uses_pixels else None

    def pixel_view(self) -> ImageObservationConfig:
        """The config's camera view with its crop resolved, whatever the observation mode (a
        camera node publishes it for the pixel variant of a task)."""
        view = self.config.image
        return view if view.crop is not None else dataclasses.replace(view,
                                                                      crop=self.default_crop)

    def with_observation(self, mode: str) -> Task:
        """This task with ``observation: mode`` (``state`` or ``pixels``)."""
        if mode not in OBSERVATIONS:
            raise ValueError(f"observation {mode!r}: expected one of {OBSERVATIONS}")
        if mode == self.observation_mode:
            return self
        return type(self)(self.calibration, dataclasses.replace(self.config, observation=mode))

    def state_variant(self) -> Task:
        """This task with the state observation: what a scripted expert reads, and what a
        state-based baseline trains on (the same robot, reward, success and resets)."""
        return self.with_observation("state")

    @property
    def n_joints(self) -> int:
        return self.calibration.n_joints

    @property
    def observation_size(self) -> int:
        return max(s.stop for s in self.layout.values())

    @property
    def control_period_s(self) -> float:
        return self.config.control_period_s

    @property
    def episode_length_steps(self) -> int:
        return self.config.episode_length_steps

    def action_to_targets(self, action: np.ndarray, current_targets_rad: np.ndarray) -> np.ndarray:
        return self.actions.to_targets(action, current_targets_rad)

    def targets_to_action(self, targets_rad: np.ndarray,
                          current_targets_rad: np.ndarray) -> np.ndarray:
        return self.actions.to_action(targets_rad, current_targets_rad)

    def reward(self, state: TaskState, goal: float) -> float:
        """Sparse: 0 on success, -1 otherwise (AWAC's convention); dense: a shaped option."""
        if self.config.reward == "sparse":
            return 0.0 if self.is_success(state, goal) else -1.0
        return self.dense_reward(state, goal)

    def field(self, observation: np.ndarray, name: str) -> np.ndarray:
        """One named slice of an observation (or of a batch of them, last axis)."""
        return np.asarray(observation)[..., self.layout[name]]

    def observation_layout(self) -> dict[str, slice]:
        """The named slices of the policy's observation vector."""
        return self.proprio_layout() if self.uses_pixels else self.state_layout()

    def observation(self, state: TaskState, goal: float,
                    previous_action: np.ndarray) -> np.ndarray:
        """The policy's observation vector (float32, ``layout``): a pixel task's reads no object
        state (its camera view comes separately), a state task's is its own layout."""
        if self.uses_pixels:
            return self.proprio_observation(state, goal, previous_action)
        return self.state_observation(state, goal, previous_action)

    def proprio_layout(self) -> dict[str, slice]:
        n = self.n_joints
        return layout_from_sizes([("joint_position_rad", n), ("joint_velocity_rad_s", n),
                                  ("previous_action", n), *self.goal_layout()])

    def proprio_observation(self, state: TaskState, goal: float,
                            previous_action: np.ndarray) -> np.ndarray:
        """Joints, previous action and goal: what the robot measures of itself and what it was
        asked to do. Reads neither the object's state nor any site (sites derive from it)."""
        return np.concatenate([state.joint_positions_rad, state.joint_velocities_rad_s,
                               np.asarray(previous_action, np.float64),
                               self.goal_features(goal)]).astype(np.float32)

    # Not abstract: a task (a plugin's too) may instead override observation_layout() and
    # observation() themselves, as before pixel observations; it then observes state only.
    def state_layout(self) -> dict[str, slice]:
        raise NotImplementedError(f"task {self.name}: define state_layout() and "
                                  "state_observation(), or observation_layout() and observation()")

    def state_observation(self, state: TaskState, goal: float,
                          previous_action: np.ndarray) -> np.ndarray:
        raise NotImplementedError(f"task {self.name}: define state_layout() and "
                                  "state_observation(), or observation_layout() and observation()")

    def goal_layout(self) -> list[tuple[str, int]]:
        """The goal's features in a pixel task's observation: (name, size) in order."""
        raise NotImplementedError(f"task {self.name}: define goal_layout() and goal_features() "
                                  "to observe pixels (observation: pixels)")

    def goal_features(self, goal: float) -> np.ndarray:
        raise NotImplementedError(f"task {self.name}: define goal_layout() and goal_features() "
                                  "to observe pixels (observation: pixels)")

    @abc.abstractmethod
    def is_success(self, state: TaskState, goal: float) -> bool: ...

    @abc.abstractmethod
    def dense_reward(self, state: TaskState, goal: float) -> float: ...

    @abc.abstractmethod
    def sample_reset(self, rng: np.random.Generator) -> ResetSample: ...

    @abc.abstractmethod
    def real_reset_procedure(self) -> list[ResetStep]: ...


def layout_from_sizes(sizes: list[tuple[str, int]]) -> dict[str, slice]:
    """Consecutive named slices, in order."""
    layout, start = {}, 0
    for name, size in sizes:
        layout[name] = slice(start, start + size)
        start += size
    return layout


def wrap_angle(angle_rad: float | np.ndarray) -> float | np.ndarray:
    """Into [-pi, pi)."""
    return (np.asarray(angle_rad) + np.pi) % (2.0 * np.pi) - np.pi
