"""ros-wheels-bootstrapper (a dependency of the ROS 2 wheels) re-executes every Python process
of the venv once, with LD_LIBRARY_PATH set, from a .pth file: what robot_rl's processes need
must survive that. Skipped where the bootstrapper is not installed (no robot_rl[ros])."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers.processes import REPO_ROOT

pytestmark = pytest.mark.skipif(importlib.util.find_spec("ros_wheels_bootstrapper") is None,
                                reason="ros-wheels-bootstrapper is not installed "
                                       "(robot_rl[ros] is not)")
GUARD = "_ROS_WHEELS_BOOTSTRAP_COMPLETE"


def fresh_env() -> dict[str, str]:
    """An environment that has not been through the bootstrapper (as from a login shell)."""
    env = {k: v for k, v in os.environ.items() if k not in (GUARD, "LD_LIBRARY_PATH")}
    env["PYTHONPATH"] = str(REPO_ROOT)
    return env


def test_a_fresh_process_keeps_its_arguments_stdin_and_inherited_descriptors() -> None:
    """The learner starts its training process with a pipe's descriptor number on the command
    line (pass_fds), as multiprocessing does: the re-exec must keep all of it."""
    read_fd, write_fd = os.pipe()
    os.write(write_fd, b"through the pipe")
    os.close(write_fd)
    code = ("import os, sys, rclpy; fd = int(sys.argv[1]); "
            "print(os.environ['_ROS_WHEELS_BOOTSTRAP_COMPLETE'], sys.argv[2:], sys.stdin.read(), "
            "os.read(fd, 100).decode())")
    try:
        out = subprocess.run([sys.executable, "-c", code, str(read_fd), "a b", "--ros-args"],
                             input="from stdin", env=fresh_env(), pass_fds=(read_fd,),
                             capture_output=True, text=True, timeout=60)
    finally:
        os.close(read_fd)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "1 ['a b', '--ros-args'] from stdin through the pipe"


def test_multiprocessing_children_import_rclpy(tmp_path: Path) -> None:
    code = """
import multiprocessing as mp

def child(queue):
    import rclpy, os
    queue.put((rclpy.__name__, os.environ.get("_ROS_WHEELS_BOOTSTRAP_COMPLETE")))

if __name__ == "__main__":
    for method in ("spawn", "forkserver", "fork"):
        ctx = mp.get_context(method)
        queue = ctx.Queue()
        proc = ctx.Process(target=child, args=(queue,))
        proc.start()
        print(method, queue.get(timeout=60))
        proc.join(60)
        assert proc.exitcode == 0, (method, proc.exitcode)
"""
    script = tmp_path / "mp_probe.py"
    script.write_text(code)
    out = subprocess.run([sys.executable, str(script)], env=fresh_env(), capture_output=True,
                         text=True, timeout=180)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split("\n")[:3] == [f"{m} ('rclpy', '1')"
                                          for m in ("spawn", "forkserver", "fork")]
