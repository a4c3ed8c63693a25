"""Builds with pip (``pip install -e .``) and with colcon as an ament_python package."""

from glob import glob

from setuptools import setup

PACKAGE = "robot_rl"

setup(
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", glob("launch/*.yaml")),
        (f"share/{PACKAGE}/calibration", glob("calibration/*.yaml")),
    ],
)
