"""ControlSchedule: which joint-state arrivals an event-driven acting node acts on."""

from __future__ import annotations

import numpy as np
import pytest

from robot_rl.agent.schedule import ControlSchedule


def act_on(schedule: ControlSchedule, arrivals_s: np.ndarray) -> list[float]:
    """The arrival times the schedule acts on (as the node's joint-state callback does)."""
    acted = []
    for now in arrivals_s:
        schedule.observe(float(now))
        if schedule.due(float(now)):
            schedule.acted(float(now))
            acted.append(float(now))
    return acted


@pytest.mark.parametrize(("control_hz", "state_hz"), [(20, 100), (20, 50), (100, 500), (20, 20),
                                                      (100, 100), (50, 200)])
def test_rate_is_the_control_rate_at_or_below_the_state_rate(control_hz: float,
                                                             state_hz: float) -> None:
    rng = np.random.default_rng(0)
    period = 1.0 / state_hz
    # 10 s of states with 10% jitter around their nominal times, started at an odd phase
    arrivals = 3.7 + np.arange(int(10 * state_hz)) * period \
        + rng.uniform(-0.1, 0.1, int(10 * state_hz)) * period
    acted = act_on(ControlSchedule(1.0 / control_hz), np.sort(arrivals))
    assert len(acted) / 10.0 == pytest.approx(control_hz, rel=0.02)
    # every action answers a state, and no two actions are closer than half a period apart
    # unless the states themselves come that close
    assert np.diff(acted).min() >= min(0.5 / control_hz, 0.8 * period)


def test_equal_rates_act_on_every_state_despite_jitter() -> None:
    """A state a little early is not skipped for the next one (the slack)."""
    rng = np.random.default_rng(1)
    arrivals = np.arange(1000) * 0.01 + rng.uniform(-0.003, 0.003, 1000)
    acted = act_on(ControlSchedule(0.01), arrivals)
    assert len(acted) == 1000


def test_first_state_is_acted_on_at_once() -> None:
    schedule = ControlSchedule(0.05)
    schedule.observe(12.0)
    assert schedule.due(12.0)
    schedule.acted(12.0)
    assert not schedule.due(12.01) and schedule.due(12.05)


def test_states_faster_than_control_keep_a_nominal_cadence() -> None:
    """20 Hz control, 100 Hz states: every fifth state, on the nominal grid (no drift)."""
    arrivals = 0.002 + np.arange(500) * 0.01
    acted = act_on(ControlSchedule(0.05), arrivals)
    np.testing.assert_allclose(np.diff(acted), 0.05, atol=1e-9)


def test_resynchronises_after_a_gap_instead_of_bursting() -> None:
    schedule = ControlSchedule(0.05)
    before = 0.002 + np.arange(100) * 0.01  # 1 s of 100 Hz states
    after = 2.5 + np.arange(100) * 0.01  # a 1.5 s gap, then states again
    acted = act_on(schedule, np.concatenate([before, after]))
    resumed = [t for t in acted if t >= 2.5]
    assert resumed[0] == pytest.approx(2.5)
    np.testing.assert_allclose(np.diff(resumed), 0.05, atol=1e-9)  # no catch-up burst


def test_a_late_state_is_acted_on_and_the_cadence_holds() -> None:
    schedule = ControlSchedule(0.05)
    acted = act_on(schedule, np.array([0.0, 0.05, 0.13, 0.15, 0.2, 0.25]))
    # 0.13 is 30 ms late for 0.10; the nominal grid stays 0.15, 0.20, 0.25
    assert acted == [0.0, 0.05, 0.13, 0.15, 0.2, 0.25]


def test_overdue_after_fallback_periods() -> None:
    schedule = ControlSchedule(0.05)
    assert schedule.overdue(0.0)  # never acted
    schedule.acted(1.0)
    assert not schedule.overdue(1.07)
    assert schedule.overdue(1.076)


def test_interval_estimate_survives_bursts() -> None:
    """Two states delivered together (gap 0) and the long gap before them average out."""
    schedule = ControlSchedule(0.05)
    times = np.arange(400) * 0.01
    times[1::2] = times[1::2] + 0.01 - 1e-5  # pairs: long gap, then ~0 gap
    for now in times:
        schedule.observe(float(now))
    assert schedule.state_interval_s == pytest.approx(0.01, rel=0.2)
    assert schedule.slack_s == pytest.approx(0.005, rel=0.2)


def test_bad_arguments_are_named() -> None:
    with pytest.raises(ValueError, match="period_s must be > 0"):
        ControlSchedule(0.0)
    with pytest.raises(ValueError, match="fallback_periods must be >= 1"):
        ControlSchedule(0.05, fallback_periods=0.5)
