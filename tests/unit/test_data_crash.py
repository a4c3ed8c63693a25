"""Crash safety: a writer process killed with SIGKILL loses at most the episode in progress."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
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
