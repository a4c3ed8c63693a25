"""Drawer opening with a six-joint arm and a hook: hook the handle and pull the drawer open.

Observation (float32, named slices in ``DrawerTask.layout``):
``joint_position_rad`` (6), ``joint_velocity_rad_s`` (6), ``opening_m`` (1), ``opening_velocity_m_s``
(1), ``goal_error_m`` (1: goal opening - opening), ``ee_position_m`` (3: the hook tip, world frame),
``handle_from_ee_m`` (3: handle - hook tip), ``previous_action`` (6).
On the real robot the hook tip comes from forward kinematics and the handle from the drawer's
measured opening and the cabinet's calibrated pose.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from robot_rl.robot_config import RobotCalibration
from robot_rl.tasks.base import (
    ACTION_MODES,
    REWARDS,
    ResetSample,
    ResetStep,
    Task,
    TaskState,
    layout_from_sizes,
)

EE_SITE, HANDLE_SITE = "ee_site", "handle_site"


@dataclass(frozen=True)
class DrawerTaskConfig:
    control_period_s: float = field(default=0.05, metadata={"range": (0.005, 1.0)})
    episode_length_steps: int = field(default=80, metadata={"range": (1, 10_000)})
    goal_opening_m: float = field(default=0.15, metadata={
        "range": (0.01, 0.25), "help": "success once the drawer is open this far"})
    reward: str = field(default="sparse", metadata={"choices": REWARDS})
    action_mode: str = field(default="absolute", metadata={
        "choices": ACTION_MODES, "help": "absolute: a target in each joint's range; relative, "
                                         "velocity: a step from the last gated target (see the "
                                         "valve task)"})
    terminate_on_success: bool = True
    home_rad: tuple[float, ...] = field(default=(), metadata={
        "range": (-3.0, 3.0), "help": "arm pose at reset (calibration order): hook above the "
                                      "table, in front of the drawer; a pose of one robot, so "
                                      "its calibration gives it (tasks.drawer.config.home_rad)"})
    start_noise_rad: float = field(default=0.1, metadata={
        "range": (0.0, 0.5), "help": "uniform noise on every joint of the home pose at reset"})


class DrawerTask(Task):
    """Needs of the robot: a hook-tip site ``ee_site`` whose frame is the world's when the hook
    points down with its bar along +x (the scripted expert holds that orientation), a scene with
    the drawer (slide joint) and ``handle_site``, and a home pose (tasks.drawer.config.home_rad)."""

    name = "drawer"
    config_class = DrawerTaskConfig
    required_sites = (EE_SITE, HANDLE_SITE)

    def __init__(self, calibration: RobotCalibration,
                 config: DrawerTaskConfig | dict | None = None) -> None:
        super().__init__(calibration, config)
        if len(self.config.home_rad) != self.n_joints:
            raise ValueError(f"{calibration.where}: tasks.drawer.config.home_rad: expected "
                             f"{self.n_joints} values ({', '.join(calibration.joint_names)}), "
                             f"got {len(self.config.home_rad)} (the drawer task starts each "
                             "episode there)")

    def observation_layout(self) -> dict[str, slice]:
        n = self.n_joints
        return layout_from_sizes([
            ("joint_position_rad", n), ("joint_velocity_rad_s", n), ("opening_m", 1),
            ("opening_velocity_m_s", 1), ("goal_error_m", 1), ("ee_position_m", 3),
            ("handle_from_ee_m", 3), ("previous_action", n)])

    def observation(self, state: TaskState, goal: float,
                    previous_action: np.ndarray) -> np.ndarray:
        ee, handle = state.sites_m[EE_SITE], state.sites_m[HANDLE_SITE]
        return np.concatenate([
            state.joint_positions_rad, state.joint_velocities_rad_s,
            [state.object_position, state.object_velocity, goal - state.object_position],
            ee, handle - ee, previous_action]).astype(np.float32)

    def is_success(self, state: TaskState, goal: float) -> bool:
        return state.object_position >= goal

    def dense_reward(self, state: TaskState, goal: float) -> float:
        """Reach the handle, then open: in [-1, 0], 0 at success."""
        if self.is_success(state, goal):
            return 0.0
        reach = float(np.linalg.norm(state.sites_m[HANDLE_SITE] - state.sites_m[EE_SITE]))
        progress = np.clip(state.object_position / goal, 0.0, 1.0)
        return float(-0.5 * min(reach / 0.3, 1.0) - 0.5 * (1.0 - progress))

    def sample_reset(self, rng: np.random.Generator) -> ResetSample:
        noise = rng.uniform(-1.0, 1.0, self.n_joints) * self.config.start_noise_rad
        joints = np.clip(np.asarray(self.config.home_rad) + noise, self.actions.lower_rad,
                         self.actions.upper_rad)
        return ResetSample(joint_positions_rad=joints, object_position=0.0,
                           goal=self.config.goal_opening_m)

    def real_reset_procedure(self) -> list[ResetStep]:
        home = tuple(float(v) for v in self.config.home_rad)
        return [
            ResetStep("unhook", "scripted", "raise the hook 8 cm straight up, out of the handle",
                      duration_s=1.5),
            ResetStep("push_closed", "scripted",
                      "put the hook's back against the drawer face beside the handle and push "
                      "toward the cabinet until the opening reads under 5 mm or 3 s pass",
                      duration_s=3.0),
            ResetStep("check_closed", "check", "the drawer reads closed",
                      condition="object_position < 0.005"),
            ResetStep("operator_close", "operator",
                      "only if the check failed: ask the operator to close the drawer and confirm",
                      condition="previous check failed"),
            ResetStep("home", "move_joints", "back off to the home pose, then add the random "
                      "start offset (start_noise_rad)", home, 2.0),
        ]
