"""Builds with pip (``pip install -e .``) and with colcon as an ament_python package."""

from glob import glob

from setuptools import setup

PACKAGE = "robot_rl"

setup(
    # Here, not in setup.cfg: setuptools turns setup.cfg's python_requires into a SpecifierSet,
    # whose repr breaks colcon's reading of `setup.py --dry-run` (ast.literal_eval); a keyword
    # argument stays the string pip checks all the same.
    python_requires=">=3.10, <3.13",
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", glob("launch/*.yaml")),
        (f"share/{PACKAGE}/calibration", glob("robot_rl/calibration/*.yaml")),
    ],
)
