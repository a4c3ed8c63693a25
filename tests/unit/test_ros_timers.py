"""The dds backend's timer queue on a clock the test sets: a timer that fell behind fires once and
then keeps its period from now (no burst of the missed ticks), and cancelled timers never fire.
(tests/graph/test_ros_args.py runs the same timers in a node's executor.)"""

from __future__ import annotations

import pytest

from robot_rl.ros.api import Timer, TimerQueue


def test_a_timer_that_fell_behind_fires_once_then_keeps_its_period() -> None:
    timer = Timer(0.02, lambda: None)
    queue = TimerQueue()
    queue.add(timer)
    t0 = timer.due_s
    assert queue.pop_due(t0 - 1e-6) == []
    assert queue.pop_due(t0) == [timer]
    assert timer.due_s == pytest.approx(t0 + 0.02)           # on schedule: one period later
    stalled = t0 + 0.5                                       # 24 periods missed
    assert queue.pop_due(stalled) == [timer]                 # once, not 24 times
    assert queue.pop_due(stalled) == []
    assert queue.seconds_to_next(stalled) == pytest.approx(0.02)  # one period from now
    assert queue.pop_due(stalled + 0.02) == [timer]


def test_a_cancelled_timer_never_fires_and_is_not_waited_for() -> None:
    kept, cancelled = Timer(0.05, lambda: None), Timer(0.01, lambda: None)
    queue = TimerQueue()
    queue.add(kept)
    queue.add(cancelled)
    cancelled.cancel()
    now = cancelled.due_s
    assert queue.seconds_to_next(now) == pytest.approx(kept.due_s - now)
    assert queue.pop_due(kept.due_s) == [kept]
