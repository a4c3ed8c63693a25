"""Scripted experts that produce demonstrations, and ``collect`` to record their episodes.

Each expert reads the observation (plus its own phase), computes joint targets with inverse
kinematics on the twin's model, limits every joint's change per step to what the safety supervisor
lets through, and returns the normalised action for the task's action mode. ``noise_std`` adds
Gaussian noise to that action (normalised units); the noisy action is what is executed and recorded.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np

from robot_rl.registry import load_object, task_spec
from robot_rl.sim_twin.kinematics import SiteIK
from robot_rl.tasks.base import velocity_step_rad, wrap_angle


class Expert:
    """Shared plumbing: target tracking, per-step rate limit, noise, target -> action."""

    def __init__(self, env: gym.Env, noise_std: float = 0.0, seed: int | None = None) -> None:
        self.env = env.unwrapped
        # the expert reads the state layout (valve angle, fingertips) whatever the policy sees
        self.task = self.env.task.state_variant()
        self.noise_std = noise_std
        self.rng = np.random.default_rng(seed)
        cal = self.task.calibration
        self.max_change_rad = velocity_step_rad(cal, self.task.control_period_s)
        self.ik = SiteIK(self.env.twin.model, cal.joint_names)
        self._targets: np.ndarray | None = None

    def reset(self) -> None:
        self._targets = None

    def act(self, obs: np.ndarray | dict[str, np.ndarray]) -> np.ndarray:
        if self.env.task.uses_pixels:  # the policy's vector lacks the object: read the twin's
            obs = self.env.state_observation()
        elif isinstance(obs, dict):  # obs_type state+rgb: the state layout beside an image
            obs = obs["state"]
        joints = self.task.field(obs, "joint_position_rad").astype(np.float64)
        if self.task.actions.steps_from_command:
            # the action is a change of the env's commanded targets (after the gate), so plan
            # from those. Absolute actions keep the expert's own track of its requests, as every
            # absolute-action dataset in docs/results.md was recorded (changing it would change
            # those datasets)
            self._targets = self.env.commanded_targets_rad
        elif self._targets is None:
            self._targets = joints.copy()
        wanted = self.plan(obs, joints, self._targets)
        change = np.clip(wanted - self._targets, -self.max_change_rad, self.max_change_rad)
        action = self.task.targets_to_action(self._targets + change, self._targets)
        if self.noise_std > 0:
            action = action + self.rng.normal(0.0, self.noise_std, action.shape)
        action = np.clip(action, -1.0, 1.0).astype(np.float32)
        self._targets = self.task.action_to_targets(action, self._targets)
        return action

    def plan(self, obs: np.ndarray, joints: np.ndarray, targets: np.ndarray) -> np.ndarray:
        raise NotImplementedError


@dataclass(frozen=True)
class ValveExpertConfig:
    """Geometry of the finger gait, in the valve's frame (m, rad)."""

    push_radius_m: float = field(default=0.065, metadata={"range": (0.02, 0.2)})
    retract_radius_m: float = field(default=0.14, metadata={
        "range": (0.05, 0.3), "help": "beyond the spokes' ends plus the fingertip"})
    contact_height_m: float = field(default=0.053, metadata={"range": (0.0, 0.3)})
    contact_angle_rad: float = field(default=0.29, metadata={
        "range": (0.0, 1.0), "help": "(tip + spoke radius) / push radius"})
    insert_clearance_rad: float = field(default=0.2, metadata={"range": (0.0, 1.0)})
    reach_rad: float = field(default=1.2, metadata={
        "range": (0.1, 2.0), "help": "largest tip angle from a finger's own axis"})
    lead_rad: float = field(default=0.4, metadata={"range": (0.0, 1.5)})
    angular_step_rad: float = field(default=0.4, metadata={"range": (0.01, 3.0)})
    radial_step_m: float = field(default=0.03, metadata={"range": (0.001, 0.2)})
    stop_fraction: float = field(default=0.5, metadata={
        "range": (0.0, 1.0), "help": "hold still within this fraction of the success tolerance"})


class ValveExpert(Expert):
    """A three-finger gait: insert behind a spoke, push it toward the goal, retract, swing back.

    The spokes and the fingers are both 120 degrees apart, so every finger does the same thing in
    its own frame; the gait is one phase machine: swing -> insert -> push -> retract -> swing ...
    """

    def __init__(self, env: gym.Env, noise_std: float = 0.0, seed: int | None = None,
                 config: ValveExpertConfig | None = None) -> None:
        super().__init__(env, noise_std, seed)
        self.config = config or ValveExpertConfig()
        names = self.task.calibration.joint_names
        self.fingers = [names[i].split("_")[0] for i in range(0, len(names), 3)]
        self.sites = [f"{f}_tip_site" for f in self.fingers]
        model = self.env.twin.model
        self.finger_angles_rad = np.array(
            [math.atan2(*model.body(f"{f}_base_link").pos[1::-1]) for f in self.fingers])
        self.lower = self.task.actions.lower_rad
        self.upper = self.task.actions.upper_rad
        self.reset()

    def reset(self) -> None:
        super().reset()
        self.phase, self.phase_steps, self.direction = "swing", 0, 1.0
        self.spoke_offset_rad = 0.0

    def plan(self, obs: np.ndarray, joints: np.ndarray, targets: np.ndarray) -> np.ndarray:
        cfg, task = self.config, self.task
        angle = math.atan2(*task.field(obs, "valve_cos_sin")[::-1])
        cos_e, sin_e = task.field(obs, "error_cos_sin")
        error = math.atan2(sin_e, cos_e)
        if abs(error) < cfg.stop_fraction * task.config.success_tolerance_rad:
            return targets
        direction = math.copysign(1.0, error)
        if direction != self.direction and self.phase in ("push", "insert"):
            self._enter("retract")
        self.direction = direction
        tips = self.ik.forward(joints, self.sites)
        tip_radius, tip_angle = self._polar(tips)
        self.phase_steps += 1
        # angles in "push coordinates": positive is the direction the valve must turn
        spokes = direction * wrap_angle(angle - self.finger_angles_rad[0]
                                        + 2 * np.pi * np.arange(3) / 3)
        if self.phase == "swing":
            insert = self._insert_angle(spokes)
            goal = (cfg.retract_radius_m, insert)
            if np.all(np.abs(direction * tip_angle - insert) < 0.12) or self.phase_steps > 12:
                self._enter("insert")
        elif self.phase == "insert":
            goal = (cfg.push_radius_m, self._insert_angle(spokes))
            if np.all(tip_radius < cfg.push_radius_m + 0.012) or self.phase_steps > 4:
                self._enter("push")
                self.spoke_offset_rad = (self._insert_angle(spokes) + cfg.insert_clearance_rad
                                         + cfg.contact_angle_rad)
        elif self.phase == "push":
            spoke = self._pushed_spoke(spokes)
            self.spoke_offset_rad = spoke
            contact = spoke - cfg.contact_angle_rad
            goal = (cfg.push_radius_m, min(contact + min(cfg.lead_rad, abs(error)), cfg.reach_rad))
            if contact > cfg.reach_rad - 0.05:
                self._enter("retract")
        else:  # retract: straight out, then swing back
            goal = (cfg.retract_radius_m,
                    float(np.clip(np.mean(direction * tip_angle), -cfg.reach_rad, 0.9)))
            if np.all(tip_radius > cfg.retract_radius_m - 0.015) or self.phase_steps > 4:
                self._enter("swing")
        # small task-space steps keep the fingertips on the intended path (not a joint-space chord)
        radius = np.mean(tip_radius)
        radius += np.clip(goal[0] - radius, -cfg.radial_step_m, cfg.radial_step_m)
        now = np.mean(direction * tip_angle)
        angle = now + np.clip(goal[1] - now, -cfg.angular_step_rad, cfg.angular_step_rad)
        return self._solve(targets, radius, direction * angle)

    # ---- helpers ---------------------------------------------------------------------------------
    def _enter(self, phase: str) -> None:
        self.phase, self.phase_steps = phase, 0

    def _insert_angle(self, spokes: np.ndarray) -> float:
        """Behind the nearest spoke that leaves a gap within reach (push coordinates)."""
        cfg = self.config
        behind = spokes - cfg.contact_angle_rad - cfg.insert_clearance_rad
        ok = behind >= -cfg.reach_rad
        return float(np.min(behind[ok])) if np.any(ok) else float(np.max(behind))

    def _pushed_spoke(self, spokes: np.ndarray) -> float:
        """The spoke just ahead of where the fingers were inserted."""
        return float(spokes[np.argmin(np.abs(spokes - self.spoke_offset_rad))])

    def _polar(self, tips: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Fingertip radius (m) and angle (rad) about the valve axis, relative to each finger."""
        radius = np.hypot(tips[:, 0], tips[:, 1])
        angle = wrap_angle(np.arctan2(tips[:, 1], tips[:, 0]) - self.finger_angles_rad)
        return radius, angle

    def _solve(self, targets: np.ndarray, radius_m: float, angle_rad: float) -> np.ndarray:
        q = targets.copy()
        for i, site in enumerate(self.sites):
            a = self.finger_angles_rad[i] + angle_rad
            point = np.array([radius_m * math.cos(a), radius_m * math.sin(a),
                              self.config.contact_height_m])
            q = self.ik.solve(q, site, point, np.arange(3 * i, 3 * i + 3),
                              lower=self.lower, upper=self.upper, iterations=8)
        return q


@dataclass(frozen=True)
class DrawerExpertConfig:
    """Where the hook goes relative to the handle (m)."""

    behind_handle_m: float = field(default=0.021, metadata={
        "range": (0.0, 0.1), "help": "hook tip between the handle bar and the drawer face"})
    approach_height_m: float = field(default=0.08, metadata={"range": (0.0, 0.3)})
    hook_depth_m: float = field(default=0.005, metadata={
        "range": (-0.05, 0.05), "help": "hook tip below the bar's axis when pulling"})
    pull_lead_m: float = field(default=0.05, metadata={"range": (0.0, 0.2)})
    overshoot_m: float = field(default=0.015, metadata={"range": (0.0, 0.1)})
    task_step_m: float = field(default=0.03, metadata={"range": (0.001, 0.2)})


class DrawerExpert(Expert):
    """Approach above the gap behind the handle, lower the hook into it, pull toward the robot."""

    def __init__(self, env: gym.Env, noise_std: float = 0.0, seed: int | None = None,
                 config: DrawerExpertConfig | None = None) -> None:
        super().__init__(env, noise_std, seed)
        self.config = config or DrawerExpertConfig()
        self.columns = np.arange(self.task.n_joints)
        self.hook_down = np.eye(3)     # the hook's frame at the home pose: finger along -z
        self.reset()

    def reset(self) -> None:
        super().reset()
        self.phase, self.phase_steps = "approach", 0

    def plan(self, obs: np.ndarray, joints: np.ndarray, targets: np.ndarray) -> np.ndarray:
        cfg, task = self.config, self.task
        ee = task.field(obs, "ee_position_m").astype(np.float64)
        handle = ee + task.field(obs, "handle_from_ee_m")
        remaining = float(task.field(obs, "goal_error_m")[0])
        gap = handle + np.array([cfg.behind_handle_m, 0.0, 0.0])
        self.phase_steps += 1
        if self.phase == "approach":
            goal = gap + np.array([0.0, 0.0, cfg.approach_height_m])
            if np.linalg.norm(goal - ee) < 0.015 or self.phase_steps > 30:
                self.phase, self.phase_steps = "lower", 0
        elif self.phase == "lower":
            goal = gap - np.array([0.0, 0.0, cfg.hook_depth_m])
            if ee[2] < goal[2] + 0.015 or self.phase_steps > 12:
                self.phase, self.phase_steps = "pull", 0
        else:
            lead = min(cfg.pull_lead_m, max(remaining + cfg.overshoot_m, 0.0))
            goal = gap - np.array([lead, 0.0, cfg.hook_depth_m])
        goal = ee + np.clip(goal - ee, -cfg.task_step_m, cfg.task_step_m)
        return self.ik.solve(targets, "ee_site", goal, self.columns, target_rot=self.hook_down,
                             lower=task.actions.lower_rad, upper=task.actions.upper_rad,
                             iterations=10)


def collect(env_id: str, n_episodes: int, noise_std: float, seed: int,
            **env_kwargs) -> list[dict]:
    """Runs the task's expert for n_episodes (episode k seeded ``seed + k``) and returns, per
    episode, time-major float32 / bool arrays and ``info`` = {success, seed, noise_std}."""
    env = gym.make(env_id, **env_kwargs)
    expert = make_expert(env, noise_std, seed)
    episodes = []
    try:
        for k in range(n_episodes):
            episodes.append(run_episode(env, expert, seed + k))
    finally:
        env.close()
    return episodes


def run_episode(env: gym.Env, expert: Expert, seed: int) -> dict:
    """One episode as time-major arrays: observation, action, reward, next_observation,
    terminated, truncated; ``info`` = {success, seed, noise_std}.

    A pixel task's episode also holds ``camera_color`` (each step's view, the frame of its
    observation; ``camera_depth`` with depth) and ``state_observation`` /
    ``next_state_observation`` (the task's state layout, from the env's info): a step's next frame
    is the next step's, so no frame is stored twice (the last step's next frame is not kept)."""
    obs, info = env.reset(seed=seed)
    expert.reset()
    rows: dict[str, list] = {k: [] for k in ("observation", "action", "reward",
                                              "next_observation", "terminated", "truncated")}
    success, done = False, False
    while not done:
        action = expert.act(obs)
        next_obs, reward, terminated, truncated, next_info = env.step(action)
        for key, value in zip(rows, (step_vector(obs), action, reward, step_vector(next_obs), terminated,
                                     truncated)):
            rows[key].append(value)
        if isinstance(obs, dict):
            for key, value in step_views(obs, info, next_info).items():
                rows.setdefault(key, []).append(value)
        success = success or bool(next_info["success"])
        obs, info, done = next_obs, next_info, terminated or truncated
    episode = {k: np.asarray(v, dtype=step_dtype(k, v[0])) for k, v in rows.items()}
    episode["info"] = {"success": success, "seed": seed, "noise_std": expert.noise_std}
    return episode


def step_vector(obs: np.ndarray | dict[str, np.ndarray]) -> np.ndarray:
    """A step's observation vector (a pixel task's Dict observation's ``state``)."""
    return obs["state"] if isinstance(obs, dict) else obs


def step_views(obs: dict[str, np.ndarray], info: dict, next_info: dict) -> dict[str, np.ndarray]:
    """A Dict observation's images and the privileged state layout beside them."""
    out = {"camera_color": obs["rgb"]}
    if "depth" in obs:
        out["camera_depth"] = obs["depth"]
    if "state_observation" in info:
        out["state_observation"] = info["state_observation"]
        out["next_state_observation"] = next_info["state_observation"]
    return out


def step_dtype(key: str, first: Any) -> type | np.dtype:
    """The array type of an episode's ``key``: flags bool, frames as given, the rest float32."""
    if key in ("terminated", "truncated", "intervention"):
        return bool
    if key.startswith("camera_"):
        return np.asarray(first).dtype  # frames keep their uint8 / uint16
    return np.float32


def make_expert(env: gym.Env, noise_std: float = 0.0, seed: int | None = None) -> Expert:
    """The scripted expert the task's registration names (robot_rl.registry.TaskSpec.expert)."""
    task = env.unwrapped.task.name
    spec = task_spec(task)
    if not spec.expert:
        raise KeyError(f"no scripted expert for task {task!r}: its registration names none "
                       "(TaskSpec.expert); record demonstrations by teleoperation instead")
    return load_object(spec.expert, f"task {task!r}: scripted expert")(env, noise_std, seed)
