"""The driver node under faults, commands flowing: no joint moves more than the step limit
without a supervisor verdict based on a state measured after the fault.

    test (plays the supervisor, contract C1) --COMMAND--> dynamixel node --pty--> emulated bus
         <---------------- JOINT_STATES, DIAGNOSTICS ------------'            (journal of goals)

The driver node runs as a process on the real dynamixel-sdk; the emulated bus runs in its own
process. The test plays the safety supervisor as C1 specifies it: each command carries the stamp
of the state it was based on, and steps at most ``STEP_RAD`` from that state toward a slow
trajectory. When states stop (the bus is gone), it keeps sending commands on its last state, as
a supervisor's hold verdicts would be: those are what a driver must not replay after a fault.

During the run: the adapter is pulled out while the servos lose power and two joints sag (one by
1.35 rad, the issue's case), then plugged back; two servos lose power and come back with the
adapter connected, one sagged; a command based on a state before a fault arrives after it; a
command 0.6 rad from the measured position arrives on COMMAND (a wrong publisher); finally a
servo drops off the bus for good and the driver is stopped with SIGINT.

The emulator's journal (every goal and torque change it applied, with the servo's position at
that instant) is then checked against what the test sent: every goal a torqued servo got either
held it where it was or was a command the test sent, based on a state measured after the latest
arm; none moved a joint by more than ``safety.max_step_rad``. The real safety node joins this
at integration (test_driver_hil_graph.py); the driver's guarantees here need no supervisor.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from graph.graph_probe import Probe, node_cmd, params, stop
from test_driver_dynamixel_node import (
    START_TIMEOUT_S,
    diagnostics_values,
    slow_bus_calibration,
    torque,
)

from robot_rl.drivers.dynamixel import control_table as ct
from robot_rl.nodes import topics
from robot_rl.robot_config import load_robot
from robot_rl.ros import messages as m
from robot_rl.ros.qos import QOS_DEFAULT, QOS_SENSOR_DATA
from robot_rl.sim_twin.emulators.dynamixel_bus import BusEmulatorConfig, EmulatedBus

pytestmark = pytest.mark.hil
CAL = load_robot("dclaw")
NAMES = list(CAL.joint_names)
IDS = [int(j.id) for j in CAL.joints if j.id is not None]
TICK_RAD = 2 * np.pi / ct.TICKS_PER_REV
STEP_RAD = 0.1  # the test supervisor's step: well inside safety.max_step_rad (0.25)
COMMAND_PERIOD_S = 0.05


def ns(stamp: m.Time) -> int:
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


def servo_rad(index: int, joint_rad: float) -> float:
    joint = CAL.joints[index]
    return joint.direction * (joint_rad - joint.offset_rad)


def joint_rad(servo_id: int, ticks: int) -> float:
    joint = CAL.joints[IDS.index(servo_id)]
    return joint.direction * float(ct.ticks_to_rad(ticks)) + joint.offset_rad


class PlayedSupervisor:
    """Commands as the safety node makes them under C1: based on the newest state (its stamp),
    at most STEP_RAD from it, toward a slow sine inside the limits. Keeps what it sent."""

    def __init__(self, probe: Probe) -> None:
        self.states = probe.listen("joints", m.JointState, topics.JOINT_STATES, QOS_SENSOR_DATA)
        self.diagnostics = probe.listen("diagnostics", m.DiagnosticArray, topics.DIAGNOSTICS,
                                        QOS_DEFAULT)
        self.publisher = probe.node.create_publisher(m.JointState, topics.COMMAND, QOS_DEFAULT)
        self.sent: list[tuple[int, np.ndarray]] = []  # (basis stamp ns, positions)
        self.bad: list[np.ndarray] = []  # commands the driver must refuse
        self.start_s = time.monotonic()
        self.phase = np.linspace(0.0, np.pi, len(NAMES))

    def trajectory(self) -> np.ndarray:
        t = time.monotonic() - self.start_s
        return np.clip(0.3 * np.sin(2 * np.pi * t / 4.0 + self.phase), CAL.lower_rad + 0.05,
                       CAL.upper_rad - 0.05)

    def tick(self) -> None:
        if not self.states:
            return
        basis = self.states[-1]
        measured = np.array(basis.position)
        goal = measured + np.clip(self.trajectory() - measured, -STEP_RAD, STEP_RAD)
        self.publish(basis.header, goal)
        self.sent.append((ns(basis.header.stamp), goal))

    def publish(self, header: m.Header, positions: np.ndarray) -> None:
        self.publisher.publish(m.JointState(header=header, name=list(NAMES),
                                            position=[float(p) for p in positions]))

    def publish_bad(self, header: m.Header, positions: np.ndarray) -> None:
        self.publish(header, positions)
        self.bad.append(positions)

    def value(self, key: str) -> int:
        return int(diagnostics_values(self.diagnostics).get(key, "0"))


def goal_writes(journal: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """The journal's goal entries grouped by write: a sync write reaches its servos in joint
    order, one after the other, so a write ends where that order starts again (a servo without
    power is absent from it)."""
    writes: list[list[dict[str, Any]]] = []
    previous: dict[str, Any] | None = None
    for entry in journal:
        if entry["event"] == "goal":
            if previous is not None and IDS.index(entry["id"]) > IDS.index(previous["id"]):
                writes[-1].append(entry)
            else:
                writes.append([entry])
            previous = entry
        else:
            previous = None
    return writes


def largest_move(journal: list[dict[str, Any]]) -> tuple[float, dict[str, Any] | None]:
    """The farthest a servo with torque on was sent from where it stood (rad), and that entry."""
    worst, where = 0.0, None
    for e in journal:
        if e["event"] in ("goal", "torque_on") and e["torque"]:
            move = abs(joint_rad(e["id"], e["goal"]) - joint_rad(e["id"], e["present"]))
            if move > worst:
                worst, where = move, e
    return worst, where


def test_unplug_power_loss_and_a_dropped_servo_never_move_a_joint_without_a_fresh_verdict(
        ros_domain: int, spawn: Any, tmp_path: Path) -> None:
    calibration = slow_bus_calibration(tmp_path)
    bus = EmulatedBus(BusEmulatorConfig(calibration=str(calibration)),
                      link_path=tmp_path / "ttyDXL")
    log_path = tmp_path / "driver.log"
    with bus as port, log_path.open("w") as log:
        driver = spawn(node_cmd("robot_rl.drivers.dynamixel.node", "-r", "__ns:=/hand", *params(
            robot=str(calibration), port=port, telemetry_period_s=0.1, reconnect_timeout_s=20.0,
            diagnostics_rate_hz=10.0)), stdout=log, stderr=log)
        probe = Probe("/hand")
        journal: list[dict[str, Any]] = []
        try:
            sup = PlayedSupervisor(probe)

            def run_until(condition: Any, what: str, timeout_s: float = 20.0) -> None:
                probe.wait_until(condition, timeout_s, every=sup.tick, period_s=COMMAND_PERIOD_S,
                                 what=what)

            probe.wait_until(lambda: len(sup.states) > 3, START_TIMEOUT_S, what="joint states")
            run_until(lambda: sup.value("commands") >= 20, "20 commands obeyed")

            # 1. the adapter is pulled out together with the servos' supply; two joints sag
            before_unplug, seen = sup.states[-1].header, len(sup.states)
            bus.unplug()
            bus.power(False)
            bus.command("displace", id=11, rad=servo_rad(1, 1.35))  # f0_mid, the 1.35
            bus.command("displace", id=31, rad=servo_rad(7, -0.8))  # f2_mid
            probe.spin_for(0.5, every=sup.tick, period_s=COMMAND_PERIOD_S)  # on the old state
            bus.power(True)
            bus.plug()
            run_until(lambda: sup.value("reconnects") == 1 and any(
                abs(s.position[1] - 1.35) < 0.01 for s in sup.states[seen:]),
                "the reconnect, and a state with f0_mid sagged")
            probe.spin_for(0.5, every=sup.tick, period_s=COMMAND_PERIOD_S)
            journal += bus.journal()  # the commands queued during the unplug have arrived
            assert largest_move(journal)[0] <= CAL.safety.max_step_rad, largest_move(journal)
            # based on a state before the unplug, yet one small step from where the joints are
            refused, obeyed = sup.value("commands_before_arm"), sup.value("commands")
            sup.publish_bad(before_unplug, np.array(sup.states[-1].position) + 0.037)
            run_until(lambda: sup.value("commands") >= obeyed + 20, "commands obeyed again")
            journal += bus.journal()
            assert not any(np.allclose(sup.bad[-1], [joint_rad(e["id"], e["goal"]) for e in w],
                                       atol=TICK_RAD) for w in goal_writes(journal)
                           if len(w) == len(IDS)), "the command based on the old state was written"
            assert sup.value("commands_before_arm") > refused

            # 2. two servos lose power and come back, the adapter connected; one has sagged
            bus.power(False, ids=[22, 31])
            bus.command("displace", id=22, rad=servo_rad(5, 0.7))  # f1_tip
            probe.spin_for(0.3, every=sup.tick, period_s=COMMAND_PERIOD_S)
            bus.power(True, ids=[22, 31])
            run_until(lambda: sup.value("power_losses") == 1, "the power loss detected")
            obeyed = sup.value("commands")
            run_until(lambda: sup.value("commands") >= obeyed + 20, "commands obeyed again")

            # 3. a command 0.6 rad from the measured position, freshly stamped (a wrong publisher)
            basis = sup.states[-1]
            jump = np.array(basis.position)
            jump[2] += 0.6 if jump[2] < 0 else -0.6
            refused = sup.value("goals_refused_step")
            sup.publish_bad(basis.header, jump)
            run_until(lambda: sup.value("goals_refused_step") > refused, "the 0.6 rad jump refused")

            # 4. f1_mid drops off the bus for good: no more readings, goals refused as stale
            bus.power(False, ids=[21])
            run_until(lambda: sup.value("goals_refused_stale") > 0, "goals refused as stale")
            arms = sup.value("arms")
        finally:
            probe.destroy()
        assert stop(driver) == 0
        journal += bus.journal()
        assert [torque(bus, i) for i in IDS if i != 21] == [0] * 8  # off, the missing one too
    text = log_path.read_text()
    assert "torque off failed on 1 of 9 joints" in text and "servo id 21 (joint f1_mid)" in text
    assert arms == 3  # at start, after the reconnect, after the power loss

    # what the servos were made to do
    assert largest_move(journal)[0] <= CAL.safety.max_step_rad, largest_move(journal)
    # every goal held the servos, or was a command the test sent based on a state published
    # after the latest arm (the first state with a stamp after the arm's last torque-on)
    state_ns = sorted({ns(s.header.stamp) for s in sup.states})
    lower = CAL.lower_rad + CAL.safety.position_margin_rad
    upper = CAL.upper_rad - CAL.safety.position_margin_rad
    writes = {id(w[-1]): w for w in goal_writes(journal)}
    arm_ns, first_after_arm_ns, commands_written, holds = 0, 0, 0, 0
    for entry in journal:
        if entry["event"] == "torque_on":
            arm_ns = max(arm_ns, int(entry["t"] * 1e9))
            first_after_arm_ns = next((s for s in state_ns if s > arm_ns), 2**63)
        write = writes.get(id(entry))
        if write is None:
            continue
        index = [IDS.index(e["id"]) for e in write]
        goal = np.array([joint_rad(e["id"], e["goal"]) for e in write])
        present = np.array([joint_rad(e["id"], e["present"]) for e in write])
        if np.allclose(goal, present, atol=2 * TICK_RAD):
            holds += 1
            continue
        matches = [basis for basis, sent in sup.sent
                   if np.allclose(np.clip(sent, lower, upper)[index], goal, atol=TICK_RAD)]
        assert matches, f"a goal the test never sent: {goal} to ids {[e['id'] for e in write]}"
        assert max(matches) >= first_after_arm_ns - 1_000, \
            f"goal {goal} based on a state from before the arm"
        assert not any(np.allclose(bad[index], goal, atol=TICK_RAD) for bad in sup.bad)
        commands_written += 1
    assert commands_written >= 60 and holds >= 3
