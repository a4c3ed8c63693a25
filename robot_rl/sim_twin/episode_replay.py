"""Replaying a recorded episode in the twin: frames, or a video file (``robot-rl dataset replay``).

Sources (``source``; ``auto`` takes the first that the episode can feed, in this order):

- ``state``: kinematic replay of the recorder's ``joint_position_rad`` and ``object_position``.
  Each frame puts the twin exactly at the recorded state (no physics, so no drift).
- ``observation``: kinematic replay from the task observation of the pipeline's datasets: joint
  positions and the object (valve angle from its cos/sin, drawer opening) read through the task's
  layout. One frame per observation, plus the episode's last ``next_observation`` when stored.
  A pixel task's episodes are read by their ``state_observation`` (its vector has no object).
- ``actions``: dynamic replay. The task's environment is reset with the episode's recorded seed
  and the recorded actions go through the safety gate, as the pipeline recorded them. Physics,
  so it reproduces the episode only where the environment is the one that recorded it (same env
  kwargs, same MuJoCo); ``Replay.max_observation_error`` says how close it came.
- ``frames``: the recorded camera view itself (a pixel task's ``camera_color``, what its policy
  saw), each frame enlarged by the largest whole factor that fits the requested size (nearest
  pixel, so the video shows the pixels the network read); no twin. Never picked by ``auto``.

The plan (which source, which arrays) is made from the dataset alone; rendering needs the twin.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from robot_rl.agent.tasks import make_task
from robot_rl.data.errors import DatasetError
from robot_rl.data.store import EpisodeStore
from robot_rl.data.transition_arrays import UNNAMED_ACTION_MODE, store_action_mode
from robot_rl.data.video import VideoInfo, VideoWriter
from robot_rl.registry import registered_tasks, task_spec
from robot_rl.robot_config import RobotCalibration, load_robot
from robot_rl.sim_twin.twin import Twin
from robot_rl.tasks.base import Task

SOURCES = ("auto", "state", "observation", "actions", "frames")
KINEMATIC = ("state", "observation")
AUTO = ("state", "observation", "actions")
DEFAULT_CONTROL_PERIOD_S = 0.05
DESCRIPTIONS = {
    "state": "kinematic replay of the recorded joint_position_rad and object_position",
    "observation": "kinematic replay of the joint positions and object in the task observation",
    "actions": "dynamic replay: the recorded actions stepped from the recorded seed",
    "frames": "the recorded camera view (camera_color), enlarged",
}


@dataclass(frozen=True)
class ReplayPlan:
    """What to show: twin states per frame (kinematic) or actions from a seed (dynamic)."""

    dataset: Path
    episode: int
    source: str
    calibration: RobotCalibration
    task: str                                    # '' when the dataset names no known task
    control_period_s: float
    joint_positions_rad: np.ndarray | None = None   # (frames, joints), kinematic
    object_positions: np.ndarray | None = None      # (frames,), kinematic
    actions: np.ndarray | None = None               # (steps, joints), dynamic
    seed: int | None = None                         # dynamic
    env_id: str = ""                                # dynamic
    observations: np.ndarray | None = None          # recorded states, for the dynamic check
    action_mode: str = UNNAMED_ACTION_MODE          # dynamic: how the dataset's actions read
    camera_frames: np.ndarray | None = None         # frames: (steps, H, W, 3) uint8

    @property
    def n_frames(self) -> int:
        if self.source in KINEMATIC:
            assert self.joint_positions_rad is not None
            return len(self.joint_positions_rad)
        if self.source == "frames":
            assert self.camera_frames is not None
            return len(self.camera_frames)
        assert self.actions is not None
        return len(self.actions) + 1

    def describe(self) -> str:
        return DESCRIPTIONS[self.source]


def plan_replay(dataset: str | os.PathLike[str] | EpisodeStore, episode: int,
                source: str = "auto") -> ReplayPlan:
    """Reads episode ``episode`` (negative counts from the end) and picks how to replay it."""
    if source not in SOURCES:
        raise ValueError(f"replay source {source!r}: expected one of {SOURCES}")
    store = dataset if isinstance(dataset, EpisodeStore) else EpisodeStore.open(dataset, "r")
    path = store.path
    n = store.n_episodes
    if not -n <= episode < n:
        raise DatasetError(path, f"episode {episode} does not exist: the dataset has {n} "
                                 f"episode(s), indices 0..{n - 1} (or -{n}..-1)")
    episode %= n
    attrs = store.attrs
    calibration = _calibration(path, str(attrs.get("robot", "")))
    task_name = _task_name(str(attrs.get("task", "")))
    task = make_task(task_name, calibration) if task_name else None
    steps = store.episode(episode)
    info = store.episode_info(episode)
    builders = {"state": _plan_state, "observation": _plan_observation,
                "actions": _plan_actions, "frames": _plan_frames}
    why_not: dict[str, str] = {}
    for name in AUTO if source == "auto" else (source,):
        fields_or_reason = builders[name](steps, info, calibration, task, str(attrs.get("task")))
        if isinstance(fields_or_reason, str):
            why_not[name] = fields_or_reason
            continue
        period = _control_period_s(steps, task)
        return ReplayPlan(dataset=path, episode=episode, source=name, calibration=calibration,
                          task=task_name, control_period_s=period,
                          action_mode=store_action_mode(store),
                          **fields_or_reason)
    reasons = "; ".join(f"{name}: {why}" for name, why in why_not.items())
    raise DatasetError(path, f"episode {episode} cannot be replayed ({reasons}); the episode "
                             f"has keys {sorted(steps)} and info keys {sorted(info)}")


def _calibration(path: Path, robot: str) -> RobotCalibration:
    if not robot:
        raise DatasetError(path, "attribute 'robot' is missing: the twin needs the robot's "
                                 "calibration to replay")
    try:
        return load_robot(robot)
    except (OSError, ValueError, KeyError) as err:
        raise DatasetError(path, f"attribute robot {robot!r}: no calibration to build the twin "
                                 f"from ({err})") from err


def _task_name(task_attr: str) -> str:
    """'valve' and 'robot_rl/ValveTurn-v0' both name the valve task; 'raw' names none."""
    try:
        return task_spec(task_attr).name if task_attr else ""
    except ValueError:
        return ""


def _env_id(task_attr: str, task: Task | None) -> str:
    return task_spec(task.name).env_id if task is not None else ""


def _plan_state(steps: dict[str, np.ndarray], info: dict, calibration: RobotCalibration,
                task: Task | None, task_attr: str) -> dict[str, Any] | str:
    missing = [k for k in ("joint_position_rad", "object_position") if k not in steps]
    if missing:
        return f"needs recorder keys {missing}"
    joints = np.asarray(steps["joint_position_rad"], dtype=np.float64)
    objects = np.asarray(steps["object_position"], dtype=np.float64).reshape(len(joints), -1)
    if joints.ndim != 2 or joints.shape[1] != calibration.n_joints or objects.shape[1] != 1:
        return (f"joint_position_rad is {joints.shape[1:]} per step, expected "
                f"({calibration.n_joints},) for robot {calibration.robot}, and object_position "
                f"{objects.shape[1:]}, expected (1,)")
    return _kinematic(joints, objects[:, 0])


def _plan_observation(steps: dict[str, np.ndarray], info: dict, calibration: RobotCalibration,
                      task: Task | None, task_attr: str) -> dict[str, Any] | str:
    if task is None:
        return f"the dataset's task {task_attr!r} has no known observation layout"
    if "observation" not in steps:
        return f"needs key 'observation' (the {task.name} task's layout)"
    obs = _observations(steps)
    if obs.shape[1:] != (task.observation_size,) and "state_observation" in steps:
        obs = _observations(steps, "state_observation")  # a pixel task's episode
    if obs.ndim != 2 or obs.shape[1] != task.observation_size:
        return (f"observation has {obs.shape[1:]} values per step, the {task.name} task's "
                f"layout has ({task.observation_size},)")
    try:
        objects = object_from_observation(task, obs)
    except ValueError as err:
        return str(err)
    return _kinematic(task.field(obs, "joint_position_rad").astype(np.float64), objects)


def _plan_actions(steps: dict[str, np.ndarray], info: dict, calibration: RobotCalibration,
                  task: Task | None, task_attr: str) -> dict[str, Any] | str:
    env_id = _env_id(task_attr, task)
    problems = []
    if "action" not in steps:
        problems.append("key 'action'")
    if not isinstance(info.get("seed"), int):
        problems.append("an integer 'seed' in the episode info")
    if not env_id:
        problems.append(f"a task with an environment (task {task_attr!r}; known "
                        f"{sorted(s.env_id for s in registered_tasks().values())})")
    if problems:
        return "needs " + ", ".join(problems)
    actions = np.asarray(steps["action"], dtype=np.float32)
    if actions.ndim != 2 or actions.shape[1] != calibration.n_joints:
        return (f"action is {actions.shape[1:]} per step, expected ({calibration.n_joints},) "
                f"for robot {calibration.robot}")
    key = "state_observation" if "state_observation" in steps else "observation"
    observations = _observations(steps, key) if key in steps else None
    return {"actions": actions, "seed": int(info["seed"]), "env_id": env_id,
            "observations": observations}


def _plan_frames(steps: dict[str, np.ndarray], info: dict, calibration: RobotCalibration,
                 task: Task | None, task_attr: str) -> dict[str, Any] | str:
    frames = np.asarray(steps.get("camera_color", np.zeros((0,))))
    if "camera_color" not in steps:
        return "needs key 'camera_color' (a pixel task's camera view)"
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        return f"camera_color is {frames.dtype}{list(frames.shape[1:])}, expected uint8[H, W, 3]"
    return {"camera_frames": frames}


def _kinematic(joints: np.ndarray, objects: np.ndarray) -> dict[str, Any] | str:
    bad = ~(np.isfinite(joints).all(axis=1) & np.isfinite(objects))
    if bad.any():
        return f"non-finite state at step(s) {np.flatnonzero(bad)[:10].tolist()}"
    return {"joint_positions_rad": joints, "object_positions": objects.astype(np.float64)}


def _observations(steps: dict[str, np.ndarray], key: str = "observation") -> np.ndarray:
    """The episode's states: every observation, then the last next one if stored."""
    obs = np.asarray(steps[key])
    if f"next_{key}" in steps and len(obs):
        obs = np.concatenate([obs, np.asarray(steps[f"next_{key}"])[-1:]])
    return obs


def object_from_observation(task: Task, observations: np.ndarray) -> np.ndarray:
    """The object's joint position (valve angle, rad; drawer opening, m) per observation."""
    layout = task.layout
    if "valve_cos_sin" in layout:
        cos_sin = task.field(observations, "valve_cos_sin").astype(np.float64)
        return np.arctan2(cos_sin[..., 1], cos_sin[..., 0])
    if "opening_m" in layout:
        return task.field(observations, "opening_m")[..., 0].astype(np.float64)
    raise ValueError(f"the {task.name} task's observation layout {sorted(layout)} holds no "
                     "object position (valve_cos_sin or opening_m)")


def _control_period_s(steps: dict[str, np.ndarray], task: Task | None) -> float:
    stamps = np.asarray(steps.get("stamp_s", ()), dtype=np.float64).ravel()
    if stamps.size >= 2:
        period = float(np.median(np.diff(stamps)))
        if math.isfinite(period) and period > 0:
            return period
    return task.control_period_s if task is not None else DEFAULT_CONTROL_PERIOD_S


class Replay:
    """Frames of one plan; after ``frames()`` is exhausted, ``max_observation_error`` holds the
    largest |replayed - recorded| observation value of a dynamic replay (None otherwise)."""

    def __init__(self, plan: ReplayPlan, *, width: int = 640, height: int = 480,
                 camera: str = "realsense") -> None:
        if not (16 <= width <= 4096 and 16 <= height <= 4096):
            raise ValueError(f"replay: width and height must be in [16, 4096] px, got "
                             f"{width}x{height}")
        self.plan, self.width, self.height, self.camera = plan, width, height, camera
        self.max_observation_error: float | None = None

    def frames(self) -> Iterator[np.ndarray]:
        if self.plan.source in KINEMATIC:
            yield from self._kinematic_frames()
        elif self.plan.source == "frames":
            yield from self._recorded_frames()
        else:
            yield from self._dynamic_frames()

    def _recorded_frames(self) -> Iterator[np.ndarray]:
        frames = self.plan.camera_frames
        assert frames is not None
        height, width = frames.shape[1:3]
        scale = max(1, min(self.width // width, self.height // height))
        for frame in frames:
            yield np.repeat(np.repeat(frame, scale, axis=0), scale, axis=1)

    def _kinematic_frames(self) -> Iterator[np.ndarray]:
        plan = self.plan
        assert plan.joint_positions_rad is not None and plan.object_positions is not None
        twin = Twin(plan.calibration, task=plan.task or None)
        try:
            _check_camera(twin, self.camera)
            for joints, obj in zip(plan.joint_positions_rad, plan.object_positions):
                twin.reset(joints, float(obj))  # at rest at the recorded state: exact, no physics
                yield twin.render(self.width, self.height, camera=self.camera)
        finally:
            twin.close()

    def _dynamic_frames(self) -> Iterator[np.ndarray]:
        import gymnasium as gym

        from robot_rl.safety.gate import SupervisorGate

        plan = self.plan
        assert plan.actions is not None
        env = gym.make(plan.env_id, config={"action_mode": plan.action_mode},
                       calibration=plan.calibration,
                       command_gate=SupervisorGate(plan.calibration))
        twin: Twin = env.unwrapped.twin
        try:
            _check_camera(twin, self.camera)
            obs, _ = env.reset(seed=plan.seed)
            replayed = [obs]
            yield twin.render(self.width, self.height, camera=self.camera)
            for action in plan.actions:
                obs, *_ = env.step(action)
                replayed.append(obs)
                yield twin.render(self.width, self.height, camera=self.camera)
            self.max_observation_error = _max_error(np.asarray(replayed), plan.observations)
        finally:
            env.close()


def _max_error(replayed: np.ndarray, recorded: np.ndarray | None) -> float | None:
    if recorded is None or recorded.shape[1:] != replayed.shape[1:]:
        return None
    n = min(len(replayed), len(recorded))
    return float(np.max(np.abs(replayed[:n] - recorded[:n]))) if n else None


def _check_camera(twin: Twin, camera: str) -> None:
    model = twin.model
    names = [model.camera(i).name for i in range(model.ncam)]
    if camera not in names:
        raise ValueError(f"camera {camera!r} is not in {twin.model_path}; its cameras: {names}")


@dataclass(frozen=True)
class ReplayResult:
    plan: ReplayPlan
    video: VideoInfo
    max_observation_error: float | None


def replay_to_video(dataset: str | os.PathLike[str], episode: int,
                    out: str | os.PathLike[str], *, fps: float | None = None, width: int = 640,
                    height: int = 480, camera: str = "realsense", source: str = "auto",
                    progress: bool = True) -> ReplayResult:
    """Replays one episode in the twin into ``out`` (.mp4 or .gif); fps defaults to the
    recording's own rate (its time stamps, else the task's control period)."""
    plan = plan_replay(dataset, episode, source)
    replay = Replay(plan, width=width, height=height, camera=camera)
    writer = VideoWriter(out, fps if fps is not None else 1.0 / plan.control_period_s)
    with writer:
        for frame in tqdm(replay.frames(), total=plan.n_frames, unit="frame",
                          desc=f"replay episode {plan.episode}", disable=not progress):
            writer.append(frame)
        video = writer.close()
    return ReplayResult(plan, video, replay.max_observation_error)
