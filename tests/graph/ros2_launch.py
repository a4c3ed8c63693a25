"""``ros2 launch PKG FILE [name:=value ...]`` on a machine without the ``ros2`` CLI.

What ros2launch does, with ROS 2 Jazzy's own launch system (../shared/ros2-launch-jazzy): a
``LaunchService`` running ``IncludeLaunchDescription(AnyLaunchDescriptionSource(path))`` with the
arguments, the path found as ``$(find-pkg-share PKG)/launch/FILE`` through the ament index
(``AMENT_PREFIX_PATH``, as ``source install/setup.bash`` sets it). launch_ros then runs each node's
``lib/PKG/<exec>`` from the package's prefix. Used by test_ros2_launch.py as a process of its own.
"""

from __future__ import annotations

import sys


def main(argv: list[str]) -> int:
    from launch.actions import IncludeLaunchDescription
    from launch.launch_description_sources import AnyLaunchDescriptionSource
    from launch.substitutions import PathJoinSubstitution
    from launch_ros.substitutions import FindPackageShare

    from launch import LaunchDescription, LaunchService

    if len(argv) < 2 or any(":=" not in arg for arg in argv[2:]):
        print("usage: ros2_launch.py PKG FILE [name:=value ...]", file=sys.stderr)
        return 2
    package, file_name, *arguments = argv
    path = PathJoinSubstitution([FindPackageShare(package), "launch", file_name])
    service = LaunchService(argv=arguments)
    service.include_launch_description(LaunchDescription([IncludeLaunchDescription(
        AnyLaunchDescriptionSource(path),
        launch_arguments=[tuple(arg.split(":=", 1)) for arg in arguments])]))
    return service.run()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
