"""``use_sim_time`` over real DDS: a node's clocks and timers follow /clock (the dds backend in
detail, then both backends through the Node API)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
from helpers.backends import both_backends

from robot_rl.ros import messages as m
from robot_rl.ros.api import CLOCK_TOPIC, QOS_CLOCK_WRITER, Node, NodeOptions
from robot_rl.ros.dds_backend import DdsNode
from robot_rl.ros.qos import QOS_DEFAULT, QosProfile
from robot_rl.ros.runtime import make_node

pytestmark = pytest.mark.graph


def spin_until(node: Node, condition: Callable[[], bool], timeout_s: float = 10.0,
               what: str = "condition") -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        node.spin_once(0.01)


def spin_for(node: Node, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        node.spin_once(0.01)


@pytest.mark.parametrize("writer_qos", [QOS_CLOCK_WRITER,
                                        QosProfile(reliability="best_effort", depth=1)],
                         ids=["reliable_writer", "best_effort_writer"])
def test_clocks_and_timers_follow_clock(ros_domain: int, writer_qos: QosProfile) -> None:
    source = DdsNode("clock_source")
    node = DdsNode("sim_node", options=NodeOptions(parameter_overrides={"use_sim_time": True}))
    wall = DdsNode("wall_node")
    try:
        clock = source.create_publisher(m.Clock, CLOCK_TOPIC, writer_qos)
        sim_ticks: list[float] = []
        wall_ticks: list[float] = []
        node.create_timer(1.0, lambda: sim_ticks.append(node.now_s()))
        node.create_wall_timer(0.05, lambda: wall_ticks.append(time.monotonic()))
        assert node.uses_sim_time and not wall.uses_sim_time
        assert abs(wall.now_s() - time.time()) < 1.0  # the system clock without use_sim_time

        # before the first /clock: time 0, and timers on it wait (a wall timer does not)
        spin_until(node, lambda: len(wall_ticks) >= 4, what="wall timer ticks")
        assert node.now_s() == node.steady_s() == 0.0 and sim_ticks == []

        def publish(t: float) -> None:
            clock.publish(m.Clock(clock=m.s_to_stamp(t)))
            spin_until(node, lambda: node.now_s() == pytest.approx(t), what=f"time {t}")

        spin_until(source, lambda: clock.matched_count() > 0, what="the clock reader")
        publish(1000.0)
        assert node.steady_s() == node.now_s() == 1000.0
        # ten sim seconds, in far less wall time: the 1 s timer fires once per sim second,
        # counting from the first /clock
        started = time.monotonic()
        for k in range(1, 101):
            publish(1000.0 + 0.1 * k)
        spin_for(node, 0.05)
        assert sim_ticks == pytest.approx([1001.0 + i for i in range(10)], abs=1e-6)
        assert time.monotonic() - started < 10.0

        # the clock stands still: so do timers on it, however much wall time passes
        ticks, walls = len(sim_ticks), len(wall_ticks)
        spin_until(node, lambda: len(wall_ticks) >= walls + 10, what="wall timer ticks")
        assert len(sim_ticks) == ticks and node.now_s() == pytest.approx(1010.0)

        # sim time never goes back within a run: an older /clock is ignored
        assert node._sim_clock is not None
        clock.publish(m.Clock(clock=m.s_to_stamp(3.0)))
        spin_until(node, lambda: node._sim_clock.ignored_backward == 1, what="the old /clock")
        assert node.now_s() == node.steady_s() == pytest.approx(1010.0)
        publish(1010.5)
    finally:
        for n in (source, node, wall):
            n.destroy()


@both_backends
def test_use_sim_time_on_each_backend(ros_domain: int, backend: str) -> None:
    """The Node API's clocks on either backend (rclpy's own use_sim_time and time source on
    rclpy): now_s and steady_s are the newest /clock, a timer counts sim seconds and stands
    still with the clock, a wall timer does not."""
    source = make_node("clock_source", argv=[], backend=backend)
    node = make_node("sim_node", argv=["--ros-args", "-p", "use_sim_time:=true"],
                     backend=backend)
    try:
        assert node.uses_sim_time
        clock = source.create_publisher(m.Clock, CLOCK_TOPIC, QOS_CLOCK_WRITER)
        sim_ticks: list[float] = []
        wall_ticks: list[float] = []
        node.create_timer(1.0, lambda: sim_ticks.append(node.now_s()))
        node.create_wall_timer(0.05, lambda: wall_ticks.append(time.monotonic()))
        spin_until(source, lambda: clock.matched_count() > 0, what="the clock reader")

        def publish(t: float) -> None:
            clock.publish(m.Clock(clock=m.s_to_stamp(t)))
            spin_until(node, lambda: node.now_s() == pytest.approx(t), what=f"time {t}")

        publish(500.0)
        assert node.steady_s() == pytest.approx(500.0)
        for k in range(1, 31):  # three sim seconds in a few wall milliseconds
            publish(500.0 + 0.1 * k)
        spin_for(node, 0.05)
        # rclpy fires a timer made before the first /clock once when it comes (it was due at
        # 1.0); the dds backend counts its period from the first /clock. Then one per sim second.
        first = [t for t in sim_ticks if t < 500.05]
        assert len(first) == (1 if backend == "rclpy" else 0)
        assert sim_ticks[len(first):] == pytest.approx([501.0, 502.0, 503.0], abs=0.11)
        ticks, walls = len(sim_ticks), len(wall_ticks)
        spin_until(node, lambda: len(wall_ticks) >= walls + 10, what="wall timer ticks")
        assert len(sim_ticks) == ticks and node.steady_s() == pytest.approx(503.0)
    finally:
        node.destroy()
        source.destroy()


def test_a_wake_up_keeps_subscription_order_for_a_message_that_came_during_its_takes(
        ros_domain: int) -> None:
    """The lockstep twin needs COMMAND_RAW handled before the COMMAND published after it. A
    wake-up's takes are not atomic: here the first reader's message 'arrives' just after that
    reader was taken (its first take comes back empty), before the second reader's. The same
    wake-up must still take it and hand it over first (it used to wait for the next wake-up and
    come second: the likely cause of a CI failure of the lockstep test)."""
    source = DdsNode("source")
    node = DdsNode("receiver")
    try:
        seen: list[str] = []
        node.create_subscription(m.String, "first", lambda msg: seen.append(msg.data),
                                 QOS_DEFAULT)
        node.create_subscription(m.String, "second", lambda msg: seen.append(msg.data),
                                 QOS_DEFAULT)
        first = source.create_publisher(m.String, "first", QOS_DEFAULT)
        second = source.create_publisher(m.String, "second", QOS_DEFAULT)
        spin_until(source, lambda: min(first.matched_count(), second.matched_count()) > 0,
                   what="the readers")
        first.publish(m.String(data="first"))
        second.publish(m.String(data="second"))
        assert first.wait_for_all_acked(5.0) and second.wait_for_all_acked(5.0)
        early = node._subscriptions[0]
        real_take, calls = early.take, []

        def take_after_the_first() -> list[Any]:  # the first take finds nothing yet
            calls.append(1)
            return [] if len(calls) == 1 else real_take()

        early.take = take_after_the_first  # type: ignore[method-assign]
        node.spin_once(0.0)
        assert seen == ["first", "second"]
    finally:
        node.destroy()
        source.destroy()
