"""Shared fixtures: a DDS domain of its own per test, and a reaper for spawned processes."""

from __future__ import annotations

import contextlib
import itertools
import os
import random
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from robot_rl.ros.runtime import rclpy_available

REPO_ROOT = Path(__file__).resolve().parents[1]
# Domain ids 1-232 are valid for ROS 2; a pid-seeded order keeps parallel pytest runs (other
# engineers, CI shards) on different domains with high probability.
_DOMAIN_IDS = itertools.cycle(random.Random(os.getpid()).sample(range(1, 233), 232))


RCLPY = rclpy_available()
NO_RCLPY = ("rclpy cannot be imported: robot_rl[ros] (ROS 2 Jazzy wheels) installs only on x86_64 "
            "Linux with CPython 3.10-3.13, or source a ROS 2 installation")
needs_rclpy = pytest.mark.skipif(not RCLPY, reason=NO_RCLPY)
# Parametrises a test that takes ``ros_domain`` (or ``backend``) over both backends.
both_backends = pytest.mark.parametrize(
    "backend", ["dds", pytest.param("rclpy", marks=needs_rclpy)], indirect=True)


@pytest.fixture
def backend(request: pytest.FixtureRequest) -> str:
    """The backend of the nodes a test starts: dds, or each in turn under ``@both_backends``."""
    return str(getattr(request, "param", "dds"))


@pytest.fixture
def ros_domain(monkeypatch: pytest.MonkeyPatch, backend: str) -> int:
    """A fresh ROS_DOMAIN_ID, discovery on this host only, and ``backend`` for the nodes, for
    this process and its children. One ROS 2 variable keeps both stacks on loopback and lets them
    find each other: ``ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST``."""
    domain_id = next(_DOMAIN_IDS)
    monkeypatch.setenv("ROS_DOMAIN_ID", str(domain_id))
    monkeypatch.setenv("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    for name in ("ROS_STATIC_PEERS", "ROS_LOCALHOST_ONLY", "ROBOT_RL_DDS_LOOPBACK"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("ROBOT_RL_BACKEND", backend)
    return domain_id


def child_env(**extra: str) -> dict[str, str]:
    """The environment for a child Python: this repository importable, unbuffered output."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(REPO_ROOT)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


@pytest.fixture
def spawn() -> Iterator[Callable[..., subprocess.Popen]]:
    """``spawn(cmd, **popen_kwargs)``: a process in its own group, killed if still running at
    the end of the test (so a failing test leaves nothing behind)."""
    started: list[subprocess.Popen] = []

    def _spawn(cmd: list[str], **kwargs: Any) -> subprocess.Popen:
        kwargs.setdefault("env", child_env())
        kwargs.setdefault("start_new_session", True)
        proc = subprocess.Popen(cmd, **kwargs)
        started.append(proc)
        return proc

    yield _spawn
    for proc in started:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)


def python_cmd(code: str, *args: str) -> list[str]:
    """A command running ``code`` with this interpreter."""
    return [sys.executable, "-c", code, *args]
