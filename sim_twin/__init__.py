"""The MuJoCo digital twin: models, the Twin, gymnasium environments, experts, emulators.

Importing it registers the ``robot_rl/ValveTurn-v0`` and ``robot_rl/DrawerOpen-v0`` environments.
Headless rendering uses EGL unless MUJOCO_GL is already set (osmesa works too).
"""

from __future__ import annotations

import os

os.environ.setdefault("MUJOCO_GL", "egl")

from sim_twin.envs import register_envs
from sim_twin.randomization import RandomizationConfig
from sim_twin.twin import Twin

register_envs()

__all__ = ["RandomizationConfig", "Twin", "register_envs"]
