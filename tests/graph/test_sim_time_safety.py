"""The safety node under ``use_sim_time``, in its own process over real DDS: its watchdog counts
sim seconds, firing when the robot's states stop while the clock goes on (however little wall time
that takes) and not while the clock stands still (however much); with the lockstep twin, it
holds when the commands stop."""

from __future__ import annotations

import subprocess
from typing import Any

import numpy as np
import pytest
from graph_probe import Probe, node_cmd, params, stop
from helpers.backends import both_backends

from robot_rl.nodes import topics
from robot_rl.robot_config import load_robot
from robot_rl.ros import messages as m
from robot_rl.ros.api import CLOCK_TOPIC, QOS_CLOCK_WRITER
from robot_rl.ros.qos import QOS_DEFAULT, QOS_SENSOR_DATA

pytestmark = pytest.mark.graph
CAL = load_robot("dclaw")
NAMES = list(CAL.joint_names)
STATE_TIMEOUT_S = CAL.safety.state_timeout_s
COMMAND_TIMEOUT_S = CAL.safety.command_timeout_s


def start_safety(spawn: Any) -> Any:
    return spawn(node_cmd("robot_rl.nodes.safety", "-r", "__ns:=/hand",
                          *params(robot="dclaw", use_sim_time=True)),
                 stderr=subprocess.DEVNULL)


class Monitor:
    """The safety node's verdicts as its diagnostics tell them, with their (sim) stamps."""

    def __init__(self, probe: Probe) -> None:
        self.arrays = probe.listen("diag", m.DiagnosticArray, topics.DIAGNOSTICS, QOS_DEFAULT)
        self.status = probe.listen("status", m.String, topics.SAFETY_STATUS, QOS_DEFAULT)
        self.commands = probe.listen("command", m.JointState, topics.COMMAND, QOS_DEFAULT)

    def first(self, reason: str) -> float | None:
        """The stamp of the first diagnostics naming ``reason`` (a safety summary's message)."""
        for array in self.arrays:
            if any(s.name.startswith("safety:") and reason in s.message for s in array.status):
                return m.stamp_to_s(array.header.stamp)
        return None


def warm_up(probe: Probe, monitor: Monitor, clock: Any, joints: Any, raw: Any,
            position: np.ndarray, now_s: float) -> float:
    """/clock, a state and a command every few ms until the safety node passes one: a publisher
    that matched its reader is not yet matched by the reader on Fast DDS (rclpy), and best-effort
    samples sent before that are lost. The sim time reached."""
    zeros = np.zeros(len(NAMES))

    def step() -> None:
        nonlocal now_s
        now_s = round(now_s + 0.01, 6)
        clock.publish(m.Clock(clock=m.s_to_stamp(now_s)))
        joints.publish(m.joint_state(NAMES, position, zeros, zeros, stamp_s=now_s))
        raw.publish(m.joint_state(NAMES, position, stamp_s=now_s))

    probe.wait_until(lambda: bool(monitor.commands) and bool(monitor.status)
                     and monitor.status[-1].data == "pass", 30, every=step, period_s=0.02,
                     what="a passing command")
    return now_s


@both_backends
def test_watchdog_fires_in_sim_seconds_when_states_stop(ros_domain: int, spawn: Any) -> None:
    """This process is the simulator: it publishes /clock and the hand's states, and commands."""
    safety = start_safety(spawn)
    probe = Probe()
    try:
        monitor = Monitor(probe)
        clock = probe.node.create_publisher(m.Clock, CLOCK_TOPIC, QOS_CLOCK_WRITER)
        joints = probe.node.create_publisher(m.JointState, topics.JOINT_STATES, QOS_SENSOR_DATA)
        raw = probe.node.create_publisher(m.JointState, topics.COMMAND_RAW, QOS_DEFAULT)
        probe.wait_until(lambda: min(clock.matched_count(), joints.matched_count(),
                                     raw.matched_count()) > 0, 30, what="the safety node")
        position = np.clip(np.zeros(len(NAMES)), CAL.lower_rad, CAL.upper_rad)
        now = [warm_up(probe, monitor, clock, joints, raw, position, 100.0)]

        def tick(with_state: bool, command: bool = True) -> None:
            """One 10 ms step of sim time: /clock, the state, a command answering it."""
            now[0] = round(now[0] + 0.01, 6)
            clock.publish(m.Clock(clock=m.s_to_stamp(now[0])))
            if with_state:
                joints.publish(m.joint_state(NAMES, position, np.zeros(len(NAMES)),
                                             np.zeros(len(NAMES)), stamp_s=now[0]))
            if command:
                raw.publish(m.joint_state(NAMES, position, stamp_s=now[0]))
            sent = len(monitor.commands)
            if with_state and command:  # the verdict for this step, before the next
                probe.wait_until(lambda: len(monitor.commands) > sent, 10, what="a verdict")
            else:
                probe.spin_for(0.002)

        for _ in range(30):
            tick(with_state=True)
        probe.wait_until(lambda: bool(monitor.status) and monitor.status[-1].data == "pass", 10,
                         what="passing commands")
        last_state_s = now[0]
        # the clock stands still: no sim time passes, nothing goes stale, however long we wait
        probe.spin_for(1.5)
        assert monitor.first("stale_state") is None and monitor.status[-1].data == "pass"
        # the states stop, the clock goes on (in a few wall milliseconds): stale after
        # state_timeout_s of sim time, not before, and before the clock went much further
        while now[0] < last_state_s + STATE_TIMEOUT_S + 0.1:
            tick(with_state=False)
        probe.wait_until(lambda: monitor.first("stale_state") is not None, 10,
                         what="stale_state in the safety node's diagnostics")
        held_at = monitor.first("stale_state")
        assert last_state_s + STATE_TIMEOUT_S - 1e-6 <= held_at <= last_state_s + STATE_TIMEOUT_S + 0.1
        probe.wait_until(lambda: monitor.status[-1].data == "hold", 5, what="hold")
    finally:
        probe.destroy()
    assert stop(safety) == 0


@both_backends
def test_watchdog_holds_in_sim_time_when_commands_stop(ros_domain: int, spawn: Any) -> None:
    """The lockstep twin and the safety node, commands from this process; then none."""
    twin = spawn(node_cmd("robot_rl.sim_twin.node", "-r", "__ns:=/hand", *params(
        robot="dclaw", use_sim_time=True, lockstep=True, lockstep_timeout_s=0.5)),
        stderr=subprocess.DEVNULL)
    safety = start_safety(spawn)
    probe = Probe()
    try:
        monitor = Monitor(probe)
        states = probe.listen("joints", m.JointState, topics.JOINT_STATES, QOS_SENSOR_DATA)
        raw = probe.node.create_publisher(m.JointState, topics.COMMAND_RAW, QOS_DEFAULT)
        probe.wait_until(lambda: bool(states) and raw.matched_count() > 0, 30,
                         what="twin and safety")

        def newest() -> m.JointState:
            return max(states, key=lambda s: m.stamp_to_s(s.header.stamp))

        # wait for the safety node to have the twin's state, then command 20 steps in lockstep
        probe.wait_until(lambda: monitor.first("telemetry") is not None or bool(monitor.arrays),
                         30, what="the safety node's diagnostics")
        for _ in range(20):
            state = newest()
            raw.publish(m.JointState(header=state.header, name=state.name,
                                     position=list(state.position)))
            stamp = m.stamp_to_s(state.header.stamp)
            probe.wait_until(lambda s=stamp: m.stamp_to_s(newest().header.stamp) > s, 10,
                             what="the next lockstep step")
        last_command_s = stamp
        assert monitor.first("stale_command") is None
        # the commands stop: the twin steps on after its timeout, and once command_timeout_s of
        # sim time has passed the watchdog holds
        probe.wait_until(lambda: monitor.first("stale_command") is not None, 30,
                         what="stale_command in the safety node's diagnostics")
        held_at = monitor.first("stale_command")
        assert last_command_s + COMMAND_TIMEOUT_S - 1e-6 <= held_at <= last_command_s + \
            COMMAND_TIMEOUT_S + 0.2
    finally:
        probe.destroy()
    assert stop(safety) == 0
    assert stop(twin) == 0


@both_backends
def test_a_command_that_comes_before_its_state_waits_for_it(ros_domain: int,
                                                            spawn: Any) -> None:
    """Under sim time a COMMAND_RAW answering the state of instant t can reach the safety node
    before that state (two writers: no order between them); judged on the state before, the
    verdict would depend on which came first. The node judges it once the state of t has come,
    or after STATE_WAIT_S of wall time when it never does. This process is the simulator."""
    from robot_rl.nodes.safety import STATE_WAIT_S

    safety = start_safety(spawn)
    probe = Probe()
    try:
        monitor = Monitor(probe)
        clock = probe.node.create_publisher(m.Clock, CLOCK_TOPIC, QOS_CLOCK_WRITER)
        joints = probe.node.create_publisher(m.JointState, topics.JOINT_STATES, QOS_SENSOR_DATA)
        raw = probe.node.create_publisher(m.JointState, topics.COMMAND_RAW, QOS_DEFAULT)
        probe.wait_until(lambda: min(clock.matched_count(), joints.matched_count(),
                                     raw.matched_count()) > 0, 30, what="the safety node")
        position = np.clip(np.zeros(len(NAMES)), CAL.lower_rad, CAL.upper_rad)
        zeros = np.zeros(len(NAMES))
        now = warm_up(probe, monitor, clock, joints, raw, position, 100.0)
        def judged_at(t: float) -> bool:
            """A verdict based on the state of instant t came (its stamp: contract C1)."""
            return any(abs(m.stamp_to_s(c.header.stamp) - t) < 1e-6 for c in monitor.commands)

        for _ in range(30):  # states and commands in the usual order: passing commands
            now = round(now + 0.01, 6)
            clock.publish(m.Clock(clock=m.s_to_stamp(now)))
            joints.publish(m.joint_state(NAMES, position, zeros, zeros, stamp_s=now))
            raw.publish(m.joint_state(NAMES, position, stamp_s=now))
            # this step's own verdict (the warm-up's last ones may still be on their way, and
            # commands are judged in order: after this one, none is left)
            probe.wait_until(lambda t=now: judged_at(t), 10, what="a verdict")
        # the command for instant t before the state of t: no verdict until that state comes
        # (a target of its own, so that its verdict is told from the supervisor's other output)
        now = round(now + 0.01, 6)
        clock.publish(m.Clock(clock=m.s_to_stamp(now)))
        target = position.copy()
        target[0] += 0.001  # within the acceleration limit from rest: passed as it is

        def its_verdicts() -> list[Any]:
            return [c for c in monitor.commands
                    if np.allclose(np.asarray(c.position), target, atol=1e-9)]

        raw.publish(m.joint_state(NAMES, target, stamp_s=now))
        probe.spin_for(0.6 * STATE_WAIT_S)  # judged on the old state, it would be out by now
        assert not its_verdicts() and not judged_at(now)
        joints.publish(m.joint_state(NAMES, position, zeros, zeros, stamp_s=now))
        probe.wait_until(lambda: bool(its_verdicts()) or judged_at(now), 30,
                         what="the verdict")
        assert [m.stamp_to_s(c.header.stamp) for c in its_verdicts()] == [now]  # on state t
        # a state that never comes: judged on what there is after STATE_WAIT_S of wall time
        now = round(now + 0.01, 6)
        clock.publish(m.Clock(clock=m.s_to_stamp(now)))
        sent = len(monitor.commands)
        raw.publish(m.joint_state(NAMES, position, stamp_s=now))
        probe.wait_until(lambda: len(monitor.commands) > sent, 10, what="the released verdict")
    finally:
        probe.destroy()
    assert stop(safety) == 0
