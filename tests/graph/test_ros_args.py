"""Parameters, remaps and names from ROS 2 command-line arguments, on real DDS nodes."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest
from helpers.backends import both_backends
from helpers.processes import child_env, python_cmd

from robot_rl.ros import messages as m
from robot_rl.ros.api import ParameterError, RosNameError, resolve_name
from robot_rl.ros.runtime import RosArgsError, load_params_file, make_node, parse_ros_args, run


@pytest.mark.parametrize(("name", "expected"), [
    ("chatter", "/ns/chatter"), ("/abs/x", "/abs/x"), ("~/private", "/ns/talker/private"),
    ("~", "/ns/talker"), ("a/b", "/ns/a/b"),
])
def test_resolution_like_ros2(name: str, expected: str) -> None:
    assert resolve_name(name, "/ns", "talker") == expected
    assert resolve_name("chatter", "/", "talker") == "/chatter"


@pytest.mark.parametrize("bad", ["", "9lives", "a//b", "~x", "has space"])
def test_invalid_names_are_rejected(bad: str) -> None:
    with pytest.raises(RosNameError):
        resolve_name(bad, "/", "n")


def test_parse_ros_args_reads_what_ros2_run_passes() -> None:
    args = parse_ros_args(["--user", "x", "--ros-args", "-r", "__ns:=/robot", "-r",
                           "chatter:=chat", "-p", "rate_hz:=20", "-p", "gain:=0.5",
                           "-p", "on:=true", "-p", "names:=[a, b]", "-p", "label:='7'",
                           "--params-file", "p.yaml", "--log-level", "debug", "--", "tail"])
    assert args.remaps == (("__ns", "/robot"), ("chatter", "chat"))
    assert dict(args.params) == {"rate_hz": 20, "gain": 0.5, "on": True, "names": ["a", "b"],
                                 "label": "7"}
    assert args.params_files == ("p.yaml",)
    assert args.log_level == "debug"
    assert args.user_args == ("--user", "x", "tail")
    with pytest.raises(RosArgsError, match="name:=value"):
        parse_ros_args(["--ros-args", "-p", "novalue"])
    with pytest.raises(RosArgsError, match="unknown argument '--bogus'"):
        parse_ros_args(["--ros-args", "--bogus"])


def test_params_file_layouts(tmp_path: Path) -> None:
    path = tmp_path / "params.yaml"
    path.write_text(
        "/**:\n  ros__parameters:\n    rate_hz: 10\n    nested: {gain: 2.0}\n"
        "talker:\n  ros__parameters:\n    rate_hz: 30\n"
        "/other/talker:\n  ros__parameters:\n    rate_hz: 99\n"
        "robot:\n  talker:\n    ros__parameters:\n      frame: hand\n")
    assert load_params_file(str(path), "talker", "/robot") == {
        "rate_hz": 30, "nested.gain": 2.0, "frame": "hand"}
    assert load_params_file(str(path), "listener", "/") == {"rate_hz": 10, "nested.gain": 2.0}
    assert load_params_file(str(path), "talker", "/other")["rate_hz"] == 99
    with pytest.raises(RosArgsError, match="missing.yaml"):
        load_params_file(str(tmp_path / "missing.yaml"), "talker", "/")


@both_backends
def test_node_takes_name_namespace_params_and_remaps(ros_domain: int, tmp_path: Path) -> None:
    params = tmp_path / "p.yaml"
    params.write_text("/**:\n  ros__parameters:\n    period_s: 0.5\n    joints: [a, b]\n")
    node = make_node("n", argv=["--ros-args", "-r", "__node:=arm_driver", "-r", "__ns:=/robot",
                                "-r", "command:=/safe/command", "-r", "other:chatter:=ignored",
                                "--params-file", str(params), "-p", "period_s:=0.25"])
    try:
        assert (node.name, node.namespace) == ("arm_driver", "/robot")
        assert node.resolve("command") == "/safe/command"
        assert node.resolve("chatter") == "/robot/chatter"  # rule for node 'other' only
        assert node.resolve("~/status") == "/robot/arm_driver/status"
        assert node.declare_parameter("period_s", 1.0, "control period") == 0.25  # -p wins
        assert node.declare_parameter("joints", ["x"]) == ["a", "b"]
        assert node.declare_parameter("untouched", 3) == 3
        assert node.get_parameter("period_s") == 0.25
        with pytest.raises(ParameterError, match="'nope' is not declared"):
            node.get_parameter("nope")
        assert node.get_logger().name == "robot.arm_driver"
        publisher = node.create_publisher(m.String, "command")
        assert publisher.topic == "/safe/command"
    finally:
        node.destroy()


@both_backends
def test_wrong_parameter_type_is_a_clear_error(ros_domain: int) -> None:
    node = make_node("talker", argv=["--ros-args", "-p", "rate_hz:=fast", "-p", "gain:=2"])
    try:
        with pytest.raises(ParameterError, match=r"node /talker: parameter 'rate_hz': "
                                                 r"expected int, got 'fast'"):
            node.declare_parameter("rate_hz", 10)
        assert node.declare_parameter("gain", 1.0) == 2.0  # ints widen to float, as YAML
    finally:
        node.destroy()


@both_backends
def test_timers_and_subscriptions_share_one_executor(ros_domain: int) -> None:
    node = make_node("exec_test", argv=[])
    try:
        threads: set[int] = set()
        import threading
        ticks: list[float] = []

        def on_tick() -> None:
            threads.add(threading.get_ident())
            ticks.append(time.monotonic())
            publisher.publish(m.String(str(len(ticks))))

        got: list[str] = []

        def on_msg(msg: m.String) -> None:
            threads.add(threading.get_ident())
            got.append(msg.data)

        publisher = node.create_publisher(m.String, "loop")
        node.create_subscription(m.String, "loop", on_msg)
        node.create_timer(0.02, on_tick)
        deadline = time.monotonic() + 30.0
        while len(got) < 3:  # (no burst after a stall: tests/unit/test_ros_timers.py)
            assert time.monotonic() < deadline, f"{len(ticks)} ticks, {got} came back"
            node.spin_once(0.05)
        assert threads == {threading.get_ident()}
        assert got[:3] == ["1", "2", "3"]
    finally:
        node.destroy()


@both_backends
def test_spin_once_waits_without_subscriptions_and_wakes_for_a_new_timer(ros_domain: int
                                                                         ) -> None:
    """A publisher-only node once spun in a busy loop (Cyclone's wait returns at once on an empty
    waitset): a test robot meant to publish at 50 Hz published thousands of messages a second.
    And a timer created from another thread must end a long wait, not wait it out."""
    import threading

    node = make_node("idle_test", argv=[])
    try:
        node.create_publisher(m.String, "out")
        spins, deadline = 0, time.monotonic() + 0.3
        while time.monotonic() < deadline:
            node.spin_once(0.02)
            spins += 1
        assert spins <= 20  # 15 at 20 ms each; a busy loop makes thousands
        fired: list[float] = []
        threading.Timer(0.1, lambda: node.create_timer(0.01, lambda: fired.append(1.0))).start()
        started = time.monotonic()
        while not fired and time.monotonic() - started < 5.0:
            node.spin_once(3.0)
        assert fired and time.monotonic() - started < 1.0
    finally:
        node.destroy()


@both_backends
def test_run_logs_errors_with_node_name_and_exits_nonzero(
        ros_domain: int, capfd: pytest.CaptureFixture[str]) -> None:
    """rclpy logs through rcutils, straight to file descriptor 2: capfd sees both backends'
    lines, capsys only the dds backend's."""
    def factory(argv: list[str]):
        node = make_node("crashy", argv=argv)
        node.create_timer(0.01, lambda: 1 / 0)
        return node

    assert run(factory, ["--ros-args", "-r", "__ns:=/t"]) == 1
    err = capfd.readouterr().err
    assert "[ERROR]" in err and "[t.crashy]: ZeroDivisionError" in err

    def quitter(argv: list[str]):
        node = make_node("quitter", argv=argv)
        node.create_timer(0.01, lambda: (_ for _ in ()).throw(SystemExit(3)))
        return node

    assert run(quitter, []) == 3


def test_a_node_slow_to_end_prints_where_it_is_and_a_quick_one_nothing(
        ros_domain: int, capfd: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """``ros2 launch`` kills a node still running 5 s after Ctrl-C: one whose teardown takes
    long prints every thread's stack before that (here after 0.2 s), naming the call it is in.
    The owner's own close (a final checkpoint, say) is work, not a hang: not reported."""
    from robot_rl.ros import runtime
    monkeypatch.setattr(runtime, "SLOW_EXIT_REPORT_S", 0.2)

    class Ending:
        def __init__(self, argv: list[str], close_s: float, destroy_s: float) -> None:
            self.node = make_node("ending", argv=argv)
            self.node.create_timer(0.01, self.node.request_shutdown)
            self.close_s, destroy = close_s, self.node.destroy

            def slow_destroy() -> None:
                time.sleep(destroy_s)
                destroy()
            self.node.destroy = slow_destroy  # type: ignore[method-assign]

        def close(self) -> None:
            time.sleep(self.close_s)

    assert run(lambda argv: Ending(argv, 0.0, 0.8), []) == 0
    err = capfd.readouterr().err
    assert "Timeout (0:00:00.2" in err and "in slow_destroy" in err, err[-2000:]
    assert run(lambda argv: Ending(argv, 0.8, 0.0), []) == 0
    time.sleep(0.5)  # the report, disarmed when run returned, does not come later either
    assert "Timeout" not in capfd.readouterr().err


HANGING_TEARDOWN = """
import os, signal, sys, time
from robot_rl.ros import runtime
runtime.SLOW_EXIT_REPORT_S, runtime.TRANSPORT_TEARDOWN_LIMIT_S = 0.2, 0.5

class Closing:
    def __init__(self, argv):
        self.node = runtime.make_node("hanging", argv=argv)
        self.node.destroy = lambda: time.sleep(60)  # a middleware that never ends its teardown
        self.node.create_timer(0.01, lambda: os.kill(os.getpid(), signal.SIGINT))  # Ctrl-C

    def close(self):
        print("closed", flush=True)

sys.exit(runtime.run(Closing, []))
"""


def test_a_transport_teardown_that_hangs_ends_the_process_after_the_owner_closed(
        ros_domain: int) -> None:
    started = time.monotonic()
    done = subprocess.run(python_cmd(HANGING_TEARDOWN), env=child_env(), capture_output=True,
                          text=True, timeout=30)
    assert done.returncode == 0 and "closed" in done.stdout, done.stderr[-2000:]
    assert time.monotonic() - started < 20
    assert "[hanging]: the transport's teardown did not end within 0.5 s" in done.stderr
    assert "in <lambda>" in done.stderr  # the report's stacks show the hang's frame
