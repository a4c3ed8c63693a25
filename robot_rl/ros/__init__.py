"""The ROS 2 layer: Node API, rclpy and Cyclone DDS backends, messages, QoS, launch runner."""
