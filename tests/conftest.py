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

REPO_ROOT = Path(__file__).resolve().parents[1]
# Domain ids 1-232 are valid for ROS 2; a pid-seeded order keeps parallel pytest runs (other
# engineers, CI shards) on different domains with high probability.
_DOMAIN_IDS = itertools.cycle(random.Random(os.getpid()).sample(range(1, 233), 232))


@pytest.fixture
def ros_domain(monkeypatch: pytest.MonkeyPatch) -> int:
    """A fresh ROS_DOMAIN_ID with loopback-only DDS, for this process and its children."""
    domain_id = next(_DOMAIN_IDS)
    monkeypatch.setenv("ROS_DOMAIN_ID", str(domain_id))
    monkeypatch.setenv("ROBOT_RL_DDS_LOOPBACK", "1")
    monkeypatch.setenv("ROBOT_RL_BACKEND", "dds")
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
