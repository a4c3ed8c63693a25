"""The YAML launch runner: evaluation of the file, then real node processes on a private domain."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from robot_rl.ros.launch import (
    LaunchDescription,
    LaunchError,
    died_processes,
    pid_alive,
    share_directory,
    started_pids,
)

INCLUDED = """
launch:
- arg: {name: who, default: nobody}
- node:
    pkg: robot_rl
    exec: demo_listener
    name: "$(var who)_listener"
"""

MAIN = """
launch:
- arg: {name: robot, default: claw, description: "which robot"}
- arg: {name: use_listener, default: "true"}
- let: {name: topic, value: "$(var robot)/chat"}
- group:
  - push_ros_namespace: {namespace: "$(var robot)"}
  - node:
      pkg: robot_rl
      exec: demo_talker
      name: talker
      namespace: left
      param:
      - {name: period_s, value: "0.05"}
      - {name: message, value: "hi $(env ROBOT_RL_TEST_WORD there)"}
      - {name: names, value: [a, b]}
      - {from: "$(dirname)/p.yaml"}
      remap:
      - {from: chatter, to: "/$(var topic)"}
      respawn: "true"
      respawn_delay: 0.5
  - include:
      file: "$(dirname)/included.launch.yaml"
      arg: [{name: who, value: "$(var robot)"}]
      if: "$(var use_listener)"
- node: {pkg: robot_rl, exec: demo_talker, name: skipped, unless: "true"}
"""


def _write(tmp_path: Path) -> Path:
    (tmp_path / "included.launch.yaml").write_text(INCLUDED)
    (tmp_path / "p.yaml").write_text("/**:\n  ros__parameters: {max_count: 0}\n")
    main = tmp_path / "main.launch.yaml"
    main.write_text(MAIN)
    return main


def test_description_resolves_args_groups_includes_and_conditions(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ROBOT_RL_TEST_WORD", raising=False)
    desc = LaunchDescription.load(_write(tmp_path), {"robot": "valve"})
    assert [p.label for p in desc.processes] == ["talker", "valve_listener"]
    talker, listener = desc.processes
    ros_args = talker.cmd[talker.cmd.index("--ros-args") + 1:]
    assert ros_args == (
        "-r", "__node:=talker", "-r", "__ns:=/valve/left", "-p", "period_s:=0.05",
        "-p", "message:=hi there", "-p", "names:=[a, b]",
        "--params-file", str(tmp_path / "p.yaml"), "-r", "chatter:=/valve/chat")
    assert talker.respawn and talker.respawn_delay_s == 0.5 and not talker.shutdown_on_exit
    assert talker.cmd[:2] == (sys.executable, "-c")
    assert "__ns:=/valve" in listener.cmd
    assert [a.name for a in desc.declared_args] == ["robot", "use_listener"]
    no_listener = LaunchDescription.load(tmp_path / "main.launch.yaml", {"use_listener": "0"})
    assert [p.label for p in no_listener.processes] == ["talker"]


def test_errors_name_the_file_and_entity(tmp_path: Path) -> None:
    bad = tmp_path / "bad.launch.yaml"
    bad.write_text("launch:\n- node: {pkg: robot_rl, exec: no_such_exec}\n")
    with pytest.raises(LaunchError, match=r"bad.launch.yaml.*no_such_exec"):
        LaunchDescription.load(bad)
    bad.write_text("launch:\n- arg: {name: needed}\n")
    with pytest.raises(LaunchError, match="'needed' is required"):
        LaunchDescription.load(bad)
    bad.write_text("launch:\n- node: {pkg: robot_rl, exec: demo_talker, name: '$(var nope)'}\n")
    with pytest.raises(LaunchError, match="'nope' is not set"):
        LaunchDescription.load(bad)


def test_find_pkg_share_points_at_the_launch_directory() -> None:
    assert (share_directory() / "launch").is_dir()


RUN = """
launch:
- group:
  - push-ros-namespace: {namespace: demo}
  - node:
      pkg: robot_rl
      exec: demo_talker
      name: talker
      param: [{name: period_s, value: 0.05}]
      remap: [{from: chatter, to: chat}]
  - node:
      pkg: robot_rl
      exec: demo_listener
      name: listener
      remap: [{from: chatter, to: /demo/chat}]
- node:
    pkg: robot_rl
    exec: demo_talker
    name: counter
    param: [{name: max_count, value: 2}, {name: period_s, value: 0.05}]
    respawn: true
    respawn_delay: 0.2
- node:
    pkg: robot_rl
    exec: demo_talker
    name: broken
    param: [{name: max_count, value: "many"}]
"""


class _Lines:
    """Collects a process's output lines on a thread, so the test can wait for patterns."""

    def __init__(self, stream: Any) -> None:
        self.lines: list[str] = []
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream: Any) -> None:
        for line in iter(stream.readline, ""):
            self.lines.append(line.rstrip("\n"))

    def wait_for(self, pattern: str, count: int = 1, timeout_s: float = 15.0) -> list[str]:
        deadline = time.monotonic() + timeout_s
        while True:
            found = [line for line in list(self.lines) if re.search(pattern, line)]
            if len(found) >= count:
                return found
            assert time.monotonic() < deadline, f"no {count}x {pattern!r} in:\n" + "\n".join(
                self.lines[-40:])
            time.sleep(0.05)


def test_runner_starts_prefixes_respawns_and_stops_on_sigint(
        ros_domain: int, spawn: Any, tmp_path: Path) -> None:
    launch_file = tmp_path / "run.launch.yaml"
    launch_file.write_text(RUN)
    runner = spawn([sys.executable, "-m", "robot_rl.ros.launch", str(launch_file)],
                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    out = _Lines(runner.stdout)

    # prefixed logs; namespace and remap applied: the listener hears the talker on /demo/chat
    out.wait_for(r"^\[talker\] \[INFO\] .* \[demo\.talker\]: publishing on /demo/chat$")
    out.wait_for(r"^\[listener\] \[INFO\] .* \[demo\.listener\]: I heard: \[Hello World: \d+\]")
    # respawn: 'counter' exits cleanly after 2 messages and is started again, from 1
    out.wait_for(r"process \[counter\] finished cleanly", count=2)
    assert len(out.wait_for(r"^\[counter\] .*Publishing: 'Hello World: 1'", count=2)) >= 2
    # a node that dies is reported with its exit code and its error, and the launch goes on
    out.wait_for(r"^\[broken\] .*\[broken\]: ParameterError: node /broken: parameter "
                 r"'max_count': expected int, got 'many'")
    out.wait_for(r"process \[broken\] died \[pid \d+, exit code 1\]")
    assert runner.poll() is None
    assert died_processes("\n".join(out.lines)) == ["broken"]  # not the respawned 'counter'

    pids = started_pids("\n".join(out.lines))
    start = time.monotonic()
    runner.send_signal(signal.SIGINT)
    code = runner.wait(timeout=10)
    assert time.monotonic() - start < 5.0
    assert code == 1  # 'broken' failed during the launch
    assert not [pid for pid in pids if pid_alive(pid)]
    assert not any("SIGTERM" in line or "SIGKILL" in line for line in out.lines)
