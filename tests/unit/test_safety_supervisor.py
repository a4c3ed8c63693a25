"""Each supervisor rule, deterministically: its verdict, its reason string and its counter."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from robot_rl.config import ConfigError, from_dict
from robot_rl.robot_config import RobotCalibration, load_robot
from robot_rl.safety import ERROR, OK, WARN, Kinematics, RobotState, Supervisor
from robot_rl.safety.limits import JointLimits, constrain, hard_box

DCLAW = load_robot("dclaw")
N = DCLAW.n_joints
MID = 1  # f0_mid: limits [-1.0, 1.4], margin 0.02


def without_workspace(calibration: RobotCalibration = DCLAW) -> RobotCalibration:
    return dataclasses.replace(calibration,
                               safety=dataclasses.replace(calibration.safety, workspace=None))


def state(t: float, q: np.ndarray | float = 0.0, *, effort: np.ndarray | None = None,
          temperature: np.ndarray | None = None, error: np.ndarray | None = None,
          n: int = N) -> RobotState:
    position = np.full(n, q, dtype=float) if np.isscalar(q) else np.asarray(q, dtype=float)
    return RobotState(t, position, np.zeros(n), np.zeros(n) if effort is None else effort,
                      temperature, error)


def running(t0: float = 10.0) -> Supervisor:
    """A supervisor that has a fresh state at zero and has passed one command at zero."""
    sup = Supervisor(without_workspace())
    sup.update_state(state(t0), t0)
    assert sup.filter(np.zeros(N), t0 + 0.01).status == "pass"
    return sup


def bump(value: float, joint: int = MID, base: np.ndarray | None = None) -> np.ndarray:
    command = np.zeros(N) if base is None else base.copy()
    command[joint] += value
    return command


def test_a_small_command_passes_unchanged() -> None:
    sup = running()
    sup.update_state(state(10.05), 10.05)
    verdict = sup.filter(bump(0.05), 10.06)
    assert verdict.status == "pass" and verdict.reasons == ()
    np.testing.assert_array_equal(verdict.command_rad, bump(0.05))
    assert sup.counters["verdict_pass"] == 2 and sup.counters["commands"] == 2


@pytest.mark.parametrize("bad, kind", [(np.nan, "nan"), (np.inf, "inf"), (-np.inf, "inf")])
def test_non_finite_commands_are_rejected_with_a_hold(bad: float, kind: str) -> None:
    sup = running()
    sup.update_state(state(10.05, 0.1), 10.05)
    verdict = sup.filter(bump(bad), 10.06)
    assert verdict.status == "hold"
    assert verdict.reasons == (f"{kind}_in_command f0_mid",)
    # the hold target is the measured position, approached from the last command at <= v * dt
    np.testing.assert_allclose(verdict.command_rad, np.full(N, 0.1))
    sup.filter(bump(bad), 10.07)
    assert sup.counters[f"{kind}_in_command"] == 2  # every rejected command counts
    assert sup.counters["hold_entered"] == 1
    sup.update_state(state(10.08, 0.1), 10.08)
    assert sup.filter(np.full(N, 0.1), 10.09).status == "pass"


def test_a_command_of_the_wrong_length_is_rejected() -> None:
    sup = running()
    verdict = sup.filter(np.zeros(N - 1), 10.02)
    assert verdict.status == "hold"
    assert verdict.reasons == (f"command_shape ({N - 1},) expected ({N},)",)
    assert sup.counters["command_shape"] == 1


@pytest.mark.parametrize("measured, asked, limit", [(1.35, 1.39, 1.4 - 0.02),
                                                    (-0.95, -0.99, -1.0 + 0.02)])
def test_position_limit_with_margin(measured: float, asked: float, limit: float) -> None:
    sup = Supervisor(without_workspace())
    sup.update_state(state(10.0, bump(measured)), 10.0)
    verdict = sup.filter(bump(asked), 10.1)
    assert verdict.status == "clipped" and verdict.reasons == ("position_limit f0_mid",)
    assert verdict.command_rad[MID] == pytest.approx(limit)
    assert sup.counters["position_limit"] == 1


def test_step_from_the_measured_position() -> None:
    sup = Supervisor(without_workspace())
    sup.update_state(state(10.0), 10.0)
    verdict = sup.filter(bump(0.6), 10.15)  # v * dt = 0.45 rad allows it; max_step 0.25 not
    assert verdict.reasons == ("step_from_measured f0_mid",)
    assert verdict.command_rad[MID] == pytest.approx(0.25)
    assert sup.counters["step_from_measured"] == 1


def test_step_from_the_last_command() -> None:
    sup = Supervisor(without_workspace())
    sup.update_state(state(10.0), 10.0)
    sup.filter(bump(-0.2), 10.1)  # the robot is then pushed 0.2 rad above this target
    sup.update_state(state(10.15), 10.15)
    verdict = sup.filter(bump(0.5), 10.3)
    assert verdict.reasons == ("step_from_command f0_mid",)
    assert verdict.command_rad[MID] == pytest.approx(-0.2 + 0.25)


def test_velocity_limit_over_the_time_since_the_last_command() -> None:
    sup = Supervisor(without_workspace())
    sup.update_state(state(10.0), 10.0)
    verdict = sup.filter(bump(0.2), 10.02)  # first command: 3 rad/s * 0.02 s from the measurement
    assert verdict.reasons == ("velocity_limit f0_mid",)
    assert verdict.command_rad[MID] == pytest.approx(0.06)
    assert sup.counters["velocity_limit"] == 1


def test_acceleration_limit_on_the_commanded_velocity() -> None:
    sup = running()  # sent 0 at 10.01, commanded velocity 0
    sup.update_state(state(10.02), 10.02)
    verdict = sup.filter(bump(0.3), 10.03)  # hard box: 3 rad/s * 0.02 s; accel: 60 * 0.02^2
    assert verdict.reasons == ("velocity_limit f0_mid", "acceleration_limit f0_mid")
    assert verdict.command_rad[MID] == pytest.approx(0.024)
    small = sup.filter(bump(0.08), 10.05)  # inside every hard limit; v_prev = 1.2 rad/s
    assert small.reasons == ("acceleration_limit f0_mid",)
    assert small.command_rad[MID] == pytest.approx(0.024 + 1.2 * 0.02 + 60.0 * 0.02 ** 2)
    assert sup.counters["acceleration_limit"] == 2


def test_the_acceleration_limit_never_carries_a_joint_past_its_target() -> None:
    # a slow-accelerating arm: decelerating within the limit would overshoot a step target
    slow = dataclasses.replace(without_workspace(), safety=dataclasses.replace(
        DCLAW.safety, acceleration_limit_rad_s2=2.0))
    sup = Supervisor(slow)
    sup.update_state(state(0.0), 0.0)
    sup.filter(np.zeros(N), 0.0)
    target, sent = 0.3, []
    for k in range(1, 120):
        t = 0.05 * k
        sup.update_state(state(t, sent[-1] if sent else 0.0), t)
        verdict = sup.filter(bump(target), t)
        sent.append(float(verdict.command_rad[MID]))
    assert max(sent) <= target + 1e-12
    assert sent[-1] == pytest.approx(target)


def test_a_single_jumped_reading_sends_nothing_and_drags_nothing() -> None:
    sup = running()
    sup.update_state(state(10.02, bump(0.6)), 10.02)  # 0.6 rad from the 0 target: a glitch?
    verdict = sup.filter(bump(0.6), 10.03)
    assert verdict.command_rad is None and verdict.status == "hold"
    assert verdict.reasons == ("infeasible f0_mid",)
    assert sup.counters["infeasible"] == 1 and sup.counters["rebase"] == 0
    summary = sup.diagnostics(10.03)[0]  # not "passing commands" while nothing is sent
    assert summary.level == ERROR
    assert summary.message == "holding, sending nothing: infeasible f0_mid"
    assert ("status", "hold") in summary.values
    sup.update_state(state(10.04), 10.04)  # it was a glitch: the next reading is back at the target
    verdict = sup.filter(bump(0.01), 10.05)
    assert verdict.status == "pass" and sup.counters["rebase"] == 0
    assert sup.diagnostics(10.05)[0].level == OK


@pytest.mark.parametrize("previous, latest", [
    (0.3, 0.52),  # the reading before was not yet 2 * max_step away (only max_step)
    (0.6, 1.2),  # both far, but 0.6 rad apart: they do not agree within max_step
])
def test_a_jump_is_confirmed_only_by_two_far_readings_that_agree(previous: float,
                                                                 latest: float) -> None:
    sup = running()  # sent 0 at 10.01
    sup.update_state(state(10.02, bump(previous)), 10.02)
    sup.update_state(state(10.03, bump(latest)), 10.03)
    verdict = sup.filter(bump(latest), 10.04)
    assert verdict.command_rad is None and verdict.reasons == ("infeasible f0_mid",)
    assert sup.counters["rebase"] == 0


def test_a_rebased_joint_starts_again_from_rest() -> None:
    sup = running()  # sent 0 at 10.01, at rest
    sup.update_state(state(10.02), 10.02)
    assert sup.filter(bump(0.024), 10.03).status == "pass"  # now moving up at 1.2 rad/s
    sup.update_state(state(10.04, bump(-0.7)), 10.04)  # pushed down by hand
    sup.update_state(state(10.045, bump(-0.7)), 10.045)
    # from rest the acceleration limit allows 60 * 0.02^2 = 0.024 rad either way; still
    # moving up at 1.2 rad/s, moving down would be an acceleration limit clip
    verdict = sup.filter(bump(-0.72), 10.05)
    assert verdict.reasons == ("rebase f0_mid",)
    assert verdict.command_rad[MID] == pytest.approx(-0.72)


def test_a_teleport_rebases_the_rate_limits_and_commands_flow_at_once() -> None:
    sup = running()  # sent 0 at 10.01
    teleported = bump(0.7)  # a twin reset, a push by hand, a driver restart: 0.7 > 2 * 0.25
    sup.update_state(state(10.02, teleported), 10.02)
    sup.update_state(state(10.03, teleported), 10.03)  # states come faster than commands
    verdict = sup.filter(teleported, 10.04)  # the first command after the jump
    assert verdict.status == "clipped" and verdict.reasons == ("rebase f0_mid",)
    np.testing.assert_allclose(verdict.command_rad, teleported)
    assert sup.counters["rebase"] == 1
    summary = sup.diagnostics(10.04)[0]
    assert summary.level == WARN and summary.message == "clipping: rebase f0_mid"
    assert ("last_rebase_joints", "f0_mid") in summary.values and ("rebase", "1") in summary.values
    # from the measured position on, every limit holds as usual: 3 rad/s * 0.05 s, not further
    sup.update_state(state(10.08, teleported), 10.08)
    verdict = sup.filter(bump(1.2), 10.09)
    assert verdict.reasons == ("velocity_limit f0_mid",)
    assert verdict.command_rad[MID] == pytest.approx(0.7 + 3.0 * 0.05)
    assert sup.counters["rebase"] == 1


def test_fed_one_state_per_command_the_second_command_flows() -> None:
    sup = running()  # like the twin's gate: a state, then a command, every control period
    teleported = np.array([0.6, 0.9, -1.0, -0.6, 1.2, 0.8, 0.0, 0.0, 0.0])
    sup.update_state(state(10.05, teleported), 10.05)
    first = sup.filter(teleported, 10.05)
    assert first.command_rad is None and first.status == "hold"  # one reading is no proof
    sup.update_state(state(10.1, teleported), 10.1)
    second = sup.filter(teleported, 10.1)
    assert second.status == "clipped"
    assert second.reasons == tuple(f"rebase {DCLAW.joint_names[j]}" for j in range(6))
    np.testing.assert_allclose(second.command_rad, teleported)
    sup.update_state(state(10.15, teleported), 10.15)
    assert sup.filter(teleported, 10.15).status == "pass"
    assert sup.counters["rebase"] == 6


def test_a_jump_during_a_hold_holds_where_the_robot_now_is() -> None:
    sup = running()
    effort = np.zeros(N)
    effort[MID] = 2.0
    sup.update_state(state(10.02, effort=effort), 10.02)
    assert sup.tick(10.03).reasons == ("overcurrent f0_mid",)  # hold target: 0
    sup.update_state(state(10.04, bump(0.7), effort=effort), 10.04)  # pushed away while held
    sup.update_state(state(10.05, bump(0.7), effort=effort), 10.05)
    held = sup.tick(10.06)
    assert held.status == "hold" and held.reasons == ("overcurrent f0_mid", "rebase f0_mid")
    np.testing.assert_allclose(held.command_rad, bump(0.7))  # not dragged back to 0
    np.testing.assert_allclose(sup.tick(10.07).command_rad, bump(0.7))
    sup.update_state(state(10.08, bump(0.7)), 10.08)
    assert sup.filter(bump(0.7), 10.09).status == "pass"


@pytest.mark.parametrize("outside, inside, limit", [(1.9, 0.9, 1.38), (-1.5, -0.5, -0.98)])
def test_a_jump_beyond_the_limits_plus_a_step_still_sends_nothing(outside: float, inside: float,
                                                                  limit: float) -> None:
    sup = running()
    sup.update_state(state(10.02, bump(outside)), 10.02)  # 0.52 rad past the limit with margin
    sup.update_state(state(10.03, bump(outside)), 10.03)
    verdict = sup.filter(bump(outside), 10.04)  # no target is within a step of it and in limits
    assert verdict.command_rad is None
    assert verdict.reasons == ("rebase f0_mid", "infeasible f0_mid")  # re-based to the limit
    assert sup.diagnostics(10.04)[0].level == ERROR
    # still more than 2 * max_step from the re-based reference, but it cannot move further
    # (the limit): re-based once, not at every command
    assert sup.filter(bump(outside), 10.05).reasons == ("infeasible f0_mid",)
    sup.update_state(state(10.06, bump(inside)), 10.06)  # back inside, 0.48 rad from the limit
    verdict = sup.filter(bump(inside), 10.2)
    assert verdict.status == "clipped" and verdict.reasons == ("step_from_command f0_mid",)
    toward_inside = 0.25 if inside > limit else -0.25
    assert verdict.command_rad[MID] == pytest.approx(limit + toward_inside)
    assert sup.counters["rebase"] == 1


@pytest.mark.parametrize("field, value, reason", [
    ("effort", 1.5, "overcurrent f0_mid"),
    ("effort", -1.5, "overcurrent f0_mid"),
    ("temperature", 71.0, "overtemperature f0_mid"),
    ("error", True, "hardware_error f0_mid"),
])
def test_telemetry_faults_hold_until_a_clear_state(field: str, value: float, reason: str) -> None:
    sup = running()
    sup.filter(bump(0.05), 10.06)
    arrays = {"effort": np.zeros(N), "temperature": np.full(N, 40.0), "error": np.zeros(N, bool)}
    arrays[field][MID] = value
    sup.update_state(state(10.07, bump(0.03), effort=arrays["effort"],
                           temperature=arrays["temperature"], error=arrays["error"]), 10.07)
    held = sup.tick(10.08)
    assert held is not None and held.status == "hold" and held.reasons == (reason,)
    np.testing.assert_allclose(held.command_rad, bump(0.03))  # frozen measured position
    again = sup.filter(bump(0.2), 10.09)
    assert again.status == "hold" and again.reasons == (reason,)
    np.testing.assert_allclose(again.command_rad, bump(0.03))
    assert sup.counters[reason.split()[0]] == 1  # counted once per episode, not per tick
    sup.update_state(state(10.1, bump(0.03), temperature=np.full(N, 40.0),
                           error=np.zeros(N, bool)), 10.1)
    assert sup.filter(bump(0.05), 10.11).status == "pass"
    assert sup.tick(10.12) is None


@pytest.mark.parametrize("feed", ["omitted", "resent_with_its_stamp"])
def test_telemetry_that_stops_holds_after_its_timeout(feed: str) -> None:
    sup = Supervisor(without_workspace())
    timeout_s = DCLAW.safety.telemetry_timeout_s
    warm = np.full(N, 40.0)
    sup.update_state(dataclasses.replace(state(10.0, temperature=warm), temperature_stamp_s=10.0),
                     10.0)
    t = 10.0
    while t < 10.0 + timeout_s:  # joint states and commands go on; the temperature stops
        t = round(t + 0.05, 6)
        if feed == "omitted":  # None: nothing new
            sup.update_state(state(t), t)
        else:  # what the node does: the last temperature again, with the stamp it came with
            sup.update_state(dataclasses.replace(state(t, temperature=warm),
                                                 temperature_stamp_s=10.0), t)
        verdict = sup.filter(np.zeros(N), t)
        if t - 10.0 <= timeout_s:
            assert verdict.status == "pass", (t, verdict)
    t = round(t + 0.05, 6)
    held = sup.tick(t)
    assert held.status == "hold" and held.reasons == ("stale_telemetry temperature",)
    assert sup.counters["stale_telemetry"] == 1
    telemetry = sup.diagnostics(t)[1]
    assert telemetry.level == ERROR and telemetry.message == "stale_telemetry temperature"
    assert ("temperature_age_s", f"{t - 10.0:.4f}") in telemetry.values
    sup.update_state(dataclasses.replace(state(t + 0.01, temperature=warm),
                                         temperature_stamp_s=t + 0.01), t + 0.01)
    assert sup.filter(np.zeros(N), t + 0.02).status == "pass"


def test_a_driver_that_never_sends_telemetry_runs() -> None:
    sup = Supervisor(without_workspace())  # e.g. the UR bridge: no temperature, no error flags
    for k in range(100):  # 5 s, well past telemetry_timeout_s
        t = 10.0 + 0.05 * k
        sup.update_state(state(t), t)
        assert sup.filter(np.zeros(N), t + 0.01).status == "pass"
    telemetry = sup.diagnostics(15.0)[1]
    assert telemetry.level == OK and ("temperature_age_s", "never received") in telemetry.values


def test_an_older_telemetry_sample_does_not_replace_a_newer_one() -> None:
    sup = running()
    cool, hot = np.full(N, 40.0), np.full(N, 80.0)
    sup.update_state(dataclasses.replace(state(10.05, temperature=cool),
                                         temperature_stamp_s=10.04), 10.05)
    sup.update_state(dataclasses.replace(state(10.06, temperature=hot),
                                         temperature_stamp_s=10.03), 10.06)
    assert sup.filter(np.zeros(N), 10.07).status == "pass"


def test_overtemperature_has_hysteresis() -> None:
    sup = running()
    temperature = np.full(N, 40.0)

    def feed(t: float, mid_c: float) -> None:
        temperature[MID] = mid_c
        sup.update_state(state(t, temperature=temperature.copy()), t)

    feed(10.02, 70.5)  # above the 70 C limit
    assert sup.filter(np.zeros(N), 10.03).reasons == ("overtemperature f0_mid",)
    for k, mid_c in enumerate([69.0, 67.0, 65.1]):  # below the limit, above the 65 C resume
        feed(10.04 + 0.02 * k, mid_c)
        assert sup.filter(np.zeros(N), 10.05 + 0.02 * k).reasons == ("overtemperature f0_mid",)
    feed(10.2, 65.0)  # at the resume value: cool again
    assert sup.filter(np.zeros(N), 10.21).status == "pass"
    feed(10.22, 69.9)  # below the limit: no new hold
    assert sup.filter(np.zeros(N), 10.23).status == "pass"
    assert sup.counters["overtemperature"] == 1


def test_temperature_resume_defaults_below_the_limit_and_must_be_below_it() -> None:
    safety = dataclasses.replace(DCLAW.safety, workspace=None, temperature_resume_c=None,
                                 temperature_limit_c=60.0)
    sup = Supervisor(dataclasses.replace(DCLAW, safety=safety))
    assert sup.limits.temperature_resume_c == 55.0
    safety = dataclasses.replace(safety, temperature_resume_c=60.0)
    with pytest.raises(ConfigError, match=r"dclaw.*safety.temperature_resume_c: 60.0 must be "
                                          r"below safety.temperature_limit_c 60.0"):
        Supervisor(dataclasses.replace(DCLAW, safety=safety))


def test_stale_state_holds_within_one_tick_and_resumes_on_a_fresh_state() -> None:
    sup = running()
    assert sup.tick(10.2) is None  # 0.2 s old: not yet stale
    held = sup.tick(10.21)
    assert held is not None and held.reasons == ("stale_state",)
    np.testing.assert_allclose(held.command_rad, np.zeros(N))
    assert sup.filter(bump(0.05), 10.22).reasons == ("stale_state",)
    assert sup.counters["stale_state"] == 1
    sup.update_state(state(10.23), 10.23)
    assert sup.filter(bump(0.01), 10.24).status == "pass"


def test_stale_commands_hold_and_a_returning_stream_needs_a_fresh_state() -> None:
    sup = running()
    sup.update_state(state(10.4), 10.4)
    assert sup.tick(10.5) is None
    held = sup.tick(10.52)  # 0.51 s since the last command
    assert held is not None and held.reasons == ("stale_command",)
    assert sup.counters["stale_command"] == 1
    waiting = sup.filter(bump(0.05), 10.53)  # the state was measured before the hold began
    assert waiting.status == "hold" and waiting.reasons == ("awaiting_fresh_state",)
    assert sup.tick(10.54).reasons == ("awaiting_fresh_state",)
    sup.update_state(state(10.55), 10.55)
    assert sup.tick(10.56).reasons == ("awaiting_command",)
    assert sup.filter(bump(0.005), 10.57).status == "pass"  # 60 rad/s^2 * 0.01 s^2 allows 0.006
    assert sup.tick(10.58) is None


def test_a_state_stamped_in_the_future_is_invalid_and_the_supervisor_recovers_by_itself() -> None:
    """Before: one state stamped 10 s ahead was taken as the latest, made every correctly stamped
    state after it "out of order", and counted as fresh for 10 s: commands kept passing against a
    robot that was elsewhere."""
    sup = running()  # states received at their stamps: one clock
    sup.update_state(state(20.0, 0.1), 10.02)  # a stamp 10 s ahead of the receiver's clock
    assert sup.counters["stamp_in_future"] == 1 and sup.counters["state_rejected"] == 1
    verdict = sup.filter(bump(0.01), 10.03)
    assert verdict.status == "hold"
    assert verdict.reasons == ("state_invalid stamp_in_future",)
    np.testing.assert_allclose(verdict.command_rad, np.zeros(N))  # the last valid position
    assert sup.state_stamp_s == 10.0  # never the future state
    summary, telemetry = sup.diagnostics(10.03)
    assert summary.level == ERROR and "state_invalid stamp_in_future" in summary.message
    assert ("state_stamp_lag_s", f"{10.02 - 20.0:.4f}") in summary.values
    assert telemetry.message == "state_invalid stamp_in_future"
    assert sup.tick(10.04).reasons == ("state_invalid stamp_in_future",)
    # sane stamps again: no reset needed, the next command after a fresh state passes
    sup.update_state(state(10.05), 10.05)
    assert sup.filter(bump(0.01), 10.06).status == "pass"
    assert sup.state_stamp_s == 10.05 and sup.counters["state_invalid"] == 1


def test_a_stamp_within_the_tolerance_passes_and_so_do_the_states_after_it() -> None:
    sup = running()
    tolerance_s = DCLAW.safety.stamp_tolerance_s
    sup.update_state(state(10.02 + 0.9 * tolerance_s), 10.02)  # clocks a little apart
    assert sup.filter(np.zeros(N), 10.03).status == "pass"
    sup.update_state(state(10.04), 10.04)  # earlier than the one before: still taken
    assert sup.filter(np.zeros(N), 10.05).status == "pass" and sup.state_stamp_s == 10.04
    assert sup.counters["state_stamp_back"] == 1 and sup.counters["state_rejected"] == 0
    sup.update_state(state(10.06 + 1.1 * tolerance_s), 10.06)  # just beyond it
    assert sup.filter(np.zeros(N), 10.07).reasons == ("state_invalid stamp_in_future",)


def test_telemetry_stamped_in_the_future_is_invalid() -> None:
    sup = running()
    warm = np.full(N, 40.0)
    sup.update_state(dataclasses.replace(state(10.02, temperature=warm),
                                         temperature_stamp_s=30.0), 10.02)
    assert sup.filter(np.zeros(N), 10.03).reasons == (
        "state_invalid temperature_stamp_s in the future",)


def test_freshness_counts_from_receipt_on_the_supervisors_clock_not_from_the_stamp() -> None:
    """The stamps' clock is the publisher's (here 9 s behind the supervisor's monotonic clock):
    only the time of receipt makes a state fresh or stale, or ends a hold."""
    sup = Supervisor(without_workspace())
    sup.update_state(state(1.0), 10.0, stamp_now_s=1.01)
    assert sup.filter(np.zeros(N), 10.01).status == "pass"
    assert sup.tick(10.2) is None  # received 0.2 s ago
    assert sup.tick(10.21).reasons == ("stale_state",)
    sup.update_state(state(1.0), 10.22, stamp_now_s=1.22)  # the same reading again: not fresh
    assert sup.tick(10.23).reasons == ("stale_state",)
    sup.update_state(state(1.22), 10.24, stamp_now_s=1.24)  # received after the hold began
    assert sup.tick(10.25).reasons == ("awaiting_command",)
    assert sup.filter(np.zeros(N), 10.26).status == "pass"
    assert sup.diagnostics(10.26)[0].values[1] == ("state_age_s", f"{10.26 - 10.24:.4f}")
    # telemetry that came with a state is as old as its receipt, not as its stamp
    hot = np.full(N, 40.0)
    sup.update_state(state(1.27, temperature=hot), 10.27, stamp_now_s=1.27)
    assert sup.diagnostics()[1].values[N] == ("temperature_age_s", "0.0000")  # at 10.27
    assert sup.filter(np.zeros(N), 10.28).status == "pass"


def test_a_publisher_clock_stepping_back_does_not_stop_the_commands() -> None:
    """NTP steps the driver's clock back 10 s. Before: every later state was "out of order", the
    robot was held until the driver's clock had caught up (and with the supervisor on the same
    wall clock, the old state even counted as fresh for those 10 s)."""
    sup = Supervisor(without_workspace())
    for k in range(4):
        stamp = 1000.0 + 0.05 * k - (10.0 if k >= 2 else 0.0)
        sup.update_state(state(stamp), 10.0 + 0.05 * k, stamp_now_s=stamp + 0.001)
        assert sup.filter(np.zeros(N), 10.01 + 0.05 * k).status == "pass"
        assert sup.state_stamp_s == stamp  # each command is based on the newest state
    assert sup.counters["state_stamp_back"] == 1
    assert sup.tick(10.3) is None


def test_a_wall_clock_step_back_on_the_robots_machine_holds_one_state_at_most() -> None:
    """Driver and safety node on one machine: NTP steps its wall clock back 10 s. Only the state
    measured before the step and received after it looks stamped in the future."""
    sup = Supervisor(without_workspace())
    for stamp, monotonic, wall in [(1000.0, 10.0, 1000.001),
                                   (1000.05, 10.05, 1000.051)]:
        sup.update_state(state(stamp), monotonic, stamp_now_s=wall)
        assert sup.filter(np.zeros(N), monotonic + 0.01).status == "pass"
    sup.update_state(state(1000.08), 10.10, stamp_now_s=990.10)  # the step came in between
    assert sup.filter(np.zeros(N), 10.11).reasons == ("state_invalid stamp_in_future",)
    sup.update_state(state(990.15), 10.15, stamp_now_s=990.151)
    assert sup.filter(np.zeros(N), 10.16).status == "pass"
    assert sup.counters["state_stamp_back"] == 1 and sup.counters["stamp_in_future"] == 1


def test_a_publisher_repeating_its_last_state_goes_stale() -> None:
    """A stalled driver that keeps re-sending its cached reading: the same stamp is the same
    measurement, it refreshes nothing, and it does not end a hold either."""
    sup = running()  # state at 10.0, command at 10.01
    for k in range(1, 5):
        sup.update_state(state(10.0), 10.0 + 0.05 * k)
        assert sup.filter(np.zeros(N), 10.01 + 0.05 * k).status == ("pass" if k < 4 else "hold")
    assert sup.tick(10.22).reasons == ("stale_state",)
    sup.update_state(state(10.0), 10.23)
    assert sup.filter(np.zeros(N), 10.24).reasons == ("stale_state",)
    sup.update_state(state(10.25), 10.25)  # a new measurement
    assert sup.filter(np.zeros(N), 10.26).status == "pass"


def test_the_supervisors_clock_going_back_holds_until_it_is_past_the_latest_time() -> None:
    sup = running()  # state at 10.0, command at 10.01
    sup.update_state(state(10.05), 10.05)
    assert sup.filter(np.zeros(N), 10.06).status == "pass"
    held = sup.filter(np.zeros(N), 9.0)  # a contract violation: the clock never goes back
    assert held.status == "hold" and held.reasons == ("clock_back",)
    assert not sup.reset(9.01)
    assert sup.tick(9.5).reasons == ("clock_back",)
    sup.update_state(state(10.07), 10.07)
    assert sup.filter(np.zeros(N), 10.08).status == "pass"
    assert sup.counters["clock_back"] == 1


def test_an_estop_before_any_command_holds_and_the_watchdog_keeps_sending_it() -> None:
    sup = Supervisor(without_workspace())
    sup.update_state(state(10.0, 0.1), 10.0)
    sup.estop("before the first command", 10.01)
    assert sup.tick(10.02).status == "estop"
    sup.update_state(state(10.03, 0.1), 10.03)
    assert sup.reset(10.04)
    held = sup.tick(10.05)  # still holding, no command yet: the hold is re-sent
    assert held is not None and held.status == "hold" and held.reasons == ("awaiting_command",)
    np.testing.assert_allclose(held.command_rad, np.full(N, 0.1))
    assert sup.reset(10.06) and sup.counters["reset"] == 1  # nothing latched: nothing counted
    assert sup.filter(np.full(N, 0.1), 10.07).status == "pass"


def test_the_watchdog_arms_with_the_first_command() -> None:
    sup = Supervisor(without_workspace())
    assert sup.tick(100.0) is None
    verdict = sup.filter(np.zeros(N), 100.0)
    assert verdict.command_rad is None and verdict.reasons == ("no_state",)
    assert sup.tick(100.01).reasons == ("no_state",)


def test_an_invalid_state_holds_at_the_last_valid_position() -> None:
    sup = running()
    sup.update_state(state(10.02, 0.01), 10.02)
    bad = state(10.03, 0.01)
    bad.position_rad[MID] = np.nan
    sup.update_state(bad, bad.stamp_s)
    verdict = sup.filter(np.zeros(N), 10.04)
    assert verdict.reasons == ("state_invalid position_rad not finite",)
    np.testing.assert_allclose(verdict.command_rad, np.full(N, 0.01))
    assert sup.counters["state_rejected"] == 1 and sup.counters["state_invalid"] == 1
    sup.update_state(state(10.04, np.zeros(N - 1), n=N - 1), 10.045)
    assert sup.counters["state_rejected"] == 2
    sup.update_state(state(10.05, 0.01), 10.05)
    assert sup.filter(np.full(N, 0.01), 10.06).status == "pass"


@pytest.mark.parametrize("field, value, problem", [
    ("stamp_s", np.nan, "stamp not finite"),
    ("hardware_error", np.zeros(N - 1, bool), f"hardware_error shape ({N - 1},)"),
    ("temperature_c", np.full(N - 1, 40.0), f"temperature_c shape ({N - 1},)"),
    ("temperature_stamp_s", np.nan, "temperature_stamp_s not finite"),
    ("hardware_error_stamp_s", np.inf, "hardware_error_stamp_s not finite"),
])
def test_malformed_stamps_and_telemetry_make_a_state_invalid(field: str, value: object,
                                                             problem: str) -> None:
    sup = running()
    sup.update_state(dataclasses.replace(state(10.02, 0.01, temperature=np.full(N, 40.0),
                                               error=np.zeros(N, bool)), **{field: value}),
                     10.02)
    verdict = sup.filter(np.zeros(N), 10.03)
    assert verdict.status == "hold" and verdict.reasons == (f"state_invalid {problem}",)
    np.testing.assert_allclose(verdict.command_rad, np.zeros(N))  # the last valid state's
    assert sup.state_stamp_s == 10.0 and sup.counters["state_rejected"] == 1


def test_a_hold_measured_beyond_a_limit_holds_at_the_limit_without_a_clip() -> None:
    sup = Supervisor(without_workspace())
    effort = np.zeros(N)
    effort[MID] = 2.0
    sup.update_state(state(10.0, bump(1.45), effort=effort), 10.0)  # 0.07 rad past 1.38
    verdict = sup.filter(bump(1.45), 10.1)
    assert verdict.status == "hold" and verdict.reasons == ("overcurrent f0_mid",)
    assert verdict.command_rad[MID] == pytest.approx(1.38)


def test_hold_approaches_its_target_at_the_velocity_limit() -> None:
    sup = running()
    sup.update_state(state(10.05), 10.05)
    sup.filter(bump(0.15), 10.06)  # a 0.15 rad target lead over the measured position
    sup.update_state(state(10.07), 10.07)
    first = sup.filter(bump(np.nan), 10.08)
    assert first.command_rad[MID] == pytest.approx(0.15 - 3.0 * 0.02)
    second = sup.tick(10.09)
    assert second.command_rad[MID] == pytest.approx(0.15 - 3.0 * 0.03)
    assert sup.tick(10.2).command_rad[MID] == pytest.approx(0.0)


def test_estop_latches_until_an_explicit_reset_with_a_fresh_state() -> None:
    sup = running()
    sup.update_state(state(10.02, 0.02), 10.02)
    sup.estop("operator button", 10.03)
    assert sup.estopped and sup.counters["estop"] == 1
    for t in (10.04, 10.05, 11.0):
        verdict = sup.filter(np.full(N, 0.02), t)
        assert verdict.status == "estop" and verdict.reasons == ("estop operator button",)
    assert sup.tick(11.01).status == "estop"
    assert not sup.reset(11.02)  # the latest state predates the e-stop
    assert sup.counters["reset_refused"] == 1 and sup.estopped
    sup.update_state(state(11.03, 0.02), 11.03)
    assert not sup.reset(11.24)  # received after it, but stale by now (0.21 s > 0.2 s)
    assert sup.counters["reset_refused"] == 2 and sup.estopped
    sup.update_state(state(11.25, 0.02), 11.25)
    assert sup.reset(11.26) and not sup.estopped
    assert sup.counters["reset"] == 1
    assert sup.filter(np.full(N, 0.02), 11.27).status == "pass"


def test_a_reset_right_after_an_invalid_state_is_refused() -> None:
    sup = running()
    sup.estop("operator button", 10.02)
    sup.update_state(state(10.03), 10.03)  # valid, fresh, after the e-stop ...
    bad = state(10.04)
    bad.position_rad[MID] = np.nan
    sup.update_state(bad, 10.04)  # ... but the latest one received is not
    assert not sup.reset(10.05)
    assert sup.estopped and sup.counters["reset_refused"] == 1 and sup.counters["reset"] == 0
    sup.update_state(state(10.06), 10.06)
    assert sup.reset(10.07) and not sup.estopped


def test_a_reset_needs_a_new_measurement_received_after_the_estop() -> None:
    sup = running()
    sup.update_state(state(10.02), 10.02)
    sup.estop("operator button", 10.03)
    sup.update_state(state(10.02), 10.04)  # the same reading again (a repeat): not new
    assert not sup.reset(10.05) and sup.estopped
    sup.update_state(state(10.05), 10.06)
    assert sup.reset(10.07) and not sup.estopped


def test_diagnostics_levels_messages_and_counters() -> None:
    sup = running()
    summary, telemetry = sup.diagnostics(10.01)
    assert summary.level == OK and summary.name == "safety: dclaw"
    assert ("verdict_pass", "1") in summary.values
    sup.update_state(state(10.02), 10.02)
    sup.filter(bump(0.5), 10.03)
    summary = sup.diagnostics(10.03)[0]
    assert summary.level == WARN and "velocity_limit f0_mid" in summary.message
    effort = np.zeros(N)
    effort[MID] = 2.0
    sup.update_state(state(10.04, effort=effort), 10.04)
    sup.tick(10.05)
    summary, telemetry = sup.diagnostics(10.05)
    assert summary.level == ERROR and summary.message == "holding: overcurrent f0_mid"
    assert ("overcurrent", "1") in summary.values and ("hold_entered", "1") in summary.values
    assert telemetry.level == ERROR and ("current_a f0_mid", "2.000") in telemetry.values
    sup.estop("test")
    assert sup.diagnostics()[0].message == "E-STOP latched: estop test"


def test_limits_that_make_no_sense_are_errors() -> None:
    safety = dataclasses.replace(DCLAW.safety, workspace=None, position_margin_rad=0.75)
    with pytest.raises(ConfigError, match=r"dclaw.*joints.f0_base.position_limits_rad.*0.75"):
        Supervisor(dataclasses.replace(DCLAW, safety=safety))
    safety = dataclasses.replace(DCLAW.safety, workspace=None, state_timeout_s=float("nan"))
    with pytest.raises(ConfigError, match=r"safety.state_timeout_s"):
        Supervisor(dataclasses.replace(DCLAW, safety=safety))
    safety = dataclasses.replace(DCLAW.safety, workspace=None, max_step_rad=0.0)
    with pytest.raises(ConfigError, match=r"safety.max_step_rad: 0.0 must be a finite number > 0"):
        Supervisor(dataclasses.replace(DCLAW, safety=safety))
    joints = (dataclasses.replace(DCLAW.joints[0], velocity_limit_rad_s=float("inf")),
              *DCLAW.joints[1:])
    with pytest.raises(ConfigError, match=r"joints.f0_base.velocity_limit_rad_s: inf must be > 0"):
        Supervisor(dataclasses.replace(without_workspace(), joints=joints))


ARM_MJCF = """
<mujoco><compiler angle="radian"/><worldbody>
  <body name="l1" pos="0 0 0.1"><joint name="shoulder" axis="0 1 0"/><geom size="0.01"/>
    <body name="l2" pos="0 0 0.2"><joint name="elbow" axis="0 1 0"/><geom size="0.01"/>
      <site name="tip" pos="0 0 0.2"/>
    </body>
  </body>
</worldbody></mujoco>
"""


def arm(tmp_path: Path, sites: tuple[str, ...] = ("tip",)) -> tuple[RobotCalibration, Path]:
    model = tmp_path / "arm.xml"
    model.write_text(ARM_MJCF)
    data = {"robot": "arm2", "kind": "ros2_control_arm", "model_mjcf": str(model),
            "joints": [{"name": n, "position_limits_rad": [-3.0, 3.0], "velocity_limit_rad_s": 1.0,
                        "current_limit_a": 1.0} for n in ("shoulder", "elbow")],
            "safety": {"position_margin_rad": 0.0, "max_step_rad": 0.5,
                       "acceleration_limit_rad_s2": 1000.0, "temperature_limit_c": 60.0,
                       "state_timeout_s": 1.0, "command_timeout_s": 1.0,
                       "workspace": {"sites": list(sites), "lower_m": [-1, -1, 0.3],
                                     "upper_m": [1, 1, 1]}}}
    return from_dict(RobotCalibration, data), model


def test_workspace_scales_the_step_back(tmp_path: Path) -> None:
    calibration, model = arm(tmp_path)
    kinematics = Kinematics.from_mjcf(model, calibration.joint_names)
    sup = Supervisor(calibration, kinematics)
    sup.update_state(state(0.0, np.array([0.3, 0.0]), n=2), 0.0)
    verdict = sup.filter(np.array([0.7, 0.0]), 1.0)  # tip z = 0.1 + 0.4 cos(q0) < 0.3 past 1.047
    assert verdict.status == "pass"
    sup.update_state(state(1.0, np.array([0.7, 0.0]), n=2), 1.0)
    verdict = sup.filter(np.array([1.15, 0.0]), 2.0)
    assert verdict.status == "clipped" and verdict.reasons == ("workspace tip",)
    q0 = verdict.command_rad[0]
    assert 0.7 < q0 <= np.arccos(0.5) and q0 == pytest.approx(np.arccos(0.5), abs=0.45 / 256 + 1e-9)
    assert sup.counters["workspace"] == 1
    # measured outside the box: the last command (inside, and within reach) becomes the base
    sup.update_state(state(3.0, np.array([1.2, 0.0]), n=2), 3.0)
    verdict = sup.filter(np.array([1.3, 0.0]), 3.1)
    assert verdict.status == "clipped" and q0 <= verdict.command_rad[0] <= np.arccos(0.5)
    # ... and when neither base is inside and within reach, nothing is sent
    sup.update_state(state(4.0, np.array([1.7, 0.0]), n=2), 4.0)
    verdict = sup.filter(np.array([1.75, 0.0]), 4.1)
    assert verdict.command_rad is None
    assert verdict.reasons[-2:] == ("workspace tip", "infeasible workspace")


def test_workspace_configuration_errors(tmp_path: Path) -> None:
    calibration, model = arm(tmp_path, sites=("tip", "elbow_site"))
    with pytest.raises(ConfigError, match=r"^calibration 'arm2': safety.workspace.sites: "
                                          r"elbow_site not in the model"):
        Supervisor(calibration)  # loads the model named by the calibration itself
    calibration, model = arm(tmp_path)
    calibration = dataclasses.replace(calibration, source="lab/arm2.yaml")  # as load_robot does
    model.unlink()
    with pytest.raises(ConfigError, match=r"^lab/arm2.yaml: safety.workspace needs the model "
                                          r".*arm.xml"):
        Supervisor(calibration)


def test_a_reference_a_few_ulps_past_a_limit_still_leaves_a_command() -> None:
    """hypothesis found it: arm6's shoulder sent to its limit by one sum (1.4800000000000002)
    and bounded by the limit itself (1.48) made an "empty" box; nothing was sent, so the
    reference never moved and every later command was held as infeasible."""
    limits = JointLimits.from_calibration(load_robot("arm6"))
    reference = np.nextafter(limits.upper_rad, np.inf)  # one ulp past every upper limit
    box, rules = hard_box(limits, limits.upper_rad, reference, 0.0, True)
    command, reasons = constrain(limits.upper_rad, box, rules, limits.joint_names)
    assert command is not None and not any(r.startswith("infeasible") for r in reasons)
    np.testing.assert_allclose(command, limits.upper_rad, atol=1e-12)
    past = limits.upper_rad + 1e-6  # a real gap is still empty
    box, rules = hard_box(limits, limits.upper_rad, past + limits.max_step_rad * 3, 0.0, True)
    assert constrain(limits.upper_rad, box, rules, limits.joint_names)[0] is None
    # ... even one of 1e-9 rad: the step from the reference ends 1e-9 above the limit
    box, rules = hard_box(limits, limits.upper_rad, limits.upper_rad + limits.max_step_rad
                          + 1e-9, 10.0, True)
    assert constrain(limits.upper_rad, box, rules, limits.joint_names)[0] is None


def test_a_step_of_exactly_the_velocity_limit_passes_whatever_the_time_stamps_round_to() -> None:
    """dt = 0.15 - 0.1 rounds to 0.04999999999999999 s, so v * dt falls 5e-17 rad short of a step
    of v * 0.05: the command is still held to the box, but that is no clip to report; 1e-6 rad
    more is."""
    velocity_step = DCLAW.velocity_limit_rad_s * 0.05  # 3 rad/s at 20 Hz
    for extra_rad, clipped in ((0.0, False), (1e-6, True)):
        sup = Supervisor(without_workspace())
        sup.update_state(state(0.1), 0.1)
        assert sup.filter(np.zeros(N), 0.1).status == "pass"
        sup.update_state(state(0.15), 0.15)
        verdict = sup.filter(velocity_step + extra_rad, 0.15)
        assert (verdict.status == "clipped") == clipped, verdict
        assert np.all(verdict.command_rad <= DCLAW.velocity_limit_rad_s * (0.15 - 0.1) + 1e-15)
        if clipped:
            assert all(r.startswith("velocity_limit") for r in verdict.reasons)
