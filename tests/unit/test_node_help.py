"""Every node executable answers --help with its parameters and exits, without starting: no DDS
participant, no rclpy context, no publisher (before, ``safety_node --help`` started the node)."""

from __future__ import annotations

import configparser
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def node_scripts() -> list[str]:
    """The console scripts of setup.cfg that are nodes (all but the robot-rl command)."""
    config = configparser.ConfigParser()
    config.read(REPO / "setup.cfg")
    lines = config["options.entry_points"]["console_scripts"].strip().splitlines()
    return [line.split("=")[0].strip() for line in lines
            if not line.strip().startswith("robot-rl")]


# one parameter each node declares, as a check that the list is the node's own
KNOWN = {"safety_node": "watchdog_rate_hz", "learner_node": "pretrain_dataset",
         "actor_node": "control_rate_hz", "twin_node": "publish_rate_hz",
         "recorder_node": "store", "teleop_node": "device", "dynamixel_node": "port",
         "realsense_node": "serial", "ros2_control_bridge": "controller",
         "dynamixel_bus_node": "link_path", "demo_talker": "period_s"}


@pytest.mark.parametrize("script", node_scripts())
def test_node_executable_answers_help_and_exits(script: str, tmp_path: Path) -> None:
    exe = BIN / script
    if not exe.exists():
        pytest.skip(f"{exe} is not installed (pip install -e .)")
    done = subprocess.run([str(exe), "--help"], capture_output=True, text=True, timeout=120,
                          cwd=tmp_path, env={**os.environ, "ROBOT_RL_BACKEND": "dds"})
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.startswith(f"usage: {script} [-h] [--ros-args")
    assert "parameters (set with --ros-args -p NAME:=VALUE)" in done.stdout
    if script in KNOWN:  # demo_listener declares none
        assert f"\n  {KNOWN[script]} " in done.stdout, done.stdout


def test_help_builds_no_transport_and_shows_overrides() -> None:
    code = ("import sys\n"
            "import cyclonedds.domain as domain\n"
            "made = []\n"
            "real_init = domain.DomainParticipant.__init__\n"
            "def counting_init(self, *args, **kwargs):\n"
            "    made.append(1)\n"
            "    real_init(self, *args, **kwargs)\n"
            "domain.DomainParticipant.__init__ = counting_init\n"
            "from robot_rl.nodes.safety import main\n"
            "assert main(['--help', '--ros-args', '-p', 'robot:=arm6', '-r', '__ns:=/arm']) == 0\n"
            "print('PARTICIPANTS', len(made), 'RCLPY', 'rclpy' in sys.modules)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, env={**os.environ, "ROBOT_RL_BACKEND": "dds"})
    assert done.returncode == 0, done.stderr[-2000:]
    assert "node /arm/safety: " in done.stdout
    assert "\n  robot " in done.stdout and " arm6 " in done.stdout
    assert "PARTICIPANTS 0 RCLPY False" in done.stdout


def test_help_inside_ros_args_is_not_a_help_flag() -> None:
    from robot_rl.ros.runtime import wants_help

    assert wants_help(["--help"]) and wants_help(["-h", "--ros-args", "-p", "a:=1"])
    assert not wants_help(["--ros-args", "-r", "--help:=x"])
