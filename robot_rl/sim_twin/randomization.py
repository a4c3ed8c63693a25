"""Domain randomisation of the twin: every parameter is drawn at reset from a seeded generator.

Scales multiply the model's nominal values (the MJCF's), so (1.0, 1.0) means "off"; all defaults
are off. Ranges are inclusive (low, high), drawn uniformly, one draw per element.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import mujoco
import numpy as np

_SCALE = {"range": (0.0, 10.0)}


@dataclass(frozen=True)
class RandomizationConfig:
    friction_scale: tuple[float, float] = field(default=(1.0, 1.0), metadata={
        **_SCALE, "help": "sliding friction of every geom"})
    damping_scale: tuple[float, float] = field(default=(1.0, 1.0), metadata={
        **_SCALE, "help": "joint damping and frictionloss (robot and object)"})
    mass_scale: tuple[float, float] = field(default=(1.0, 1.0), metadata={
        **_SCALE, "help": "body masses and inertias"})
    actuator_gain_scale: tuple[float, float] = field(default=(1.0, 1.0), metadata={
        **_SCALE, "help": "position servo stiffness kp"})
    joint_position_noise_rad: float = field(default=0.0, metadata={
        "range": (0.0, 0.5), "help": "std of Gaussian noise on measured joint positions"})
    joint_velocity_noise_rad_s: float = field(default=0.0, metadata={"range": (0.0, 5.0)})
    object_position_noise: float = field(default=0.0, metadata={
        "range": (0.0, 0.5), "help": "std on the measured object position (rad or m)"})
    action_latency_s: tuple[float, float] = field(default=(0.0, 0.0), metadata={
        "range": (0.0, 0.5), "help": "delay before a new target reaches the servos, per episode"})
    camera_position_m: float = field(default=0.0, metadata={
        "range": (0.0, 0.2), "help": "std of the camera's position offset (it keeps aiming)"})
    camera_target_m: float = field(default=0.0, metadata={
        "range": (0.0, 0.2), "help": "std of the offset of the point an aiming camera looks at "
                                     "(its target body, when that body is an empty marker)"})
    camera_fovy_deg: float = field(default=0.0, metadata={
        "range": (0.0, 20.0), "help": "std of the cameras' vertical field of view (a zoom)"})

    @property
    def enabled(self) -> bool:
        return self != RandomizationConfig()


class ModelRandomizer:
    """Keeps the nominal parameters of a model and redraws them in place."""

    def __init__(self, model: mujoco.MjModel, robot_actuators: np.ndarray) -> None:
        self.model = model
        self.robot_actuators = robot_actuators
        # an aiming camera's target body moves only if it is an empty marker: moving a body with
        # geoms, joints or children would move the scene, not just the camera's aim
        targets = {int(model.cam_targetbodyid[c]) for c in range(model.ncam)
                   if int(model.cam_mode[c]) in (int(mujoco.mjtCamLight.mjCAMLIGHT_TARGETBODY),
                                                 int(mujoco.mjtCamLight.mjCAMLIGHT_TARGETBODYCOM))}
        self.camera_targets = np.array(sorted(
            b for b in targets if b > 0 and model.body_geomnum[b] == 0
            and model.body_jntnum[b] == 0 and not np.any(model.body_parentid[1:] == b)), int)
        self.nominal = {
            "geom_friction": model.geom_friction.copy(),
            "dof_damping": model.dof_damping.copy(),
            "dof_frictionloss": model.dof_frictionloss.copy(),
            "body_mass": model.body_mass.copy(),
            "body_inertia": model.body_inertia.copy(),
            "actuator_gainprm": model.actuator_gainprm.copy(),
            "actuator_biasprm": model.actuator_biasprm.copy(),
            "cam_pos": model.cam_pos.copy(),
            "cam_fovy": model.cam_fovy.copy(),
            "body_pos": model.body_pos.copy(),
        }

    def restore(self) -> None:
        for name, value in self.nominal.items():
            getattr(self.model, name)[:] = value

    def apply(self, config: RandomizationConfig, rng: np.random.Generator) -> None:
        """Restores the nominal model, then draws every randomised parameter from ``rng``."""
        self.restore()
        m, nom = self.model, self.nominal
        m.geom_friction[:, 0] = nom["geom_friction"][:, 0] * rng.uniform(
            *config.friction_scale, m.ngeom)
        damping = rng.uniform(*config.damping_scale, m.nv)
        m.dof_damping[:] = nom["dof_damping"] * damping
        m.dof_frictionloss[:] = nom["dof_frictionloss"] * damping
        mass = rng.uniform(*config.mass_scale, m.nbody)
        m.body_mass[:] = nom["body_mass"] * mass
        m.body_inertia[:] = nom["body_inertia"] * mass[:, None]
        # a position actuator is force = kp * ctrl - kp * qpos: gain and bias scale together
        ids = self.robot_actuators
        gain = rng.uniform(*config.actuator_gain_scale, len(ids))
        m.actuator_gainprm[ids, 0] = nom["actuator_gainprm"][ids, 0] * gain
        m.actuator_biasprm[ids, 1] = nom["actuator_biasprm"][ids, 1] * gain
        m.cam_pos[:] = nom["cam_pos"] + rng.normal(0.0, 1.0, m.cam_pos.shape) * \
            config.camera_position_m
        # drawn only when asked for: runs without them keep the random stream they always had
        if config.camera_target_m:
            ids = self.camera_targets
            m.body_pos[ids] = nom["body_pos"][ids] + rng.normal(0.0, 1.0, (len(ids), 3)) * \
                config.camera_target_m
        if config.camera_fovy_deg:
            m.cam_fovy[:] = np.clip(nom["cam_fovy"] + rng.normal(0.0, 1.0, m.ncam)
                                    * config.camera_fovy_deg, 10.0, 120.0)
