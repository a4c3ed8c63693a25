"""When an acting node acts: on the first measurement at or after each nominal control time.

A robot publishes joint states at its own rate (the twin at 50-100 Hz, a Dynamixel hand at 100 Hz);
the policy acts at ``control_rate_hz``. Acting from the joint-state callback, rather than from a
timer that is not aligned with the arrivals, removes up to one control period of waiting between
a measurement and the command that answers it. ``ControlSchedule`` is the rule, a pure function of
arrival times on one monotonic clock (seconds):

- the nominal control times are ``t_k, t_k + period, ...``; a state arriving at or after
  ``t_k - slack`` is acted on, where ``slack = SLACK_FRACTION * min(period, state interval)`` so a
  state that comes a little early (jitter) is not skipped for the next one;
- each action moves the nominal time on by exactly one period, so the rate stays the control rate
  whatever rate the robot publishes at; when acting falls more than a period behind (states late
  or missing), the schedule restarts one period after the action instead of catching up in a burst;
- ``overdue`` says a robot has not acted for ``fallback_periods`` periods: the node's fallback timer
  then steps it anyway, so staleness, reset timeouts and episode events still happen when the
  states stop.
"""

from __future__ import annotations

import math

SLACK_FRACTION = 0.5
INTERVAL_SMOOTHING = 0.1  # weight of the newest gap in the running joint-state interval
FALLBACK_PERIODS = 1.5


class ControlSchedule:
    """The control clock of one robot, driven by its joint-state arrivals."""

    def __init__(self, period_s: float, fallback_periods: float = FALLBACK_PERIODS) -> None:
        if not period_s > 0:
            raise ValueError(f"ControlSchedule: period_s must be > 0, got {period_s}")
        if not fallback_periods >= 1:
            raise ValueError(f"ControlSchedule: fallback_periods must be >= 1, "
                             f"got {fallback_periods}")
        self.period_s = float(period_s)
        self.fallback_periods = float(fallback_periods)
        self.next_s: float | None = None  # the next nominal control time; None: act at once
        self.acted_s = -math.inf
        self.state_interval_s: float | None = None  # running mean of joint-state gaps
        self._last_state_s: float | None = None

    @property
    def slack_s(self) -> float:
        interval = self.period_s if self.state_interval_s is None else self.state_interval_s
        return SLACK_FRACTION * min(self.period_s, interval)

    def observe(self, now_s: float) -> None:
        """A joint state arrived at ``now_s``; its gap to the previous one updates the interval.

        A running mean, not the last gap: two states delivered together (gap ~0) and the long gap
        before them average out to the true interval. Gaps are capped at one period (the slack
        never uses more), so an outage does not inflate the estimate after the states resume."""
        if self._last_state_s is not None:
            gap_s = min(max(0.0, now_s - self._last_state_s), self.period_s)
            self.state_interval_s = gap_s if self.state_interval_s is None else (
                self.state_interval_s + INTERVAL_SMOOTHING * (gap_s - self.state_interval_s))
        self._last_state_s = now_s

    def due(self, now_s: float) -> bool:
        """Whether a state arriving at ``now_s`` should be acted on."""
        return self.next_s is None or now_s >= self.next_s - self.slack_s

    def acted(self, now_s: float) -> None:
        """The robot acted (or was stepped by the fallback timer) at ``now_s``.

        A second step at the same instant does not move the nominal time on: under sim time a
        reset_done and the state measured after it arrive at one instant, and both step."""
        if now_s == self.acted_s:
            return
        self.acted_s = now_s
        if self.next_s is None or now_s - self.next_s > self.period_s:
            self.next_s = now_s + self.period_s  # first action, or resynchronise after a gap
        else:
            self.next_s += self.period_s

    def overdue(self, now_s: float) -> bool:
        """Not acted for ``fallback_periods`` periods: the fallback timer should step it."""
        return now_s - self.acted_s >= self.fallback_periods * self.period_s
