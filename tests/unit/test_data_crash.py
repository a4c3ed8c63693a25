"""Crash safety: a writer process killed with SIGKILL loses at most the episode in progress."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import zarr

from robot_rl.data import EpisodeStore, EpisodeWriter, tools

REPO = Path(__file__).resolve().parents[2]

# Shared by the child (which writes) and the parent (which checks): episode i is a pure function
# of i, so the parent can rebuild exactly what each committed episode must contain.
EPISODE_SOURCE = """
import numpy as np

def episode(i, height, width):
    rng = np.random.default_rng(1000 + i)
    n = 3 + i % 4
    return {
        "observation": rng.standard_normal((n, 9)).astype(np.float32),
        "action": rng.standard_normal((n, 9)).astype(np.float32),
        "reward": rng.standard_normal(n).astype(np.float32),
        "camera_color": rng.integers(0, 256, (n, height, width, 3), dtype=np.uint8),
    }
"""
namespace: dict = {}
exec(EPISODE_SOURCE, namespace)
episode = namespace["episode"]

CHILD = EPISODE_SOURCE + """
import sys
from robot_rl.data import EpisodeStore, EpisodeWriter

path, mode = sys.argv[1], sys.argv[2]
store = EpisodeStore.create(path, robot="dclaw", task="valve", calibration_digest="d",
                            units={"observation": "rad"})
writer = EpisodeWriter(store, flush_every_steps=2)
if mode == "big":
    for i in range(3):
        index = store.add_episode(episode(i, 480, 640), {"i": i})
        print("COMMITTED", index, flush=True)
    rng = np.random.default_rng(7)
    frame = rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)
    for t in range(100000):  # a large image episode that never ends
        writer.append({"observation": np.full(9, t, np.float32),
                       "action": np.zeros(9, np.float32), "reward": np.float32(t),
                       "camera_color": np.roll(frame, t, axis=1)})
        print("STEP", t, flush=True)
else:  # commit episodes back to back so that a kill lands anywhere, commit included
    for i in range(100000):
        ep = episode(i, 48, 64)
        for t in range(len(ep["reward"])):
            writer.append({k: v[t] for k, v in ep.items()})
        print("COMMITTED", writer.commit({"i": i}), flush=True)
"""


def start_child(tmp_path: Path, mode: str) -> tuple[subprocess.Popen, Path]:
    script = tmp_path / "child.py"
    script.write_text(textwrap.dedent(CHILD))
    path = tmp_path / f"{mode}.zarr"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, str(script), str(path), mode], env=env,
                            stdout=subprocess.PIPE, text=True)
    return proc, path


def read_until(proc: subprocess.Popen, predicate, timeout_s: float = 15.0) -> list[str]:
    lines: list[str] = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        assert line, f"child ended early (rc {proc.poll()}) after {lines[-3:]}"
        lines.append(line.strip())
        if predicate(lines[-1]):
            return lines
    raise AssertionError(f"child did not reach the kill point; last lines {lines[-3:]}")


def kill(proc: subprocess.Popen) -> list[str]:
    proc.send_signal(signal.SIGKILL)
    rest = proc.stdout.read().split("\n")
    proc.wait(timeout=10)
    assert proc.returncode == -signal.SIGKILL
    return [line for line in rest if line]


def assert_committed_intact(path: Path, n: int, height: int = 48, width: int = 64) -> None:
    store = EpisodeStore.open(path)
    assert store.n_episodes == n
    for i in range(n):
        got, want = store.episode(i), episode(i, height, width)
        for key in want:
            np.testing.assert_array_equal(got[key], want[key], err_msg=f"episode {i} {key}")
        assert store.episode_info(i)["i"] == i


def test_sigkill_during_large_image_episode(tmp_path):
    """Killed while streaming 640x480 frames, after three committed episodes."""
    proc, path = start_child(tmp_path, "big")
    lines = read_until(proc, lambda line: line == "STEP 40")
    lines += kill(proc)
    assert sum(line.startswith("COMMITTED") for line in lines) == 3
    # the killed episode's rows did reach the disk, yet readers see none of them
    committed_steps = sum(len(episode(i, 1, 1)["reward"]) for i in range(3))
    on_disk = zarr.open_array(str(path / "data" / "camera_color"), mode="r").shape[0]
    assert on_disk >= committed_steps + 40
    assert_committed_intact(path, 3, 480, 640)
    reader = EpisodeStore.open(path)
    assert reader.n_steps == committed_steps
    assert len(reader.read("camera_color")) == committed_steps

    problems = tools.validate(path)
    assert [p.severity for p in problems] and {p.severity for p in problems} == {"warning"}
    assert any("uncommitted tail" in p.message for p in problems)

    store = EpisodeStore.open(path, "a")
    assert store.recovery is not None and store.recovery.dropped_steps >= 40
    with EpisodeWriter(store) as writer:  # appending still works after recovery
        ep = episode(3, 480, 640)
        for t in range(len(ep["reward"])):
            writer.append({k: v[t] for k, v in ep.items()})
        writer.commit({"i": 3})
    assert_committed_intact(path, 4, 480, 640)
    assert tools.validate(path) == []


def test_sigkill_at_arbitrary_moments_of_back_to_back_commits(tmp_path):
    for attempt, delay_s in enumerate((0.05, 0.17, 0.31)):
        run_dir = tmp_path / str(attempt)
        run_dir.mkdir()
        proc, path = start_child(run_dir, "commits")
        lines = read_until(proc, lambda line: line.startswith("COMMITTED"))
        time.sleep(delay_s)
        lines += kill(proc)
        acknowledged = sum(line.startswith("COMMITTED") for line in lines)
        n = EpisodeStore.open(path).n_episodes
        # every acknowledged commit survived; at most the one in flight may also have landed
        assert acknowledged <= n <= acknowledged + 1
        assert_committed_intact(path, n)
        store = EpisodeStore.open(path, "a")
        store.add_episode(episode(n, 48, 64), {"i": n})
        assert_committed_intact(path, n + 1)


# ---- deterministic: a crash injected at every write of an episode commit ------------------------
# The SIGKILL tests above land wherever the kernel stops the child; these stop the writer exactly
# before each write it makes to the directory store (every chunk and metadata file of a commit
# goes through DirectoryStore.__setitem__/__delitem__), once plainly and once leaving the
# temporary ``.partial`` file that a kill inside DirectoryStore's own write leaves behind.

class InjectedCrash(BaseException):
    """Not an Exception: no ``except Exception`` in the code under test may swallow it."""


class StoreWrites:
    """Counts the state-changing writes to any zarr DirectoryStore; crashes at write ``crash_at``
    (never, when None) before it happens; ``partial`` leaves half the bytes in a temp file."""

    def __init__(self, monkeypatch, crash_at: int | None = None, partial: bool = False) -> None:
        self.crash_at, self.partial, self.log = crash_at, partial, []
        setitem, delitem = zarr.DirectoryStore.__setitem__, zarr.DirectoryStore.__delitem__
        writes = self

        def set_item(store, key, value):
            writes._before("set", store, key, value)
            return setitem(store, key, value)

        def del_item(store, key):
            if os.path.exists(os.path.join(store.path, key)):  # deleting nothing changes nothing
                writes._before("del", store, key, None)
            return delitem(store, key)

        monkeypatch.setattr(zarr.DirectoryStore, "__setitem__", set_item)
        monkeypatch.setattr(zarr.DirectoryStore, "__delitem__", del_item)

    def _before(self, op: str, store, key: str, value) -> None:
        if len(self.log) == self.crash_at:
            if self.partial and op == "set":
                data = bytes(memoryview(value).cast("B")) if not isinstance(value, bytes) else value
                target = os.path.join(store.path, key)
                os.makedirs(os.path.dirname(target), exist_ok=True)
                with open(f"{target}.0123abcd.partial", "wb") as f:
                    f.write(data[: len(data) // 2])
            raise InjectedCrash(f"{op} {key}")
        self.log.append((op, key))


def small_episode(i: int, n: int = 3) -> dict[str, np.ndarray]:
    """Every kind of key: float, bool, int, image (one chunk per frame)."""
    rng = np.random.default_rng(500 + i)
    return {"observation": rng.standard_normal((n, 4)).astype(np.float32),
            "terminated": np.arange(n) == n - 1, "count": np.arange(n, dtype=np.int64) + 10 * i,
            "camera_color": rng.integers(0, 256, (n, 4, 6, 3), dtype=np.uint8)}


def template(tmp_path: Path, committed: int) -> Path:
    path = tmp_path / f"template{committed}.zarr"
    with EpisodeStore.create(path, robot="dclaw", task="valve", calibration_digest="d",
                             units={}) as store:
        for i in range(committed):
            store.add_episode(small_episode(i), {"i": i})
    return path


def add_whole(store: EpisodeStore, i: int) -> None:
    store.add_episode(small_episode(i), {"i": i})


def add_streamed(store: EpisodeStore, i: int) -> None:
    steps = small_episode(i, 5)
    writer = EpisodeWriter(store, flush_every_steps=2)
    for t in range(5):
        writer.append({k: v[t] for k, v in steps.items()})
    writer.commit({"i": i})


def check_store(path: Path, n: int) -> None:
    """Read-only: exactly ``n`` episodes, each as written; raw arrays may still have a tail."""
    reader = EpisodeStore.open(path)
    assert reader.n_episodes == n
    for i in range(n):
        want = small_episode(i, 5 if reader.episode_lengths[i] == 5 else 3)
        for key, rows in reader.episode(i).items():
            np.testing.assert_array_equal(rows, want[key], err_msg=f"episode {i} {key}")
        assert reader.episode_info(i)["i"] == i


def check_recovered(path: Path, n: int, add) -> None:
    """Opened for append: the uncommitted rows are gone from disk, and appending works."""
    with EpisodeStore.open(path, "a") as store:
        assert store.n_episodes == n
        raw = zarr.open_group(str(path), mode="r")
        for key in store.keys:
            assert raw[f"data/{key}"].shape[0] == store.n_steps, key
        assert len(raw["meta/episode_info"]) == n
        assert not list(path.rglob("*.partial"))
        add(store, n)
    check_store(path, n + 1)
    assert tools.validate(path) == []


@pytest.mark.parametrize("committed", [0, 2])
@pytest.mark.parametrize("add", [add_whole, add_streamed])
def test_a_crash_before_any_write_of_a_commit_loses_only_that_episode(tmp_path, monkeypatch,
                                                                       committed, add):
    source = template(tmp_path, committed)
    with monkeypatch.context() as patch:  # the whole commit uninterrupted: its list of writes
        writes = StoreWrites(patch)
        run = tmp_path / "run.zarr"
        shutil.copytree(source, run)
        with EpisodeStore.open(run, "a") as store:
            add(store, committed)
    # the commit point is the last write: the episode_ends metadata, after its chunk
    assert writes.log[-2:] == [("set", "meta/episode_ends/0"), ("set", "meta/episode_ends/.zarray")]
    total = len(writes.log)
    for partial in (False, True):
        for crash_at in range(total):
            path = tmp_path / f"crash{int(partial)}_{crash_at}.zarr"
            shutil.copytree(source, path)
            store = EpisodeStore.open(path, "a")
            with monkeypatch.context() as patch:
                StoreWrites(patch, crash_at, partial)
                with pytest.raises(InjectedCrash):
                    add(store, committed)
            store.close()  # the process died: the kernel drops its lock
            # every write before the commit point's: the episode is not there, and never half
            check_store(path, committed)
            check_recovered(path, committed, add)


def test_an_interrupted_recovery_can_be_recovered(tmp_path, monkeypatch):
    """Opening for append trims a crashed commit; a crash during that trim loses nothing more."""
    source = template(tmp_path, 2)
    crashed = tmp_path / "crashed.zarr"
    shutil.copytree(source, crashed)
    store = EpisodeStore.open(crashed, "a")
    with monkeypatch.context() as patch:
        StoreWrites(patch, crash_at=10)  # the episode's rows and info are written, not committed
        with pytest.raises(InjectedCrash):
            add_whole(store, 2)
    store.close()
    with monkeypatch.context() as patch:
        writes = StoreWrites(patch)
        probe = tmp_path / "probe.zarr"
        shutil.copytree(crashed, probe)
        EpisodeStore.open(probe, "a").close()
    assert writes.log, "the recovery trimmed nothing: the crash left no uncommitted rows"
    for crash_at in range(len(writes.log)):
        path = tmp_path / f"recovery{crash_at}.zarr"
        shutil.copytree(crashed, path)
        with monkeypatch.context() as patch:
            StoreWrites(patch, crash_at)
            with pytest.raises(InjectedCrash):
                EpisodeStore.open(path, "a")
        check_store(path, 2)
        check_recovered(path, 2, add_whole)
