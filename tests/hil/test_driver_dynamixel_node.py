"""The Dynamixel driver node as a process, on the real dynamixel-sdk, against the emulated bus.

The test plays the safety supervisor (it publishes the gated COMMAND) and listens over real DDS.
Like the supervisor (contract C1), it stamps each command with the state it was based on and
steps at most 0.2 rad from that state (the driver refuses more than safety.max_step_rad, 0.25).
The calibration is dclaw.yaml with the latency timer at 16 ms (see test_dynamixel_chain.py: a
loaded two-core machine does not always schedule the emulator within the 1 ms timer's 4 ms).
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from graph.graph_probe import Probe, node_cmd, params, stop
from helpers.backends import both_backends

from robot_rl.nodes import topics
from robot_rl.robot_config import calibration_path, load_robot
from robot_rl.ros import messages as m
from robot_rl.ros.qos import QOS_DEFAULT, QOS_SENSOR_DATA
from robot_rl.sim_twin.emulators.dynamixel_bus import BusEmulatorConfig, EmulatedBus

CAL = load_robot("dclaw")
NAMES = list(CAL.joint_names)
START_TIMEOUT_S = 40.0  # process start with imports, on a loaded machine


def slow_bus_calibration(tmp_path: Path, name: str = "dclaw") -> Path:
    data = yaml.safe_load(calibration_path(name).read_text())
    data["bus"]["latency_timer_ms"] = 16
    path = tmp_path / f"{name}_latency16.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def start_driver(spawn: Any, calibration: Path, port: str, **extra: Any) -> subprocess.Popen:
    return spawn(node_cmd("robot_rl.drivers.dynamixel.node", "-r", "__ns:=/hand",
                          *params(robot=str(calibration), port=port, **extra)))


def torque(bus: EmulatedBus, servo_id: int) -> int:
    return int(bus.command("get", id=servo_id, item="Torque Enable")["value"])


def diagnostics_values(messages: list[m.DiagnosticArray]) -> dict[str, str]:
    for array in reversed(messages):
        for status in array.status:
            if "dynamixel" in status.name:
                return {kv.key: kv.value for kv in status.values}
    return {}


class Listener:
    def __init__(self, probe: Probe) -> None:
        self.joints = probe.listen("joints", m.JointState, topics.JOINT_STATES, QOS_SENSOR_DATA)
        self.object = probe.listen("object", m.JointState, topics.OBJECT_STATE, QOS_SENSOR_DATA)
        self.temperature = probe.listen("temperature", m.Float32MultiArray, topics.TEMPERATURE,
                                        QOS_SENSOR_DATA)
        self.errors = probe.listen("errors", m.UInt8MultiArray, topics.HARDWARE_ERROR,
                                   QOS_SENSOR_DATA)
        self.diagnostics = probe.listen("diagnostics", m.DiagnosticArray, topics.DIAGNOSTICS,
                                        QOS_DEFAULT)
        self.command = probe.node.create_publisher(m.JointState, topics.COMMAND, QOS_DEFAULT)
        self.raw = probe.node.create_publisher(m.JointState, topics.COMMAND_RAW, QOS_DEFAULT)

    def position(self) -> np.ndarray:
        return np.array(self.joints[-1].position)

    def toward(self, goal: np.ndarray, step_rad: float = 0.2,
               order: list[str] | None = None) -> m.JointState:
        """A command as the supervisor makes it: based on the latest state (its stamp, C1), at
        most ``step_rad`` from it toward ``goal``; names in ``order`` (default: the calibration's)."""
        basis = self.joints[-1]
        target = np.array(basis.position) + np.clip(goal - np.array(basis.position),
                                                    -step_rad, step_rad)
        names = order or NAMES
        by_name = dict(zip(NAMES, target))
        return m.JointState(header=basis.header, name=list(names),
                            position=[float(by_name[n]) for n in names])


@both_backends
def test_node_publishes_state_obeys_command_only_and_turns_torque_off(
        ros_domain: int, spawn: Any, tmp_path: Path) -> None:
    calibration = slow_bus_calibration(tmp_path)
    # a goal one step (0.2 rad) ahead of a blocked finger draws 0.8 A in the emulator's servo
    bus = EmulatedBus(BusEmulatorConfig(calibration=str(calibration), overload_time_s=0.3,
                                        overload_current_a=0.5))
    with bus as port:
        driver = start_driver(spawn, calibration, port, control_rate_hz=100.0,
                              diagnostics_rate_hz=5.0)
        probe = Probe("/hand")
        try:
            got = Listener(probe)
            probe.wait_until(lambda: len(got.joints) > 5 and bool(got.temperature), START_TIMEOUT_S,
                             what="joint states and temperatures from the driver")
            assert list(got.joints[-1].name) == NAMES
            assert len(got.joints[-1].effort) == len(NAMES)  # current, A
            assert [list(o.name) for o in got.object[-1:]] == [["valve"]]
            assert len(got.temperature[-1].data) == len(NAMES)
            assert all(torque(bus, j.id) == 1 for j in CAL.joints)  # on at start, holding
            start = got.position()
            np.testing.assert_allclose(start, 0.0, atol=0.01)  # where the emulator started

            # COMMAND_RAW is not the driver's business: nothing moves
            away = np.clip(start + 0.4, CAL.lower_rad, CAL.upper_rad)
            for _ in range(5):
                got.raw.publish(m.joint_state(NAMES, away))
                probe.spin_for(0.05)
            probe.spin_for(0.3)
            np.testing.assert_allclose(got.position(), start, atol=0.01)

            # the gated COMMAND moves the servos, names in any order
            goal = np.clip(np.linspace(-0.4, 0.4, len(NAMES)), CAL.lower_rad, CAL.upper_rad)
            probe.wait_until(lambda: np.allclose(got.position(), goal, atol=0.01), 10.0,
                             every=lambda: got.command.publish(got.toward(goal, order=NAMES[::-1])),
                             period_s=0.05, what="joints at the commanded goal")

            # a malformed command is counted and ignored
            got.command.publish(m.joint_state(NAMES[:3], [0.0] * 3))
            probe.wait_until(lambda: diagnostics_values(got.diagnostics).get(
                "commands_rejected") == "1", 10.0, what="commands_rejected in diagnostics")
            values = diagnostics_values(got.diagnostics)
            assert float(values["cycle_p50_ms"]) > 0 and int(values["commands"]) >= 1
            assert values["reconnects"] == "0" and values["torque"] == "on"
            np.testing.assert_allclose(got.position(), goal, atol=0.01)

            # a finger held against an obstacle overloads: the error bit reaches HARDWARE_ERROR
            blocked = CAL.joints[1]
            bus.command("block", id=blocked.id)
            pushed = goal.copy()
            pushed[1] = CAL.upper_rad[1]
            probe.wait_until(lambda: bool(got.errors) and got.errors[-1].data[1] != 0, 10.0,
                             every=lambda: got.command.publish(got.toward(pushed)), period_s=0.05,
                             what="overload on HARDWARE_ERROR")
            assert got.errors[-1].data[1] & (1 << 5)  # bit 5: overload
            assert not any(got.errors[-1].data[i] for i in range(len(NAMES)) if i != 1)
            probe.wait_until(lambda: any(s.level == m.DiagnosticStatus.ERROR
                                         for d in got.diagnostics[-1:] for s in d.status),
                             5.0, what="an ERROR diagnostic")

            # the operator reboots it: the error clears, its torque stays off until a re-arm
            bus.command("block", id=blocked.id, blocked=False)
            reboot = probe.node.create_publisher(m.String, "dynamixel/reboot", QOS_DEFAULT)
            rearm = probe.node.create_publisher(m.String, "dynamixel/rearm", QOS_DEFAULT)
            label = f"servo id {blocked.id} (joint {blocked.name})"
            probe.wait_until(lambda: any(s.message.startswith(f"torque off on {label} until a "
                                                              "re-arm request on /hand/dynamixel"
                                                              "/rearm")
                                         for d in got.diagnostics[-1:] for s in d.status),
                             10.0, every=lambda: reboot.publish(m.String(data=blocked.name)),
                             period_s=1.0, what="a WARN naming the joint kept off")
            assert torque(bus, blocked.id) == 0
            arms = int(diagnostics_values(got.diagnostics)["arms"])
            before_arm = got.toward(got.position(), 0.0)  # based on a state before the re-arm
            probe.wait_until(lambda: int(diagnostics_values(got.diagnostics)["arms"]) > arms,
                             10.0, every=lambda: rearm.publish(m.String(data="test")),
                             period_s=1.0, what="the re-arm")
            assert [torque(bus, j.id) for j in CAL.joints] == [1] * len(NAMES)
            refused = int(diagnostics_values(got.diagnostics)["commands_before_arm"])
            got.command.publish(before_arm)
            probe.wait_until(lambda: int(diagnostics_values(got.diagnostics)[
                "commands_before_arm"]) > refused, 10.0, what="the old command refused")
        finally:
            probe.destroy()
        assert stop(driver) == 0
        assert [torque(bus, j.id) for j in CAL.joints] == [0] * len(NAMES)  # off on SIGINT


def test_torque_waits_for_the_first_command_when_asked(ros_domain: int, spawn: Any,
                                                       tmp_path: Path) -> None:
    calibration = slow_bus_calibration(tmp_path)
    bus = EmulatedBus(BusEmulatorConfig(calibration=str(calibration)))
    with bus as port:
        driver = start_driver(spawn, calibration, port, torque_on_start=False)
        probe = Probe("/hand")
        try:
            got = Listener(probe)
            probe.wait_until(lambda: len(got.joints) > 3, START_TIMEOUT_S, what="joint states")
            assert [torque(bus, j.id) for j in CAL.joints] == [0] * len(NAMES)
            goal = np.clip(np.full(len(NAMES), 0.3), CAL.lower_rad, CAL.upper_rad)
            # the first command only turns torque on (holding): it was based on a state from
            # before; the ones based on later states move the joints
            probe.wait_until(lambda: np.allclose(got.position(), goal, atol=0.01), 10.0,
                             every=lambda: got.command.publish(got.toward(goal)), period_s=0.1,
                             what="joints at the goal")
            assert [torque(bus, j.id) for j in CAL.joints] == [1] * len(NAMES)
            values = diagnostics_values(got.diagnostics)
            assert int(values["commands_before_arm"]) >= 1 and values["arms"] == "1"
        finally:
            probe.destroy()
        assert stop(driver) == 0


def test_a_control_rate_too_slow_for_the_state_timeout_is_refused_by_name(
        ros_domain: int) -> None:
    """The chain refuses goals against a reading older than safety.state_timeout_s (0.2 s):
    reading at 5 Hz, every other command would be refused. Caught before any port is opened."""
    from robot_rl.drivers.dynamixel.node import DynamixelNode

    with pytest.raises(ValueError) as err:
        DynamixelNode(["--ros-args", "-p", "control_rate_hz:=5.0", "-p", "port:=/nonexistent"])
    message = str(err.value)
    assert "control_rate_hz 5.0" in message and "safety.state_timeout_s (0.2 s" in message
    assert "calibration dclaw" in message


def test_ctrl_c_while_waiting_for_the_port_ends_the_node_cleanly(
        ros_domain: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Ctrl-C during the start-up wait for an absent port ends the node at once with exit code
    0, wherever the signal lands. Here it lands in a finaliser, as it can in the serial port's
    when an open fails: a KeyboardInterrupt raised there is swallowed by Python, and the node
    went on retrying for connect_timeout_s (under ros2 launch: SIGTERM after 5 s, 'process has
    died')."""
    import os
    import signal
    import time

    from robot_rl.drivers.dynamixel.chain import DynamixelChain, DynamixelCommError
    from robot_rl.drivers.dynamixel.node import DynamixelNode
    from robot_rl.ros.runtime import run

    class PortObject:
        def __del__(self) -> None:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.05)  # the handler runs here, inside the finaliser

    attempts: list[float] = []

    def connect_fails(self: DynamixelChain) -> None:
        attempts.append(time.monotonic())
        if len(attempts) == 2:
            PortObject()  # made and collected at once: its finaliser delivers the Ctrl-C
        raise DynamixelCommError(f"cannot open {self.port_name}")

    monkeypatch.setattr(DynamixelChain, "connect", connect_fails)
    started = time.monotonic()
    code = run(DynamixelNode, ["--ros-args", "-p", "port:=/nonexistent", "-p",
                               "connect_timeout_s:=10.0"])
    assert code == 0
    assert time.monotonic() - started < 3.0 and len(attempts) <= 4, attempts
