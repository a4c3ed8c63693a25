"""Hardware drivers: Dynamixel chains, RealSense, the ros2_control arm bridge, and their nodes."""
