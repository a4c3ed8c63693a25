"""Packaging facts that drift silently: every Python dependency reaches ROS users' rosdep (or is
named as pip-only in package.xml), and the package data a wheel must carry is in it."""

from __future__ import annotations

import configparser
import re
import xml.etree.ElementTree as ET
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

# setup.cfg's distribution name -> package.xml's rosdep key (rosdistro's rosdep/python.yaml)
ROSDEP_KEYS = {
    "numpy": "python3-numpy", "pyyaml": "python3-yaml", "torch": "python3-torch",
    "mujoco": "python3-mujoco-pip", "gymnasium": "python3-gymnasium-pip",
    "pyrealsense2": "python3-pyrealsense2-pip", "rosbags": "python3-rosbags-pip",
    "h5py": "python3-h5py", "tqdm": "python3-tqdm", "matplotlib": "python3-matplotlib",
    "tensorboard": "python3-tensorboard-pip", "opencv-python-headless": "python3-opencv",
    "imageio": "python3-imageio", "pillow": "python3-pil",
}
PIP_ONLY = {"zarr", "numcodecs", "cyclonedds", "dynamixel-sdk", "safetensors", "imageio-ffmpeg"}


def _install_requires() -> set[str]:
    config = configparser.ConfigParser()
    config.read(REPO / "setup.cfg")
    lines = config["options"]["install_requires"].strip().splitlines()
    return {re.split(r"[<>=!~;\[ ]", line.strip(), maxsplit=1)[0].lower() for line in lines}


def test_every_python_dependency_has_a_rosdep_key_or_is_named_pip_only() -> None:
    package = ET.parse(REPO / "package.xml").getroot()
    assert package.get("format") == "3"
    exec_depends = {e.text for e in package.iter("exec_depend")}
    comments = (REPO / "package.xml").read_text()
    requirements = _install_requires()
    unmapped = requirements - set(ROSDEP_KEYS) - PIP_ONLY
    assert not unmapped, f"setup.cfg requires {sorted(unmapped)}: give each a rosdep key"
    missing = {ROSDEP_KEYS[r] for r in requirements & set(ROSDEP_KEYS)} - exec_depends
    assert not missing, f"package.xml lacks {sorted(missing)}"
    for name in requirements & PIP_ONLY:  # said where a ROS user reads it
        assert name in comments, f"package.xml does not name pip-only {name}"


def test_package_data_dirs_are_packaged() -> None:
    """The YAML configs and MJCF models sit in folders without __init__.py: setup.cfg must find
    them as namespace packages (find_namespace:), or the wheel warns and may drop them."""
    config = configparser.ConfigParser()
    config.read(REPO / "setup.cfg")
    assert config["options"]["packages"].strip() == "find_namespace:"
    data = config["options.package_data"]
    for pattern in ("configs/*.yaml", "calibration/*.yaml", "calibration/cameras/*.yaml",
                    "sim_twin/models/*.xml"):
        assert pattern in data["robot_rl"], pattern
        assert any((REPO / "robot_rl").glob(pattern)), pattern
