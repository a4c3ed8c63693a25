"""Valve turning with a three-finger D'Claw-class hand: turn the valve to a goal angle.

Observation (float32, named slices in ``ValveTask.layout``):
``joint_position_rad`` (9), ``joint_velocity_rad_s`` (9), ``valve_cos_sin`` (2),
``valve_velocity_rad_s`` (1), ``error_cos_sin`` (2: cos/sin of goal - angle), ``previous_action`` (9),
``spoke_cos_sin`` (2: cos/sin of spoke_count * angle), ``fingertip_position_m`` (9: the three
tips, m, in the valve's frame), ``fingertip_spoke_cos_sin`` (6: per tip, cos/sin of spoke_count * (tip's
angle about the valve axis - valve angle)).

Why the spoke and fingertip features: the valve looks the same every 2*pi/spoke_count, and what
the fingers must do depends on where their tips are relative to the nearest spoke. From the angle's
cos/sin and the joint angles alone, a network must learn a function three times as fast in the
angle and the fingers' forward kinematics. Behaviour cloning of the scripted expert on 50
demonstrations succeeded in 0.28 of episodes without these features and in 0.64 with them (3
seeds, bench/observation_ablation.py; docs/results.md). On the graph the tips come from forward
kinematics on the calibration's model (agent.sites.task_sites), as the drawer's hook tip does.

With ``observation: pixels`` the policy reads ``joint_position_rad`` (9), ``joint_velocity_rad_s``
(9), ``previous_action`` (9) and ``goal_cos_sin`` (2: cos/sin of the goal angle, in the valve's
frame) beside the camera view (``image``). Why the goal as cos/sin of its absolute angle: the goal
is the one input no sensor measures (the task draws it), the image shows where the valve stands
(the red spoke breaks the spokes' symmetry), and the network can compare the two; cos/sin has no
jump at +-pi. An error (goal - angle), as the state layout has, would need the valve's angle,
which a pixel task does not read.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from robot_rl.robot_config import RobotCalibration
from robot_rl.tasks.base import (
    ACTION_MODES,
    OBSERVATIONS,
    REWARDS,
    ResetSample,
    ResetStep,
    Task,
    TaskState,
    layout_from_sizes,
    wrap_angle,
)
from robot_rl.tasks.camera import ImageObservationConfig

# The twin camera's 640x480 frame around the valve: a 400x400 square centred on its hub, so the
# spokes and the fingertips at home (0.14 m out) are in view and little else is.
VALVE_CROP = (0.1875, 0.0833, 0.8125, 0.9167)


@dataclass(frozen=True)
class ValveTaskConfig:
    control_period_s: float = field(default=0.05, metadata={
        "range": (0.005, 1.0), "help": "one action per period (20 Hz)"})
    episode_length_steps: int = field(default=60, metadata={"range": (1, 10_000)})
    start_angle_range_rad: tuple[float, float] = field(default=(-math.pi, math.pi), metadata={
        "range": (-2 * math.pi, 2 * math.pi), "help": "the valve's start angle, uniform"})
    goal_offset_range_rad: tuple[float, float] = field(default=(0.5, 1.57), metadata={
        "range": (0.0, math.pi),
        "help": "|goal - start|, uniform in this range, either direction"})
    success_tolerance_rad: float = field(default=0.15, metadata={"range": (0.001, 1.0)})
    reward: str = field(default="sparse", metadata={"choices": REWARDS})
    action_mode: str = field(default="velocity", metadata={
        "choices": ACTION_MODES,
        "help": "velocity: a step of up to the velocity limit times the control period (what the "
                "supervisor passes); relative: a step of up to safety.max_step_rad from the last "
                "gated target; absolute: a target, which the supervisor rate-limits into a "
                "fixed-size step toward it. Velocity is the default by measurement: with the "
                "offline-to-online toolkit it reached 90% in 4 of 5 seeds within 10000 online "
                "steps, relative in 1 of 5, whose commands the supervisor clipped 91-95% of the "
                "time against 19-32% (docs/results.md)"})
    terminate_on_success: bool = field(default=True, metadata={
        "help": "end the episode at success (the critic bootstraps nothing past it)"})
    finger_home_rad: tuple[float, float, float] = field(default=(0.0, -0.27, -0.97), metadata={
        "range": (-1.5, 1.5), "help": "(base, mid, tip) of every finger at reset: tips out "
                                      "beyond the spokes, at spoke height"})
    home_noise_rad: float = field(default=0.05, metadata={
        "range": (0.0, 0.5), "help": "uniform noise on the home pose at reset"})
    spoke_count: int = field(default=3, metadata={
        "range": (1, 12), "help": "the valve's evenly spaced spokes: the spoke features repeat "
                                  "every 2*pi/spoke_count of valve angle"})
    observation: str = field(default="state", metadata={
        "choices": OBSERVATIONS,
        "help": "state: the layout above (valve angle, fingertip features); pixels: joints, "
                "previous action and goal beside the camera view `image`, no valve state"})
    image: ImageObservationConfig = field(
        default_factory=ImageObservationConfig, metadata={
            "help": "the camera view of observation: pixels"})
    fingertip_sites: tuple[str, ...] = field(default=("f0_tip_site", "f1_tip_site", "f2_tip_site"),
                                             metadata={
        "help": "one model site per finger, in a frame centred on the valve's axis (z along it)"})


class ValveTask(Task):
    name = "valve"
    default_crop = VALVE_CROP
    config_class = ValveTaskConfig
    former_default_action_modes = ("absolute", "relative")  # relative until 2026-12-06

    def __init__(self, calibration: RobotCalibration,
                 config: ValveTaskConfig | dict | None = None) -> None:
        super().__init__(calibration, config)
        if self.n_joints % 3:
            raise ValueError(f"robot {calibration.robot}: the valve task needs joints in groups of 3 "
                             f"(base, mid, tip per finger), got {self.n_joints}")
        self.home_rad = np.tile(self.config.finger_home_rad, self.n_joints // 3)
        self.required_sites = tuple(self.config.fingertip_sites)

    def state_layout(self) -> dict[str, slice]:
        n, tips = self.n_joints, len(self.config.fingertip_sites)
        return layout_from_sizes([
            ("joint_position_rad", n), ("joint_velocity_rad_s", n), ("valve_cos_sin", 2),
            ("valve_velocity_rad_s", 1), ("error_cos_sin", 2), ("previous_action", n),
            ("spoke_cos_sin", 2), ("fingertip_position_m", 3 * tips),
            ("fingertip_spoke_cos_sin", 2 * tips)])

    def state_observation(self, state: TaskState, goal: float,
                          previous_action: np.ndarray) -> np.ndarray:
        angle = state.object_position
        error = goal - angle
        spokes = self.config.spoke_count
        missing = [name for name in self.config.fingertip_sites if name not in state.sites_m]
        if missing:
            raise KeyError(f"valve task: the state lacks fingertip sites {missing} "
                           "(ValveTaskConfig.fingertip_sites; on the graph "
                           "agent.sites.task_sites computes them)")
        tips = np.stack([state.sites_m[name] for name in self.config.fingertip_sites])
        tip_from_spoke = spokes * (np.arctan2(tips[:, 1], tips[:, 0]) - angle)
        return np.concatenate([
            state.joint_positions_rad, state.joint_velocities_rad_s,
            [math.cos(angle), math.sin(angle)], [state.object_velocity],
            [math.cos(error), math.sin(error)], previous_action,
            [math.cos(spokes * angle), math.sin(spokes * angle)], tips.ravel(),
            np.stack([np.cos(tip_from_spoke), np.sin(tip_from_spoke)], axis=1).ravel(),
        ]).astype(np.float32)

    def goal_layout(self) -> list[tuple[str, int]]:
        return [("goal_cos_sin", 2)]

    def goal_features(self, goal: float) -> np.ndarray:
        return np.array([math.cos(goal), math.sin(goal)])

    def angle_error(self, state: TaskState, goal: float) -> float:
        """goal - angle, wrapped into [-pi, pi)."""
        return float(wrap_angle(goal - state.object_position))

    def is_success(self, state: TaskState, goal: float) -> bool:
        return abs(self.angle_error(state, goal)) < self.config.success_tolerance_rad

    def dense_reward(self, state: TaskState, goal: float) -> float:
        """-|angle error| / pi in [-1, 0], 0 within the tolerance: same scale as the sparse reward."""
        if self.is_success(state, goal):
            return 0.0
        return -abs(self.angle_error(state, goal)) / math.pi

    def sample_reset(self, rng: np.random.Generator) -> ResetSample:
        lo, hi = self.config.start_angle_range_rad
        start = float(rng.uniform(lo, hi))
        offset = float(rng.uniform(*self.config.goal_offset_range_rad)) * rng.choice((-1.0, 1.0))
        noise = rng.uniform(-1.0, 1.0, self.n_joints) * self.config.home_noise_rad
        joints = np.clip(self.home_rad + noise, self.actions.lower_rad, self.actions.upper_rad)
        return ResetSample(joint_positions_rad=joints, object_position=start,
                           goal=float(wrap_angle(start + offset)))

    def real_reset_procedure(self) -> list[ResetStep]:
        """The real valve needs no turning back: the goal is drawn relative to where it stands."""
        home = tuple(float(v) for v in self.home_rad)
        lifted = tuple(float(v) for v in np.tile((0.0, -0.5, -1.0), self.n_joints // 3))
        return [
            ResetStep("open_fingers", "move_joints",
                      "flex the fingers outward and up, clear of the spokes", lifted, 1.0),
            ResetStep("wait_still", "check", "wait until the valve encoder reads under 0.05 rad/s",
                      duration_s=2.0, condition="abs(object_velocity) < 0.05"),
            ResetStep("home", "move_joints", "move every finger to the home pose above the valve",
                      home, 1.0),
            ResetStep("sample_goal", "measure",
                      "read the valve angle and draw the goal at a random offset in "
                      "goal_offset_range_rad from it", duration_s=0.1),
            ResetStep("operator_if_stuck", "operator",
                      "only if the valve did not settle or a finger reports an error: ask the "
                      "operator to free the valve and confirm", condition="previous check failed"),
        ]
