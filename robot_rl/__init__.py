"""robot_rl: learning manipulation skills on real robots with AWAC, ROS 2 and a MuJoCo twin.

Importing it makes every registered task's gymnasium id available (``robot_rl/ValveTurn-v0``,
``robot_rl/DrawerOpen-v0``, and those of installed plugins; see ``robot_rl.registry``), without
importing gymnasium or the twin before they are used.
"""

from robot_rl.registry import install_gym_registration as _install_gym_registration

_install_gym_registration()
