"""Shared fixtures: a DDS domain of its own per test, and a reaper for spawned processes; every
test marked by its folder (unit, graph, hil), so that markers and folders cannot disagree."""

from __future__ import annotations

import contextlib
import fcntl
import itertools
import os
import random
import signal
import subprocess
import tempfile
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


# Domain ids 1-232 are valid for ROS 2. Each test holds a lock file for its domain, so parallel
# pytest runs on one machine (other checkouts, CI shards) never share one: nodes of two runs on one
# domain and loopback discovery would talk to each other. A pid-seeded order makes waiting rare.
_DOMAIN_IDS = itertools.cycle(random.Random(os.getpid()).sample(range(1, 233), 232))
_DOMAIN_LOCKS = Path(tempfile.gettempdir()) / "robot_rl_ros_domains"


@contextlib.contextmanager
def _claimed_domain() -> Iterator[int]:
    """A ROS_DOMAIN_ID no other process on this machine holds, held until the block ends."""
    _DOMAIN_LOCKS.mkdir(exist_ok=True)
    for _ in range(232):
        domain_id = next(_DOMAIN_IDS)
        fd = os.open(_DOMAIN_LOCKS / f"{domain_id}.lock", os.O_CREAT | os.O_RDWR, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        try:
            yield domain_id
        finally:
            os.close(fd)  # releases the lock
        return
    raise RuntimeError(f"every ROS domain id is held by other test runs ({_DOMAIN_LOCKS})")


@pytest.fixture
def backend(request: pytest.FixtureRequest) -> str:
    """The backend of the nodes a test starts: dds, or each in turn under ``@both_backends``
    (helpers.backends)."""
    return str(getattr(request, "param", "dds"))


@pytest.fixture
def ros_domain(monkeypatch: pytest.MonkeyPatch, backend: str) -> Iterator[int]:
    """A ROS_DOMAIN_ID of this test's own, discovery on this host only, and ``backend`` for the
    nodes, for this process and its children. One ROS 2 variable keeps both stacks on loopback
    and lets them find each other: ``ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST``."""
    with _claimed_domain() as domain_id:
        monkeypatch.setenv("ROS_DOMAIN_ID", str(domain_id))
        monkeypatch.setenv("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
        for name in ("ROS_STATIC_PEERS", "ROS_LOCALHOST_ONLY", "ROBOT_RL_DDS_LOOPBACK"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("ROBOT_RL_BACKEND", backend)
        yield domain_id


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

