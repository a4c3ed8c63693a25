"""Shared fixtures: a DDS domain of its own per test, and a reaper for spawned processes; every
test marked by its folder (unit, graph, hil), so that markers and folders cannot disagree."""

from __future__ import annotations

import contextlib
import itertools
import os
import random
import signal
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers.processes import child_env

TESTS_DIR = Path(__file__).resolve().parent
FOLDER_MARKERS = ("unit", "graph", "hil")  # declared in setup.cfg


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark each test with the folder it lives in: `-m graph` selects exactly tests/graph."""
    for item in items:
        try:
            folder = item.path.resolve().relative_to(TESTS_DIR).parts[0]
        except ValueError:  # a test outside tests/ (pytest given another path)
            continue
        if folder in FOLDER_MARKERS:
            item.add_marker(folder)


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

