"""The graph's nodes: thin adapters between the ROS 2 layer (robot_rl.ros) and the core."""
