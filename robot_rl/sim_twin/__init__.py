"""The MuJoCo digital twin: models, the Twin, gymnasium environments, experts, emulators.

Every registered task's gymnasium id (``robot_rl/ValveTurn-v0``, ``robot_rl/DrawerOpen-v0``, ...)
exists once robot_rl is imported (robot_rl.registry); importing sim_twin registers them too.
Headless rendering uses EGL unless MUJOCO_GL is already set (osmesa works too).
"""

from __future__ import annotations

import os

os.environ.setdefault("MUJOCO_GL", "egl")

from robot_rl.sim_twin.envs import register_envs
from robot_rl.sim_twin.randomization import RandomizationConfig
from robot_rl.sim_twin.twin import Twin

register_envs()

__all__ = ["RandomizationConfig", "Twin", "register_envs"]
