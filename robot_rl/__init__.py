"""robot_rl: learning manipulation skills on real robots with AWAC, ROS 2 and a MuJoCo twin."""
