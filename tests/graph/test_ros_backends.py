"""The Node API behaves the same on both backends, and the backend is chosen explicitly.

In-process nodes on real DDS (Cyclone for dds; rclpy with Fast DDS, skipped where rclpy cannot
be imported).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from helpers.backends import both_backends, needs_rclpy
from helpers.processes import REPO_ROOT, child_env

from robot_rl.ros import messages as m
from robot_rl.ros.api import ParameterError
from robot_rl.ros.launch import LaunchDescription
from robot_rl.ros.qos import QOS_DEFAULT
from robot_rl.ros.runtime import backend_name, make_node

LAUNCH_DIR = REPO_ROOT / "launch"


def _burst_then_one_spin(node: Any) -> tuple[list[str], list[float]]:
    """6 messages waiting and a timer due, then one spin_once(0): what ran."""
    got: list[str] = []
    ticks: list[float] = []
    node.create_subscription(m.String, "burst", lambda msg: got.append(msg.data), QOS_DEFAULT)
    publisher = node.create_publisher(m.String, "burst", QOS_DEFAULT)
    deadline = time.monotonic() + 10
    while publisher.matched_count() < 1:
        assert time.monotonic() < deadline, "the subscription never matched"
        time.sleep(0.01)
    for i in range(6):
        publisher.publish(m.String(str(i)))
    # every message is in the subscription's queue once the reliable reader acked it
    assert publisher.wait_for_all_acked(10.0)
    node.create_timer(0.05, lambda: ticks.append(time.monotonic()))
    time.sleep(0.06)  # time passes until the timer is due (no event to wait for)
    node.spin_once(0.0)
    return got, ticks


@both_backends
def test_spin_once_runs_every_ready_callback(ros_domain: int) -> None:
    """rclpy's own spin_once runs one handler, and a subscription's handler takes one message:
    0 of 6 waiting messages were handled by one call. The Node API promises every ready one."""
    node = make_node("spinner", argv=[])
    try:
        got, ticks = _burst_then_one_spin(node)
        assert got == [str(i) for i in range(6)]
        assert len(ticks) == 1
    finally:
        node.destroy()


@needs_rclpy
def test_spin_once_runs_every_ready_callback_through_rclpys_public_api(ros_domain: int) -> None:
    """The same where rclpy's executor lacks the private one-wait generator the backend uses."""
    node = make_node("spinner", argv=[], backend="rclpy")
    try:
        node.private_wait = False  # type: ignore[attr-defined]
        got, ticks = _burst_then_one_spin(node)
        assert got == [str(i) for i in range(6)]
        assert len(ticks) == 1
    finally:
        node.destroy()


@both_backends
def test_matched_counts_on_publisher_and_subscription(ros_domain: int) -> None:
    node = make_node("counter", argv=[])
    try:
        publisher = node.create_publisher(m.JointState, "counted", QOS_DEFAULT)
        assert publisher.matched_count() == 0
        subscription = node.create_subscription(m.JointState, "counted", lambda msg: None,
                                                QOS_DEFAULT)
        deadline = time.monotonic() + 10
        while publisher.matched_count() < 1 or subscription.matched_count() < 1:
            assert time.monotonic() < deadline, "publisher and subscription never matched"
            node.spin_once(0.01)
        assert (publisher.matched_count(), subscription.matched_count()) == (1, 1)
    finally:
        node.destroy()


@both_backends
def test_parameters_are_typed_by_their_default_on_both(ros_domain: int) -> None:
    """rclpy refuses an int for a float parameter (`camera_rate_hz:=30` killed the twin) and
    types an empty-list default as a byte array (teleop's leader_* could not be set)."""
    node = make_node("typed", argv=["--ros-args", "-p", "rate_hz:=30", "-p",
                                    "joints:=[f0_base, f0_mid]", "-p", "scale:=[1.0, 0.5]"])
    try:
        assert node.declare_parameter("rate_hz", 0.0) == 30.0
        assert isinstance(node.get_parameter("rate_hz"), float)
        assert node.declare_parameter("joints", []) == ["f0_base", "f0_mid"]
        assert node.declare_parameter("scale", []) == [1.0, 0.5]
        assert node.declare_parameter("offsets", []) == []
        assert node.declare_parameter("use_sim_time", False) is False
        with pytest.raises(ParameterError, match="'rate_hz' declared twice"):
            node.declare_parameter("rate_hz", 1.0)
    finally:
        node.destroy()


@both_backends
def test_parameter_values_rcl_cannot_parse_are_their_text_on_both(ros_domain: int) -> None:
    """`-p driver_options:={"task": "drawer"}` (robot_driver_node's JSON object) and `-p name:=`
    (an empty string, as `params(name="")` writes it) are the Node API's text on dds; rcl
    refuses both ("Couldn't parse parameter override rule"), which killed robot_driver_node on
    rclpy before it declared anything."""
    node = make_node("texts", argv=["--ros-args", "-p", 'driver_options:={"task": "drawer"}',
                                    "-p", "viewer_png:=", "-p", "note:=a: b", "-p", "n:=3"])
    try:
        assert node.declare_parameter("driver_options", "{}") == '{"task": "drawer"}'
        assert node.declare_parameter("viewer_png", "x.png") == ""
        assert node.declare_parameter("note", "") == "a: b"
        assert node.declare_parameter("n", 0) == 3  # YAML rcl reads stays as it was
    finally:
        node.destroy()


@needs_rclpy
def test_rclpy_parameters_carry_ros_types_and_are_read_only(ros_domain: int) -> None:
    from rclpy.parameter import Parameter

    node = make_node("typed", argv=["--ros-args", "-p", "rate_hz:=30"], backend="rclpy")
    try:
        node.declare_parameter("rate_hz", 0.0, "frames per second")
        node.declare_parameter("names", [])
        rclpy_node = node._node  # type: ignore[attr-defined]
        assert rclpy_node.get_parameter("rate_hz").type_ == Parameter.Type.DOUBLE
        assert rclpy_node.get_parameter("names").type_ == Parameter.Type.DOUBLE_ARRAY
        described = rclpy_node.describe_parameter("rate_hz")
        assert described.read_only and described.description == "frames per second"
        (result,) = rclpy_node.set_parameters([Parameter("rate_hz", value=5.0)])
        assert not result.successful and "read-only" in result.reason
    finally:
        node.destroy()


@needs_rclpy
def test_rclpy_nodes_of_one_process_keep_their_own_arguments(ros_domain: int) -> None:
    """Each node's --ros-args are its own (a second node is not renamed by the first's
    __node remap), and dropping one node leaves the others running (the backend once shut
    the whole rclpy context down with the first node destroyed)."""
    first = make_node("a", argv=["--ros-args", "-r", "__node:=renamed", "-p", "x:=2"],
                      backend="rclpy")
    second = make_node("b", "/other", argv=[], backend="rclpy")
    try:
        assert first.fully_qualified_name == "/renamed"
        assert second.fully_qualified_name == "/other/b"
        assert second.declare_parameter("x", 1) == 1
        first.destroy()
        got: list[str] = []
        second.create_subscription(m.String, "echo", lambda msg: got.append(msg.data))
        publisher = second.create_publisher(m.String, "echo")
        deadline = time.monotonic() + 10
        while not got:
            assert time.monotonic() < deadline, "a node stopped working when another was dropped"
            publisher.publish(m.String("still here"))
            second.spin_once(0.05)
    finally:
        first.destroy()
        second.destroy()


@needs_rclpy
def test_a_node_made_after_ros_domain_id_changed_is_on_the_new_domain(
        ros_domain: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """rcl fixes a context's domain when it is made: while a node of the old domain lived on
    (a test that forgot to destroy one), new nodes joined its stale context and domain."""
    old = make_node("old", argv=[], backend="rclpy")
    other = 1 + ros_domain % 232
    monkeypatch.setenv("ROS_DOMAIN_ID", str(other))
    new = make_node("new", argv=[], backend="rclpy")
    try:
        assert f"ROS_DOMAIN_ID {ros_domain}," in old.backend_description()  # type: ignore
        assert f"ROS_DOMAIN_ID {other}," in new.backend_description()  # type: ignore
    finally:
        new.destroy()
        old.destroy()


@both_backends
def test_clocks(ros_domain: int) -> None:
    node = make_node("clocks", argv=[])
    try:
        assert abs(node.now_s() - time.time()) < 1.0  # ROS time: the system clock
        steady = getattr(node, "steady_s", time.monotonic)()  # the Node API's C2 clock
        assert abs(steady - time.monotonic()) < 1.0
    finally:
        node.destroy()


def test_backend_is_dds_unless_asked_for(monkeypatch: pytest.MonkeyPatch) -> None:
    """Installing rclpy once switched every node to it, `make demo` included."""
    monkeypatch.delenv("ROBOT_RL_BACKEND", raising=False)
    assert backend_name() == "dds"
    monkeypatch.setenv("ROBOT_RL_BACKEND", "RCLPY")
    assert backend_name() == "rclpy"
    monkeypatch.setenv("ROBOT_RL_BACKEND", "fastdds")
    with pytest.raises(ValueError, match=r"ROBOT_RL_BACKEND='fastdds': expected one of rclpy, dds"):
        backend_name()


@both_backends
def test_every_node_says_which_backend_it_runs_on(ros_domain: int, backend: str) -> None:
    code = "from robot_rl.ros.runtime import make_node; make_node('talker', '/t', argv=[]).destroy()"
    out = subprocess.run([sys.executable, "-c", code], env=child_env(), capture_output=True,
                         text=True, timeout=60, check=True)
    (line,) = [x for x in out.stderr.splitlines() if "backend:" in x]
    assert f"[t.talker]: backend: {backend} (" in line
    assert f"ROS_DOMAIN_ID {ros_domain}" in line


def test_rclpy_backend_without_rclpy_is_a_clear_error(tmp_path: Path) -> None:
    """Where rclpy cannot be imported, asking for it names the way to get it."""
    blocker = tmp_path / "rclpy" / "__init__.py"
    blocker.parent.mkdir()
    blocker.write_text("raise ImportError('no rclpy here')\n")
    code = "from robot_rl.ros.runtime import make_node; make_node('n', argv=[])"
    env = child_env(ROBOT_RL_BACKEND="rclpy")
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path), env["PYTHONPATH"]])
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode != 0
    assert "ROBOT_RL_BACKEND=rclpy, but rclpy cannot be imported: install robot_rl[ros]" \
        in out.stderr


@pytest.mark.parametrize("task, mode", [("valve", "twin"), ("valve", "hil"), ("drawer", "real"),
                                        ("teleop_record", "twin"), ("deploy", "twin"),
                                        ("deploy", "hil")])
def test_launch_files_hand_the_backend_to_every_node(task: str, mode: str,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """backend:=rclpy on a launch file, else $ROBOT_RL_BACKEND, else dds: for every node."""
    monkeypatch.delenv("ROBOT_RL_BACKEND", raising=False)
    chosen = LaunchDescription.load(LAUNCH_DIR / f"{task}.launch.yaml",
                                    {"mode": mode, "backend": "rclpy"})
    assert chosen.processes
    assert {p.env.get("ROBOT_RL_BACKEND") for p in chosen.processes} == {"rclpy"}
    default = LaunchDescription.load(LAUNCH_DIR / f"{task}.launch.yaml", {"mode": mode})
    assert {p.env.get("ROBOT_RL_BACKEND") for p in default.processes} == {"dds"}
    monkeypatch.setenv("ROBOT_RL_BACKEND", "rclpy")
    inherited = LaunchDescription.load(LAUNCH_DIR / f"{task}.launch.yaml", {"mode": mode})
    assert {p.env.get("ROBOT_RL_BACKEND") for p in inherited.processes} == {"rclpy"}
