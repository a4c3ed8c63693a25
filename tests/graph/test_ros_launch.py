"""The YAML launch runner: evaluation of the file, then real node processes on a private domain."""

from __future__ import annotations

import contextlib
import io
import os
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
    LaunchRunner,
    ProcessSpec,
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
    respawn: "true"  # a string: ros2 launch rejects a YAML boolean here
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


ESSENTIAL = """
launch:
- node:
    pkg: robot_rl
    exec: demo_talker
    name: essential
    on_exit: shutdown
    param: [{name: period_s, value: 0.05}, {name: message, value: "from essential"}]
- node:
    pkg: robot_rl
    exec: demo_talker
    name: plain
    param: [{name: period_s, value: 0.05}, {name: message, value: "from plain"}]
- node: {pkg: robot_rl, exec: demo_listener, name: listener}
"""
STARTED = re.compile(r"process \[(\w+)\] started with pid \[(\d+)\]")


def test_a_dead_node_is_reported_and_an_essential_one_stops_the_graph(
        ros_domain: int, spawn: Any, tmp_path: Path) -> None:
    """Kill an unmarked node: reported (name, exit code, last output lines), the graph goes on.
    Kill the node marked `on_exit: shutdown`: every node stops and the launch exits with 1."""
    launch_file = tmp_path / "essential.launch.yaml"
    launch_file.write_text(ESSENTIAL)
    runner = spawn([sys.executable, "-m", "robot_rl.ros.launch", str(launch_file)],
                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    out = _Lines(runner.stdout)
    pids: dict[str, int] = {}
    try:
        out.wait_for(r"^\[listener\] .*I heard: \[from essential: \d+\]")
        out.wait_for(r"^\[plain\] .*Publishing: 'from plain: 12'")  # more lines than reported
        pids = {label: int(pid) for label, pid in STARTED.findall("\n".join(out.lines))}
        assert set(pids) == {"essential", "plain", "listener"}

        os.kill(pids["plain"], signal.SIGKILL)
        report = out.wait_for(rf"process \[plain\] died \[pid {pids['plain']}, exit code -9 "
                              r"\(SIGKILL\)\]; its last 10 lines of output:$")[0]
        at = out.lines.index(report)
        printed = [line.removeprefix("[plain] ") for line in out.lines[:at]
                   if line.startswith("[plain] ")]
        out.wait_for(r"^\[ERROR\] \[launch\]:   \| ", count=10)
        assert out.lines[at + 1:at + 11] == [f"[ERROR] [launch]:   | {line}"
                                             for line in printed[-10:]]
        # the graph goes on: the essential talker is still heard after the report
        count = len(out.wait_for(r"^\[listener\] .*I heard: \[from essential"))
        out.wait_for(r"^\[listener\] .*I heard: \[from essential", count=count + 2)
        assert runner.poll() is None and pid_alive(pids["listener"])

        os.kill(pids["essential"], signal.SIGKILL)
        assert runner.wait(timeout=15) == 1
        log = "\n".join(out.lines)
        assert re.search(rf"process \[essential\] died \[pid {pids['essential']}, exit code -9 "
                         r"\(SIGKILL\)\]", log)
        assert "[ERROR] [launch]: process [essential] has on_exit: shutdown: stopping every " \
               "node; the launch fails" in log
        assert not [pid for pid in pids.values() if pid_alive(pid)]
        assert not any("SIGTERM" in line or "SIGKILL" in line for line in out.lines
                       if "[launch]: sending" in line)  # the listener stopped on SIGINT
        assert died_processes(log) == ["plain", "essential"]
    finally:
        for pid in pids.values():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)


def test_the_runner_reports_the_last_lines_and_fails_when_an_essential_node_ends(
        tmp_path: Path) -> None:
    """Plain processes, no DDS: the death report carries the last TAIL_LINES lines (or says
    there were none), and an essential node that ends, even cleanly, stops all and fails."""
    gate = tmp_path / "gate"

    def python(code: str) -> tuple[str, ...]:
        return (sys.executable, "-c", code)

    specs = [
        ProcessSpec("talky", python("for i in range(1, 16): print(f'line {i}')\nraise SystemExit(3)")),
        ProcessSpec("silent", python("raise SystemExit(4)")),
        ProcessSpec("essential", python(f"import os, time\nwhile not os.path.exists({str(gate)!r}):"
                                        "\n    time.sleep(0.01)"), shutdown_on_exit=True),
        ProcessSpec("forever", python("import time\nwhile True:\n    time.sleep(1)")),
    ]
    out = io.StringIO()
    runner = LaunchRunner(LaunchDescription(tmp_path / "x.launch.yaml", specs, []), out,
                          sigint_timeout_s=3.0)
    result: list[int] = []
    thread = threading.Thread(target=lambda: result.append(runner.run()), daemon=True)
    thread.start()
    deadline = time.monotonic() + 15.0
    while not ("process [talky] died" in out.getvalue() and "process [silent] died" in
               out.getvalue()):
        assert time.monotonic() < deadline, out.getvalue()
        time.sleep(0.02)
    assert thread.is_alive()  # neither is essential: the launch goes on
    gate.touch()  # the essential node now ends, cleanly
    thread.join(timeout=15)
    assert result == [1]
    log = out.getvalue().splitlines()
    at = next(i for i, line in enumerate(log) if "process [talky] died" in line)
    assert re.fullmatch(r"\[ERROR\] \[launch\]: process \[talky\] died \[pid \d+, exit code 3\]; "
                        r"its last 10 lines of output:", log[at])
    assert log[at + 1:at + 11] == [f"[ERROR] [launch]:   | line {i}" for i in range(6, 16)]
    assert any(re.fullmatch(r"\[ERROR\] \[launch\]: process \[silent\] died \[pid \d+, exit code "
                            r"4\]; it printed nothing", line) for line in log)
    assert any(re.fullmatch(r"\[INFO\] \[launch\]: process \[essential\] finished cleanly "
                            r"\[pid \d+\]", line) for line in log)
    assert "[ERROR] [launch]: process [essential] has on_exit: shutdown: stopping every node; " \
           "the launch fails" in log
    forever = started_pids(out.getvalue())[3]
    assert not pid_alive(forever)


def test_an_essential_node_that_ends_cleanly_still_stops_the_graph_and_fails_the_launch(
        tmp_path: Path) -> None:
    """No other node failed: the exit code 1 comes from the essential node's end alone."""
    specs = [ProcessSpec("essential", (sys.executable, "-c", "print('done')"),
                         shutdown_on_exit=True),
             ProcessSpec("forever", (sys.executable, "-c", "import time\nwhile True:\n"
                                                           "    time.sleep(1)"))]
    out = io.StringIO()
    runner = LaunchRunner(LaunchDescription(tmp_path / "x.launch.yaml", specs, []), out)
    assert runner.run() == 1
    assert "died" not in out.getvalue()
    assert "process [essential] has on_exit: shutdown: stopping every node" in out.getvalue()
    assert not pid_alive(started_pids(out.getvalue())[1])
