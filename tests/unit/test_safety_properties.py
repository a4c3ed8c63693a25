"""Properties of the supervisor under random, adversarial streams (hypothesis).

Streams interleave states (tracking the last command, or anywhere, with telemetry faults now and
then), commands (near, jumping, huge, NaN, inf), watchdog ticks, e-stops and resets, at random
time steps. For the D'Claw calibration and for generated robots, every emitted command must be
finite, inside the position limits with margin, within max_step of the measured position, within
velocity limit * dt of the previous emitted command, and inside the workspace when one is set;
e-stops latch until a reset; a stale state or a stale command stream holds at the next tick.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from robot_rl.config import from_dict
from robot_rl.robot_config import CALIBRATION_DIR, RobotCalibration, load_robot
from robot_rl.safety import JointLimits, Kinematics, RobotState, Supervisor, Verdict

EPS = 1e-9
DCLAW = load_robot("dclaw")
def profile(examples: int) -> settings:
    # the shared 2-core machine makes timings noisy: no per-example deadline
    checks = [HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
    return settings(max_examples=examples, deadline=None, suppress_health_check=checks)

unit = st.floats(-1.0, 1.0)
time_steps = st.one_of(st.just(0.0), st.floats(1e-4, 0.05), st.floats(1e-4, 0.05),
                       st.floats(1e-4, 0.05), st.floats(0.05, 0.8))


KINDS = ["state"] * 6 + ["command"] * 8 + ["tick"] * 4 + ["estop"] + ["reset"] * 3


@st.composite
def events(draw: st.DrawFn, n: int) -> tuple[list[float], list[tuple]]:
    """(goal, events): the goal is a configuration (in [-1, 1] per joint, scaled to the limits)
    that "goal" commands head for, so streams also push steadily against limits and bounds."""
    vector = st.lists(unit, min_size=n, max_size=n)
    stream = []
    for _ in range(draw(st.integers(5, 80))):
        kind, dt = draw(st.sampled_from(KINDS)), draw(time_steps)
        if kind == "state":
            stream.append((kind, dt, draw(st.sampled_from(["track"] * 5 + ["random"])),
                           draw(vector), draw(st.floats(0.0, 0.05)),
                           draw(st.sampled_from(["ok"] * 12 + ["overcurrent", "overtemperature",
                                                               "error"]))))
        elif kind == "command":
            kinds = ["goal"] * 4 + ["near", "near", "jump", "huge", "nonfinite"]
            specials = st.sampled_from([np.nan, np.inf, -np.inf, None])
            stream.append((kind, dt, draw(st.sampled_from(kinds)), draw(vector),
                           draw(st.sampled_from([0.01, 0.3, 1.0, 3.0])),
                           draw(st.lists(specials, min_size=n, max_size=n))))
        else:
            stream.append((kind, dt))
    return draw(vector), stream


class StreamChecker:
    """Drives a supervisor with one stream and checks every verdict against the properties."""

    def __init__(self, calibration: RobotCalibration, kinematics: Kinematics | None,
                 home: np.ndarray) -> None:
        self.sup = Supervisor(calibration, kinematics)
        self.limits = self.sup.limits
        self.kinematics = kinematics
        self.workspace = calibration.safety.workspace
        self.home = home
        self.now = 0.0
        self.latest: RobotState | None = None
        self.prev: tuple[np.ndarray, float] | None = None
        self.last_command_s: float | None = None
        self.estop_s: float | None = None  # latched since, None when not latched
        self.statuses: list[str] = []

    def run(self, scenario: tuple[list[float], list[tuple]]) -> None:
        goal, stream = scenario
        lim = self.limits
        self.goal = lim.lower_rad + (np.array(goal) + 1) / 2 * (lim.upper_rad - lim.lower_rad)
        self.state_event(("state", 0.0, "track", [0.0] * len(self.home), 0.0, "ok"))
        for event in stream:
            self.now += event[1]
            getattr(self, f"{event[0]}_event")(event)

    def state_event(self, event: tuple) -> None:
        _, _, kind, noise, delay, telemetry = event
        noise = np.array(noise)
        lim = self.limits
        if kind == "track":
            base = self.home if self.prev is None else self.prev[0]
            position = base + noise * 0.4 * lim.max_step_rad
        else:
            position = lim.lower_rad - 0.5 + (noise + 1) / 2 * (lim.upper_rad - lim.lower_rad + 1)
        n = len(position)
        effort = noise * lim.current_limit_a * 0.95
        temperature = np.full(n, 30.0)
        error = np.zeros(n, bool)
        if telemetry == "overcurrent":
            effort[0] = 1.5 * lim.current_limit_a[0]
        elif telemetry == "overtemperature":
            temperature[-1] = lim.temperature_limit_c + 1.0
        elif telemetry == "error":
            error[n // 2] = True
        stamp = self.now - delay
        if self.latest is not None:
            stamp = max(stamp, self.latest.stamp_s)  # in order: the supervisor drops older ones
        self.latest = RobotState(stamp, position, np.zeros(n), effort, temperature, error)
        self.sup.update_state(self.latest)

    def command_event(self, event: tuple) -> None:
        _, _, kind, noise, scale, specials = event
        noise = np.array(noise)
        lim = self.limits
        base = self.home if self.prev is None else self.prev[0]
        if kind == "goal":
            command = self.goal + noise * 0.01 * scale
        elif kind in ("near", "nonfinite"):
            command = base + noise * scale * lim.max_step_rad
            if kind == "nonfinite":
                command = np.array([c if s is None else s for c, s in zip(command, specials)])
        elif kind == "jump":
            command = noise * scale * (np.abs(lim.lower_rad) + np.abs(lim.upper_rad) + 1)
        else:
            command = noise * 10.0 ** (12 * scale)
        verdict = self.sup.filter(command, self.now)
        self.last_command_s = self.now
        self.check(verdict)
        if verdict.status == "pass":
            np.testing.assert_array_equal(verdict.command_rad, command)
        if not np.isfinite(command).all():
            assert verdict.status in ("hold", "estop")

    def tick_event(self, event: tuple) -> None:
        verdict = self.sup.tick(self.now)
        if verdict is not None:
            self.check(verdict)
        if self.last_command_s is None or self.estop_s is not None:
            return
        stale_state = self.latest is None or (self.now - self.latest.stamp_s
                                              > self.limits.state_timeout_s)
        stale_command = self.now - self.last_command_s > self.limits.command_timeout_s
        if stale_state or stale_command:
            assert verdict is not None and verdict.status == "hold", (stale_state, verdict)
            expected = "stale_state" if stale_state else "stale_command"
            assert expected in verdict.reasons

    def estop_event(self, event: tuple) -> None:
        self.sup.estop("property test", self.now)
        self.estop_s = self.now if self.estop_s is None else max(self.estop_s, self.now)

    def reset_event(self, event: tuple) -> None:
        latched = self.estop_s is not None
        done = self.sup.reset(self.now)
        if latched:
            fresh = (self.latest is not None and self.latest.stamp_s > self.estop_s
                     and self.now - self.latest.stamp_s <= self.limits.state_timeout_s)
            assert done == fresh
            if done:
                self.estop_s = None

    def check(self, verdict: Verdict) -> None:
        self.statuses.append(verdict.status)
        assert (verdict.status == "estop") == (self.estop_s is not None), verdict
        c = verdict.command_rad
        if c is None:
            assert verdict.status in ("hold", "estop")
            return
        lim = self.limits
        assert np.isfinite(c).all()
        assert np.all(c >= lim.lower_rad - EPS) and np.all(c <= lim.upper_rad + EPS)
        measured = self.latest.position_rad
        assert np.all(np.abs(c - measured) <= lim.max_step_rad + EPS)
        if self.prev is not None:
            last, last_s = self.prev
            dt = max(0.0, self.now - last_s)
            assert np.all(np.abs(c - last) <= lim.velocity_limit_rad_s * dt + EPS)
            assert np.all(np.abs(c - last) <= lim.max_step_rad + EPS)
        else:
            dt = max(0.0, self.now - self.latest.stamp_s)
            assert np.all(np.abs(c - measured) <= lim.velocity_limit_rad_s * dt + EPS)
        if self.kinematics is not None:
            p = self.kinematics.site_positions_m(c, self.workspace.sites)
            assert np.all(p >= np.array(self.workspace.lower_m) - EPS)
            assert np.all(p <= np.array(self.workspace.upper_m) + EPS)
        self.prev = (c.copy(), self.now)


def without_workspace(calibration: RobotCalibration) -> RobotCalibration:
    return dataclasses.replace(calibration,
                               safety=dataclasses.replace(calibration.safety, workspace=None))


CALIBRATIONS = sorted(p.stem for p in CALIBRATION_DIR.glob("*.yaml"))


@pytest.mark.parametrize("name", CALIBRATIONS)
def test_calibration_streams(name: str) -> None:
    calibration = without_workspace(load_robot(name))
    home = np.clip(np.zeros(calibration.n_joints), calibration.lower_rad + 0.1,
                   calibration.upper_rad - 0.1)

    @profile(60 if name == "dclaw" else 30)
    @given(stream=events(calibration.n_joints))
    def check(stream: tuple) -> None:
        StreamChecker(calibration, None, home).run(stream)

    check()


@st.composite
def robots(draw: st.DrawFn, n: int | None = None) -> RobotCalibration:
    n = draw(st.integers(1, 8)) if n is None else n
    joints, widths = [], []
    for i in range(n):
        lo = draw(st.floats(-3.0, 2.0))
        width = draw(st.floats(0.2, 3.0))
        widths.append(width)
        joints.append({"name": f"j{i}", "position_limits_rad": [lo, lo + width],
                       "velocity_limit_rad_s": draw(st.floats(0.05, 20.0)),
                       "current_limit_a": draw(st.floats(0.1, 5.0))})
    safety = {"position_margin_rad": draw(st.floats(0.0, min(0.5, 0.4 * min(widths)))),
              "max_step_rad": draw(st.floats(0.001, 1.0)),
              "acceleration_limit_rad_s2": draw(st.floats(0.1, 1000.0)),
              "temperature_limit_c": draw(st.floats(20.0, 90.0)),
              "state_timeout_s": draw(st.floats(0.005, 1.0)),
              "command_timeout_s": draw(st.floats(0.005, 1.0))}
    return from_dict(RobotCalibration, {"robot": "generated", "kind": "ros2_control_arm",
                                        "model_mjcf": "none.xml", "joints": joints,
                                        "safety": safety})


@profile(120)
@given(data=st.data())
def test_generated_robot_streams(data: st.DataObject) -> None:
    calibration = data.draw(robots())
    home = (calibration.lower_rad + calibration.upper_rad) / 2
    StreamChecker(calibration, None, home).run(data.draw(events(calibration.n_joints)))


# A stand-in for the D'Claw model (used until sim_twin/models/dclaw_valve.xml exists, and
# alongside it after): three fingers hanging from a base 0.18 m up, each an abduction joint and
# two flexion joints, with the calibration's joint and site names; straight fingertips reach
# below the workspace floor, flexed ones stay above it.
STAND_IN_HAND = """
<mujoco model="dclaw_stand_in"><compiler angle="radian"/><worldbody>
  <body name="base" pos="0 0 0.18">{fingers}</body>
</worldbody></mujoco>
"""
FINGER = """
<body name="f{i}" pos="{x} {y} 0" euler="0 0 {yaw}">
  <joint name="f{i}_base" axis="1 0 0"/><geom size="0.01"/>
  <body pos="0 0 -0.03"><joint name="f{i}_mid" axis="0 1 0"/><geom size="0.01"/>
    <body pos="0 0 -0.07"><joint name="f{i}_tip" axis="0 1 0"/><geom size="0.01"/>
      <site name="f{i}_tip_site" pos="0 0 -0.09"/>
    </body>
  </body>
</body>
"""


def stand_in_hand(path: Path) -> Path:
    fingers = "".join(FINGER.format(i=i, x=0.05 * np.cos(a), y=0.05 * np.sin(a), yaw=a)
                      for i, a in enumerate(np.deg2rad([90.0, 210.0, 330.0])))
    path.write_text(STAND_IN_HAND.format(fingers=fingers))
    return path


def inside_home(kinematics: Kinematics, calibration: RobotCalibration) -> np.ndarray:
    """A configuration inside the workspace, found by a seeded search (the stream starts there)."""
    bounds = calibration.safety.workspace
    rng = np.random.default_rng(0)
    limits = JointLimits.from_calibration(calibration)
    q = rng.uniform(limits.lower_rad, limits.upper_rad, size=(2000, calibration.n_joints))
    p = kinematics.site_positions_m(q, bounds.sites)
    ok = ((p >= bounds.lower_m) & (p <= bounds.upper_m)).all(axis=(-1, -2))
    assert ok.any(), "no configuration inside the workspace: the model and the bounds disagree"
    return q[np.argmax(ok)]


@pytest.mark.parametrize("name", ["stand_in_hand", *CALIBRATIONS])
def test_streams_stay_in_the_workspace(name: str, tmp_path_factory: pytest.TempPathFactory) -> None:
    if name == "stand_in_hand":
        calibration = DCLAW
        path = stand_in_hand(tmp_path_factory.mktemp("hand") / "dclaw_stand_in.xml")
    else:
        calibration = load_robot(name)
        path = calibration.model_path()
        if calibration.safety.workspace is None:
            pytest.skip(f"calibration {name} sets no safety.workspace")
        if not path.exists():
            pytest.skip(f"{path} is not written yet (the twin's MJCF, another engineer's part)")
    kinematics = Kinematics.from_mjcf(path, calibration.joint_names)
    home = inside_home(kinematics, calibration)

    @profile(30)
    @given(stream=events(calibration.n_joints))
    def check(stream: tuple) -> None:
        StreamChecker(calibration, kinematics, home).run(stream)

    check()


@st.composite
def chains(draw: st.DrawFn) -> tuple[str, int]:
    """A serial chain MJCF: random joint count, axes, link offsets, hinge or slide joints."""
    n = draw(st.integers(1, 6))
    body = f'<site name="tip" pos="0 0 {draw(st.floats(0.05, 0.3)):.3f}"/>'
    for i in reversed(range(n)):
        axis = draw(st.sampled_from(["1 0 0", "0 1 0", "0 0 1", "0.6 0 0.8"]))
        kind = draw(st.sampled_from(["hinge", "hinge", "slide"]))
        z = draw(st.floats(0.02, 0.3))
        body = (f'<body pos="0 0 {z:.3f}"><joint name="j{i}" type="{kind}" axis="{axis}"/>'
                f'<geom size="0.01"/>{body}</body>')
    return f'<mujoco><compiler angle="radian"/><worldbody>{body}</worldbody></mujoco>', n


@profile(40)
@given(data=st.data())
def test_generated_chains_stay_in_the_workspace(data: st.DataObject, tmp_path_factory) -> None:
    text, n = data.draw(chains())
    robot = data.draw(robots(n))
    path = tmp_path_factory.mktemp("chain") / "chain.xml"
    path.write_text(text)
    kinematics = Kinematics.from_mjcf(path, robot.joint_names)
    home = (robot.lower_rad + robot.upper_rad) / 2
    tip = kinematics.site_positions_m(home, ("tip",))[0]
    half = np.array(data.draw(st.lists(st.floats(0.01, 0.5), min_size=3, max_size=3)))
    workspace = {"sites": ("tip",), "lower_m": tuple(tip - half), "upper_m": tuple(tip + half)}
    safety = from_dict(type(robot.safety), {**dataclasses.asdict(robot.safety),
                                            "workspace": workspace})
    calibration = dataclasses.replace(robot, safety=safety)
    StreamChecker(calibration, kinematics, home).run(data.draw(events(n)))
