"""Simulated time in the Node API, without processes: the clock's rules, timers on it, and the
/clock message as ROS 2 encodes it (judged by rosbags)."""

from __future__ import annotations

import pytest
from rosbags.typesys import Stores, get_typestore

from robot_rl.ros import messages as m
from robot_rl.ros.api import SimClock, Timer, TimerQueue


def test_sim_clock_starts_at_zero_and_never_goes_back() -> None:
    clock = SimClock()
    assert (clock.now_s, clock.started) == (0.0, False)  # rclpy's rule before the first /clock
    assert clock.update(5.0) == "start" and clock.now_s == 5.0
    assert clock.update(5.05) == "advance" and clock.now_s == 5.05
    assert clock.update(5.05) == "same"
    assert clock.update(1.0) == "backward" and clock.now_s == 5.05  # ignored, counted
    assert clock.ignored_backward == 1
    assert clock.update(6.0) == "advance" and clock.now_s == 6.0


def test_timers_count_on_the_clock_they_are_given() -> None:
    now = [0.0]
    fired: list[str] = []
    queue = TimerQueue()
    queue.add(Timer(0.5, lambda: fired.append("half"), clock=lambda: now[0]))
    queue.add(Timer(1.0, lambda: fired.append("one"), clock=lambda: now[0]))
    assert queue.pop_due(0.49) == []
    now[0] = 0.5
    assert [t.period_s for t in queue.pop_due(now[0])] == [0.5]
    # a jump of many periods fires each timer once (missed periods are skipped, not queued)
    now[0] = 10.0
    assert sorted(t.period_s for t in queue.pop_due(now[0])) == [0.5, 1.0]
    assert queue.seconds_to_next(10.0) == pytest.approx(0.5)


def test_rebase_counts_timers_from_the_first_clock() -> None:
    """Timers made before the first /clock (time 0) count from it, not from 0: a bag whose clock
    starts at 1.7e9 s does not fire every timer at once."""
    queue = TimerQueue()
    timer = Timer(1.0, lambda: None, clock=lambda: 0.0)
    queue.add(timer)
    queue.rebase(1000.0)
    assert queue.pop_due(1000.5) == []
    assert queue.pop_due(1001.0) == [timer]


@pytest.mark.parametrize("store", [Stores.ROS2_HUMBLE, Stores.ROS2_JAZZY])
def test_clock_message_is_rosgraph_msgs_clock(store: Stores) -> None:
    types = get_typestore(store)
    ours = m.Clock(clock=m.Time(sec=1_712_345_678, nanosec=250_000_001))
    assert m.ros_type_name(m.Clock) == "rosgraph_msgs/msg/Clock"
    assert m.Clock.__idl_typename__.replace(".", "::") == "rosgraph_msgs::msg::dds_::Clock_"
    theirs = types.deserialize_cdr(ours.serialize(), "rosgraph_msgs/msg/Clock")
    assert (theirs.clock.sec, theirs.clock.nanosec) == (1_712_345_678, 250_000_001)
    assert bytes(types.serialize_cdr(theirs, "rosgraph_msgs/msg/Clock")) == ours.serialize()
    assert m.Clock.deserialize(bytes(types.serialize_cdr(theirs, "rosgraph_msgs/msg/Clock"))) \
        == ours
