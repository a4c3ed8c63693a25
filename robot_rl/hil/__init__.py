"""Human in the loop during online learning: when an operator takes over, what is recorded, what
the learner does with it, and how often it happened.

``triggers``: when a stand-in operator takes over (no progress for N steps, or the state leaves the
region the demonstrations cover); ``replay``: operator transitions go to the offline
(demonstration) side of the replay as well as the online one (HIL-SERL's rule); ``metrics``: the
intervention rate per episode and its trend. Pure numpy (and the learning core's replay types):
no ROS, no simulator. The takeover switch and the handover rule live in ``robot_rl.teleop.takeover``.
"""

from __future__ import annotations

from robot_rl.hil.metrics import InterventionTrend, intervention_metrics
from robot_rl.hil.replay import add_online_episode, intervention_mask
from robot_rl.hil.triggers import DemoRegion, ProgressWatch

__all__ = ["DemoRegion", "InterventionTrend", "ProgressWatch", "add_online_episode",
           "intervention_mask", "intervention_metrics"]
