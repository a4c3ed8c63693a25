"""Learning core: AWAC, Q-ensembles, replay (uniform, balanced), collapse guard, checkpoints.

Pure torch + numpy: never imports ROS, MuJoCo or drivers.
"""

from __future__ import annotations

from robot_rl.learning.awac import AWAC, awr_weights
from robot_rl.learning.checkpoint import (
    check_checkpoint_action_mode,
    load_checkpoint,
    restore_agent,
    save_checkpoint,
)
from robot_rl.learning.config import (
    AWACConfig,
    BalancedReplayConfig,
    CollapseGuardConfig,
    config_from_dict,
    config_to_dict,
)
from robot_rl.learning.guard import CollapseGuard
from robot_rl.learning.logger import UPDATES_PER_S, MetricsLogger, UpdateRate, episode_metrics
from robot_rl.learning.normalizer import Normalizer
from robot_rl.learning.replay import BalancedReplay, ReplayBuffer

__all__ = [
    "AWAC", "AWACConfig", "BalancedReplay", "BalancedReplayConfig", "CollapseGuard",
    "CollapseGuardConfig", "MetricsLogger", "Normalizer", "ReplayBuffer", "UPDATES_PER_S",
    "UpdateRate", "awr_weights", "episode_metrics",
    "check_checkpoint_action_mode", "config_from_dict", "config_to_dict", "load_checkpoint",
    "restore_agent", "save_checkpoint",
]
