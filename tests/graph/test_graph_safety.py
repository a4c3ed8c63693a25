"""The safety node in its own process, over real DDS, with this test playing the robot.

The probe publishes joint states and telemetry like a driver and raw commands like a learner, and
checks what the safety node lets through on COMMAND and reports on DIAGNOSTICS.
"""

from __future__ import annotations

import os
import subprocess
import time
from typing import Any

import numpy as np
from graph_probe import Probe, node_cmd, params, stop
from helpers.backends import both_backends

from robot_rl.nodes import topics
from robot_rl.nodes.safety import reorder
from robot_rl.robot_config import load_robot
from robot_rl.ros import messages as m
from robot_rl.ros.qos import QOS_DEFAULT, QOS_SENSOR_DATA

CAL = load_robot("dclaw")
NAMES = list(CAL.joint_names)
N = len(NAMES)
STATE_PERIOD_S = 0.02
COMMAND_PERIOD_S = 0.05


class Robot:
    """The probe acting as driver (state, telemetry) and as learner (raw commands)."""

    def __init__(self, probe: Probe) -> None:
        node = probe.node
        self.probe = probe
        self.joints = node.create_publisher(m.JointState, topics.JOINT_STATES, QOS_SENSOR_DATA)
        self.temperature = node.create_publisher(m.Float32MultiArray, topics.TEMPERATURE,
                                                 QOS_SENSOR_DATA)
        self.raw = node.create_publisher(m.JointState, topics.COMMAND_RAW, QOS_DEFAULT)
        self.estop = node.create_publisher(m.Bool, topics.ESTOP, QOS_DEFAULT)
        self.reset = node.create_publisher(m.Bool, topics.ESTOP_RESET, QOS_DEFAULT)
        self.commands = probe.listen("command", m.JointState, topics.COMMAND, QOS_DEFAULT)
        self.diagnostics = probe.listen("diagnostics", m.DiagnosticArray, topics.DIAGNOSTICS,
                                        QOS_DEFAULT)
        self.status = probe.listen("status", m.String, topics.SAFETY_STATUS, QOS_DEFAULT)
        self.position = np.zeros(N)
        self.temperature_c = 35.0
        self.publishing_state = True
        self.commanding = True
        self.stamp_offset_s = 0.0  # the driver's clock against this machine's (a clock fault)
        self.stamps: list[float] = []  # every joint state stamp published, in order
        self._next_state_s = self._next_command_s = 0.0

    def step(self) -> None:
        """Called often: state at 50 Hz, telemetry with it, commands (current position) at 20 Hz."""
        now = time.monotonic()
        if self.publishing_state and now >= self._next_state_s:
            self._next_state_s = now + STATE_PERIOD_S
            self.publish_state(time.time() + self.stamp_offset_s)
            self.temperature.publish(m.Float32MultiArray(data=[self.temperature_c] * N))
        if self.commanding and now >= self._next_command_s:
            self._next_command_s = now + COMMAND_PERIOD_S
            self.raw.publish(m.joint_state(NAMES, self.position))

    def publish_state(self, stamp_s: float) -> None:
        # rounded as the header carries it (integer ns), so stamps compare exactly
        stamp_s = m.stamp_to_s(m.s_to_stamp(stamp_s))
        self.stamps.append(stamp_s)
        self.joints.publish(m.joint_state(NAMES, self.position, np.zeros(N), np.zeros(N),
                                          stamp_s=stamp_s))

    def messages_with(self, text: str) -> list[str]:
        return [s.message for d in self.diagnostics for s in d.status if text in s.message]

    def last_status(self) -> str:
        return self.status[-1].data if self.status else ""


def start_safety(spawn: Any, **extra: Any) -> subprocess.Popen:
    return spawn(node_cmd("robot_rl.nodes.safety", "-r", "__ns:=/hand",
                          *params(robot="dclaw", diagnostics_rate_hz=2.0, **extra.pop("p", {}))),
                 **extra)


def last_counters(robot: Robot) -> dict[str, str]:
    """The counters of the newest diagnostics report, {} before the first."""
    return {v.key: v.value for d in robot.diagnostics[-1:] for v in d.status[0].values}


def wait_passing(robot: Robot, timeout_s: float = 20.0) -> None:
    robot.probe.wait_until(lambda: robot.last_status() == "pass", timeout_s, robot.step,
                           period_s=0.005, what="safety status 'pass'")


def test_reorder_takes_the_calibration_names_in_any_order_and_nothing_else() -> None:
    """In process: the name check that guards both callbacks (in order is the fast path)."""
    values = np.arange(N) * 0.1 - 0.3
    rng = np.random.default_rng(3)
    for names in (NAMES, tuple(NAMES), [NAMES[i] for i in rng.permutation(N)]):
        by_name = dict(zip(names, values))
        got = reorder(names, values.tolist(), NAMES)
        np.testing.assert_array_equal(got, [by_name[n] for n in NAMES])
        assert got.dtype == np.float64
    assert reorder(NAMES, values[:-1], NAMES) is None  # one value short
    assert reorder(NAMES[:-1], values[:-1], NAMES) is None  # one joint short
    assert reorder([*NAMES[:-1], NAMES[0]], values, NAMES) is None  # a joint twice
    assert reorder([*NAMES[:-1], "thumb"], values, NAMES) is None  # an unknown joint
    original = values.tolist()
    reorder(NAMES, original, NAMES)[0] = 99.0
    assert original[0] == values[0]  # a copy, not a view of the message


@both_backends
def test_stale_commands_and_overtemperature_hold_with_reasons(ros_domain: int,
                                                              spawn: Any) -> None:
    safety = start_safety(spawn)
    probe = Probe()
    try:
        robot = Robot(probe)
        wait_passing(robot)
        assert robot.commands, "a passing command is published on COMMAND"
        np.testing.assert_allclose(robot.commands[-1].position, robot.position, atol=1e-9)

        # the learner goes silent: the watchdog holds within command_timeout_s
        robot.commanding = False
        took = probe.wait_until(lambda: bool(robot.messages_with("stale_command")), 5.0,
                                robot.step, period_s=0.005, what="stale_command diagnostics")
        assert CAL.safety.command_timeout_s - 0.05 < took < CAL.safety.command_timeout_s + 1.5
        assert robot.last_status() == "hold"
        robot.commanding = True
        wait_passing(robot)

        # a servo overheats: hold with the joint named, although commands keep coming
        robot.temperature_c = CAL.safety.temperature_limit_c + 5.0
        probe.wait_until(lambda: bool(robot.messages_with("overtemperature f0_base")), 5.0,
                         robot.step, period_s=0.005, what="overtemperature diagnostics")
        probe.spin_for(0.3, robot.step, period_s=0.005)
        assert robot.last_status() == "hold"
        held = robot.commands[-1].position
        np.testing.assert_allclose(held, robot.position, atol=1e-9)  # holds where it is
        counters = last_counters(robot)
        assert int(counters["overtemperature"]) >= 1 and int(counters["stale_command"]) >= 1
    finally:
        probe.destroy()
    assert stop(safety) == 0


@both_backends
def test_estop_latches_and_resets_only_after_fresh_state(ros_domain: int, spawn: Any) -> None:
    master, slave = os.openpty()  # a terminal for the keyboard e-stop
    safety = start_safety(spawn, p={"keyboard_estop": True}, stdin=slave)
    os.close(slave)
    probe = Probe()
    try:
        robot = Robot(probe)
        wait_passing(robot)

        robot.estop.publish(m.Bool(data=True))
        probe.wait_until(lambda: robot.last_status() == "estop", 5.0, robot.step,
                         period_s=0.005, what="estop status")
        probe.spin_for(0.5, robot.step, period_s=0.005)
        assert robot.last_status() == "estop"  # commands keep coming, the latch stays

        # no state measured since the e-stop: a reset is refused
        robot.publishing_state = False
        probe.spin_for(CAL.safety.state_timeout_s + 0.2, robot.step, period_s=0.005)
        robot.reset.publish(m.Bool(data=True))
        probe.spin_for(0.5, robot.step, period_s=0.005)
        assert robot.last_status() == "estop"
        assert robot.messages_with("E-STOP latched")

        # fresh state, then a reset: commands pass again
        robot.publishing_state = True
        probe.spin_for(0.2, robot.step, period_s=0.005)
        robot.reset.publish(m.Bool(data=True))
        wait_passing(robot, timeout_s=5.0)
        # STATUS and DIAGNOSTICS are separate topics: the report counting the reset may arrive
        # after the status that says commands pass
        probe.wait_until(lambda: int(last_counters(robot).get("reset", 0)) >= 1, 5.0, robot.step,
                         period_s=0.005, what="diagnostics counting the reset")
        counters = last_counters(robot)
        assert int(counters["reset_refused"]) >= 1 and int(counters["reset"]) == 1

        os.write(master, b" ")  # space in the safety node's terminal
        probe.wait_until(lambda: bool(robot.messages_with("estop keyboard")), 5.0, robot.step,
                         period_s=0.005, what="keyboard e-stop")
        assert robot.last_status() == "estop"
    finally:
        probe.destroy()
        os.close(master)
    assert stop(safety) == 0


def test_state_stamps_from_a_wrong_clock_neither_blind_it_nor_stop_it(ros_domain: int,
                                                                   spawn: Any) -> None:
    """Freshness is the safety node's own monotonic clock at receipt; a stamp is only checked
    against the future, and COMMAND carries the stamp of the state each verdict was based on.

    Before: one state stamped 10 s ahead made every later state "out of order" while the frozen
    state counted as fresh (commands kept passing for 10 s); a driver clock stepping back 10 s
    (NTP) made every state "out of order" and held the robot until its clock caught up."""
    safety = start_safety(spawn)
    probe = Probe()
    try:
        robot = Robot(probe)
        wait_passing(robot)
        # C1: every COMMAND is stamped with a joint state stamp, the basis of its verdict
        basis = {m.stamp_to_s(c.header.stamp) for c in robot.commands}
        assert basis and basis <= set(robot.stamps), sorted(basis - set(robot.stamps))[:3]

        # one state from 10 s in the future, then none for a while: invalid, named, held
        robot.publish_state(time.time() + 10.0)
        robot.publishing_state = False
        probe.wait_until(lambda: bool(robot.messages_with("state_invalid stamp_in_future")),
                         5.0, robot.step, period_s=0.005, what="stamp_in_future diagnostics")
        assert robot.last_status() == "hold"
        # sane stamps again: it recovers by itself (no reset), and the future state was never
        # the basis of a verdict
        robot.publishing_state = True
        wait_passing(robot, timeout_s=5.0)
        assert robot.stamps[-1] < robot.stamps[0] + 10.0
        assert all(m.stamp_to_s(c.header.stamp) < time.time() + 1.0 for c in robot.commands)

        # the driver's clock steps back 10 s: its states are still the freshest there are
        robot.stamp_offset_s = -10.0
        first_back = len(robot.stamps)
        holds = sum(s.data == "hold" for s in robot.status)

        def passed_on_stepped_back_states() -> int:
            back = set(robot.stamps[first_back:])
            return sum(m.stamp_to_s(c.header.stamp) in back for c in robot.commands)

        # 20 commands (1 s at 20 Hz) based on those states: five state timeouts without a hold
        probe.wait_until(lambda: passed_on_stepped_back_states() >= 20, 10.0, robot.step,
                         period_s=0.005, what="commands passed on the stepped-back states")
        assert robot.last_status() == "pass"
        assert sum(s.data == "hold" for s in robot.status) == holds
        probe.wait_until(lambda: int(last_counters(robot).get("state_stamp_back", 0)) >= 1, 5.0,
                         robot.step, period_s=0.005, what="diagnostics counting the step back")
        counters = last_counters(robot)
        assert int(counters["state_stamp_back"]) == 1 and int(counters["state_rejected"]) >= 1
    finally:
        probe.destroy()
    assert stop(safety) == 0
