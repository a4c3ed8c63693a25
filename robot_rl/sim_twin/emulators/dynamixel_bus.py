"""A Dynamixel Protocol 2.0 bus on a pseudo-terminal, for running the real driver without hardware.

``BusEmulator`` is the pure core: instruction packets in, status bytes out, servos moved by a
pluggable ``ServoPhysics`` in real time between packets. ``serve()`` runs it on a pty in its own
process (a thread would share the GIL with the driver: PLATFORM.md measured 0.23 ms vs 0.33 ms per
sync read); ``EmulatedBus`` starts and stops that process::

    bus = EmulatedBus(BusEmulatorConfig(calibration="dclaw"))
    with bus as port:          # the pty's path (or ``link_path``, a stable symlink to it)
        chain = DynamixelChain(calibration, port=port)
        bus.command("block", id=11)   # test hooks: see _command

Faults it can show: a missing id never answers, ``model_overrides`` answer with another model,
``firmware_version`` below 45 ignores FAST_SYNC_READ, ``corrupt_next`` breaks status CRCs, and a
blocked servo overloads (hardware error, torque off). While the process runs: ``unplug`` closes
the pty (the adapter is pulled out; the servos keep their power and their state) and ``plug``
opens a new one behind the same ``link_path``; ``power`` switches servos' supply (off: they stop
answering and go limp; on: they boot with torque off and RAM settings reset, as an X-series does
after a power blip); ``displace`` moves a servo as gravity or a hand would (a limp joint sags).
Killing the process is an adapter unplugged together with the servos' power (state lost).

The emulator keeps a journal of every Goal Position and Torque Enable it applied and of every
power change, each with the servo's present position at that instant (``journal``): tests read
it to check what the driver actually made the servos do.
"""

from __future__ import annotations

import argparse
import json
import os
import select
import signal
import subprocess
import sys
import time
import tty
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from robot_rl.drivers.dynamixel.control_table import (
    CENTRE_TICK,
    ITEMS,
    MODELS,
    rad_s_to_velocity_units,
    rad_to_ticks,
    ticks_to_rad,
    velocity_units_to_rad_s,
)
from robot_rl.robot_config import RobotCalibration, load_robot
from robot_rl.sim_twin.emulators import dynamixel_codec as codec
from robot_rl.sim_twin.emulators.dynamixel_physics import FirstOrderServos, ServoPhysics, TwinServos
from robot_rl.sim_twin.emulators.dynamixel_servo import CRC_ERROR, INSTRUCTION_ERROR, EmulatedServo

REPO_ROOT = Path(__file__).resolve().parents[2]
FAST_SYNC_READ_MIN_FIRMWARE = 45  # X-series firmware that knows FAST_SYNC_READ (0x8A)


@dataclass(frozen=True)
class BusEmulatorConfig:
    calibration: str = field(default="dclaw", metadata={"help": "calibration name or YAML path"})
    physics: str = field(default="first_order", metadata={"choices": ("first_order", "twin")})
    missing_ids: tuple[int, ...] = ()
    model_overrides: tuple[tuple[int, str], ...] = ()
    firmware_version: int = field(default=52, metadata={"range": (1, 255)})
    overload_time_s: float = field(default=1.0, metadata={"range": (0.01, 60.0)})
    overload_current_a: float | None = field(default=None, metadata={
        "range": (0.01, 10.0), "help": "overload threshold; None: 0.8 x the model's stall current"})
    idle_step_s: float = field(default=0.005, metadata={
        "range": (0.0005, 0.1), "help": "physics keeps time at least this often with no traffic"})


class BusEmulator:
    """The servos of one bus and the instruction semantics; time comes in from outside."""

    def __init__(self, servos: list[EmulatedServo], physics: ServoPhysics,
                 wall_clock: Callable[[], float] = time.time) -> None:
        self.servos = {servo.id: servo for servo in servos}
        self.physics = physics
        self._wall_clock = wall_clock  # journal stamps, on the clock the driver stamps states with
        self.journal: deque[dict[str, Any]] = deque(maxlen=200_000)
        self._order = [self.servos[i] for i in physics.ids if i in self.servos]
        self._index = [physics.ids.index(s.id) for s in self._order]
        self._last_s: float | None = None
        self.corrupt_next = 0
        self.min_step_s = 0.001  # physics runs at up to 1 kHz: state is at most 1 ms old
        self._sync(0.0)

    # --- time ------------------------------------------------------------------------------------
    def step(self, now_s: float) -> None:
        """Advances the physics to ``now_s`` (monotonic seconds)."""
        if self._last_s is None:
            self._last_s = now_s
        dt = now_s - self._last_s
        if dt < self.min_step_s:
            return
        self._last_s = now_s
        n = len(self.physics.ids)
        goal_ticks, limit_units = np.full(n, CENTRE_TICK), np.zeros(n)
        torque = np.zeros(n, dtype=bool)
        for servo, i in zip(self._order, self._index):
            goal_ticks[i], torque[i], limit_units[i] = servo.motion_settings()
            torque[i] = torque[i] and servo.powered
        goal = ticks_to_rad(goal_ticks)
        limit = np.where(limit_units > 0, velocity_units_to_rad_s(limit_units), np.inf)
        self.physics.set_goals(goal, torque, limit)
        self.physics.advance(dt)
        self._sync(dt)

    def _sync(self, dt_s: float) -> None:
        position = rad_to_ticks(self.physics.positions_rad())
        velocity = rad_s_to_velocity_units(self.physics.velocities_rad_s())
        current = self.physics.currents_a()
        for servo, i in zip(self._order, self._index):
            servo.update_present(int(position[i]), int(velocity[i]), float(current[i]), dt_s)

    # --- packets ---------------------------------------------------------------------------------
    def handle(self, packet: codec.Packet, now_s: float) -> tuple[bytes, float]:
        """The bytes to send back (maybe none) and how long the servos wait before sending them."""
        self.step(now_s)
        servo = self._live(packet.id)
        if not packet.crc_ok:
            return (self._status(servo, servo.status_error(CRC_ERROR)) if servo else b""), 0.0
        handler = _HANDLERS.get(packet.instruction)
        if handler is None:
            error = servo.status_error(INSTRUCTION_ERROR) if servo else 0
            return (self._status(servo, error) if servo else b""), 0.0
        reply, first = handler(self, packet, servo)
        delay_s = 2e-6 * first.get("Return Delay Time") if (reply and first) else 0.0
        return reply, delay_s

    def _status(self, servo: EmulatedServo, error: int, params: bytes = b"") -> bytes:
        packet = codec.encode_status(servo.id, error, params)
        if self.corrupt_next > 0:
            self.corrupt_next -= 1
            packet = packet[:-2] + bytes([packet[-2] ^ 0x5A, packet[-1]])
        return packet

    def _live(self, servo_id: int) -> EmulatedServo | None:
        """The servo with this id if it is there and powered (an unpowered one is silent)."""
        servo = self.servos.get(servo_id)
        return servo if servo is not None and servo.powered else None

    def _targets(self, packet: codec.Packet) -> list[EmulatedServo]:
        if packet.id == codec.BROADCAST_ID:
            return [s for s in self.servos.values() if s.powered]
        servo = self._live(packet.id)
        return [servo] if servo else []

    # --- what the servos were made to do ---------------------------------------------------------
    def _apply(self, servo: EmulatedServo, address: int, data: bytes) -> int:
        """``servo.write``, journalling an applied Goal Position and a change of Torque Enable."""
        torque_before = servo.torque_on
        error = servo.write(address, data)
        if error & 0x7F:
            return error
        goal = ITEMS["Goal Position"].address
        if address <= goal < address + len(data):
            self._note(servo, "goal")
        if servo.torque_on != torque_before:
            self._note(servo, "torque_on" if servo.torque_on else "torque_off")
        return error

    def _note(self, servo: EmulatedServo, event: str) -> None:
        self.journal.append({"t": self._wall_clock(), "id": servo.id, "event": event,
                             "goal": servo.get("Goal Position"),
                             "present": servo.get("Present Position"),
                             "torque": servo.torque_on})

    def displace(self, servo_id: int, position_rad: float) -> None:
        """Moves one servo from outside (servo space, rad), shown in its registers at once."""
        self.physics.displace(servo_id, position_rad)  # type: ignore[attr-defined]
        self._sync(0.0)

    def power(self, ids: list[int] | None, on: bool) -> None:
        """Switches the supply of ``ids`` (None: every servo), as a power blip or a pulled cable."""
        for servo_id in self.servos if ids is None else ids:
            servo = self.servos[servo_id]
            if servo.powered != on:
                servo.power(on)
                self._note(servo, "power_on" if on else "power_off")

    def _ping(self, packet: codec.Packet, servo: EmulatedServo | None) -> Reply:
        replies = [self._status(s, s.status_error(), s.get("Model Number").to_bytes(2, "little")
                                + bytes([s.get("Firmware Version")]))
                   for s in sorted(self._targets(packet), key=lambda s: s.id)]
        return b"".join(replies), (servo or next(iter(self.servos.values()), None))

    def _read(self, packet: codec.Packet, servo: EmulatedServo | None) -> Reply:
        if servo is None:
            return b"", None
        address, length = _u16(packet.params, 0), _u16(packet.params, 2)
        error, data = servo.read(address, length)
        return self._status(servo, error, data), servo

    def _write(self, packet: codec.Packet, servo: EmulatedServo | None) -> Reply:
        address, data = _u16(packet.params, 0), packet.params[2:]
        errors = [self._apply(s, address, data) for s in self._targets(packet)]
        return (self._status(servo, errors[0]), servo) if servo else (b"", None)

    def _reg_write(self, packet: codec.Packet, servo: EmulatedServo | None) -> Reply:
        for s in self._targets(packet):
            s.registered = (_u16(packet.params, 0), packet.params[2:])
        return (self._status(servo, servo.status_error()), servo) if servo else (b"", None)

    def _action(self, packet: codec.Packet, servo: EmulatedServo | None) -> Reply:
        for s in self._targets(packet):
            if s.registered:
                self._apply(s, *s.registered)
                s.registered = None
        return (self._status(servo, servo.status_error()), servo) if servo else (b"", None)

    def _reboot(self, packet: codec.Packet, servo: EmulatedServo | None) -> Reply:
        targets = self._targets(packet)
        reply = self._status(servo, servo.status_error()) if servo else b""
        for s in targets:
            s.reboot()
        return reply, servo

    def _sync_read(self, packet: codec.Packet, servo: EmulatedServo | None) -> Reply:
        address, length = _u16(packet.params, 0), _u16(packet.params, 2)
        listed = [s for s in map(self._live, packet.params[4:]) if s is not None]
        return b"".join(self._status(s, *s.read(address, length)) for s in listed), _first(listed)

    def _fast_sync_read(self, packet: codec.Packet, servo: EmulatedServo | None) -> Reply:
        """One status packet from the broadcast id, not byte stuffed: per servo ERR ID DATA CRC,
        each CRC running over the packet so far; the last one is the packet's own CRC. A servo
        that is missing or does not know the instruction ends the packet early (the bus goes
        quiet)."""
        address, length = _u16(packet.params, 0), _u16(packet.params, 2)
        ids = list(packet.params[4:])
        total = 1 + len(ids) * (length + 4)
        out = bytearray(codec.HEADER + bytes([codec.BROADCAST_ID, total & 0xFF, total >> 8,
                                              codec.STATUS]))
        crc, done, listed = 0, 0, []
        for servo_id in ids:
            s = self._live(servo_id)
            if s is None or s.get("Firmware Version") < FAST_SYNC_READ_MIN_FIRMWARE:
                break
            listed.append(s)
            error, data = s.read(address, length)
            out += bytes([error, servo_id]) + data
            crc = codec.crc16(out[done:], crc)  # running: each block's CRC covers all before it
            block_crc = crc
            if self.corrupt_next > 0 and servo_id == ids[-1]:
                self.corrupt_next -= 1
                block_crc ^= 0x5A
            out += bytes([block_crc & 0xFF, block_crc >> 8])
            crc, done = codec.crc16(out[-2:], crc), len(out)
        return (bytes(out) if listed else b""), _first(listed)

    def _sync_write(self, packet: codec.Packet, servo: EmulatedServo | None) -> Reply:
        address, length = _u16(packet.params, 0), _u16(packet.params, 2)
        body = packet.params[4:]
        for start in range(0, len(body) - length, length + 1):
            target = self._live(body[start])
            if target is not None:
                self._apply(target, address, body[start + 1:start + 1 + length])
        return b"", None

    def _bulk_read(self, packet: codec.Packet, servo: EmulatedServo | None) -> Reply:
        replies, listed = [], []
        for start in range(0, len(packet.params) - 4, 5):
            s = self._live(packet.params[start])
            if s is not None:
                listed.append(s)
                address, length = _u16(packet.params, start + 1), _u16(packet.params, start + 3)
                replies.append(self._status(s, *s.read(address, length)))
        return b"".join(replies), _first(listed)


Reply = tuple[bytes, EmulatedServo | None]
_HANDLERS = {
    codec.PING: BusEmulator._ping, codec.READ: BusEmulator._read, codec.WRITE: BusEmulator._write,
    codec.REG_WRITE: BusEmulator._reg_write, codec.ACTION: BusEmulator._action,
    codec.REBOOT: BusEmulator._reboot, codec.SYNC_READ: BusEmulator._sync_read,
    codec.FAST_SYNC_READ: BusEmulator._fast_sync_read, codec.SYNC_WRITE: BusEmulator._sync_write,
    codec.BULK_READ: BusEmulator._bulk_read,
}


def _u16(data: bytes, offset: int) -> int:
    return data[offset] | (data[offset + 1] << 8)


def _first(servos: list[EmulatedServo]) -> EmulatedServo | None:
    return servos[0] if servos else None


def build_emulator(config: BusEmulatorConfig) -> BusEmulator:
    """Servos for every calibrated id (joints and sensors), minus the missing ones."""
    calibration = load_robot(config.calibration)
    overrides = dict(config.model_overrides)
    members = [j for j in (*calibration.joints, *calibration.sensors) if j.id is not None]
    servos = [EmulatedServo(int(j.id), overrides.get(int(j.id), j.model or "XM430-W210"),
                            firmware_version=config.firmware_version,
                            overload_time_s=config.overload_time_s,
                            overload_current_a=config.overload_current_a)
              for j in members if j.id not in config.missing_ids]
    return BusEmulator(servos, _physics(config, calibration))


def _physics(config: BusEmulatorConfig, calibration: RobotCalibration) -> ServoPhysics:
    members = [j for j in (*calibration.joints, *calibration.sensors) if j.id is not None]
    if config.physics == "twin":
        from robot_rl.sim_twin.twin import Twin  # the twin is optional: only this mode needs MuJoCo

        return TwinServos(Twin(calibration), calibration)
    # start every joint at joint angle 0 (inside its limits), expressed in servo radians
    initial = np.array([j.direction * (np.clip(0.0, *j.position_limits_rad) - j.offset_rad)
                        for j in members])
    stall = np.array([MODELS[j.model or "XM430-W210"].stall_current_a for j in members])
    return FirstOrderServos(tuple(int(j.id) for j in members), initial, stall)


# --- the process ---------------------------------------------------------------------------------
class _PtyPort:
    """The emulator's end of the adapter: a pty, and ``link_path`` kept pointing at it."""

    def __init__(self, link_path: str | None) -> None:
        self.link_path = link_path
        self.master: int | None = None
        self._slave: int | None = None  # kept open: the pty lives as long as it is plugged
        self.port = ""

    def plug(self) -> str:
        """A new pty (a new /dev/pts path, as a re-enumerated USB adapter), then the link."""
        if self.master is None:
            self.master, self._slave = os.openpty()
            tty.setraw(self._slave)  # no echo or line editing before the driver configures it
            self.port = os.ttyname(self._slave)
            if self.link_path:
                tmp = f"{self.link_path}.{os.getpid()}"
                os.symlink(self.port, tmp)
                os.replace(tmp, self.link_path)
        return self.port

    def unplug(self) -> None:
        """The link goes first, then the pty: the driver's open port fails with EIO, and it
        cannot reopen the path until ``plug``."""
        if self.master is None:
            return
        if self.link_path and os.path.islink(self.link_path) \
                and os.readlink(self.link_path) == self.port:
            os.unlink(self.link_path)
        for fd in (self.master, self._slave):
            if fd is not None:
                os.close(fd)
        self.master = self._slave = None


def serve(config: BusEmulatorConfig, link_path: str | None = None) -> None:
    """Runs the emulator on a new pty until stdin closes or SIGTERM; prints ``READY <path>``."""
    emulator = build_emulator(config)
    pty = _PtyPort(link_path)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print(f"READY {pty.plug()}", flush=True)
    parser, commands = codec.PacketParser(), b""
    stdin = sys.stdin.fileno()
    try:
        while True:
            master = pty.master
            watched = [stdin] if master is None else [master, stdin]
            ready, _, _ = select.select(watched, [], [], config.idle_step_s)
            now = time.monotonic()
            if master is not None and master in ready:
                for packet in parser.feed(os.read(master, 4096)):
                    reply, delay_s = emulator.handle(packet, time.monotonic())
                    if reply:
                        _wait(delay_s)
                        os.write(master, reply)
            if stdin in ready:
                chunk = os.read(stdin, 4096)
                if not chunk:
                    return
                commands += chunk
                while b"\n" in commands:
                    line, commands = commands.split(b"\n", 1)
                    message = json.loads(line)
                    if message.get("cmd") == "plug":
                        parser = codec.PacketParser()  # nothing half-read survives a replug
                    print(json.dumps(_command(emulator, message, pty)), flush=True)
            emulator.step(now)
    finally:
        pty.unplug()


def _wait(delay_s: float) -> None:
    end = time.perf_counter() + delay_s
    while time.perf_counter() < end:
        pass  # sub-millisecond: sleep() would overshoot


def _command(emulator: BusEmulator, message: dict[str, Any], pty: _PtyPort) -> dict[str, Any]:
    """Test hooks, one JSON object a line: block {id, blocked}, corrupt_next {n}, get {id, item},
    unplug, plug (answers the new pty), power {ids (default all), on}, displace {id, rad (servo
    space)}, journal (answers and clears the entries), ping."""
    name = message.get("cmd")
    if name == "block":
        emulator.physics.block(int(message["id"]), bool(message.get("blocked", True)))
    elif name == "corrupt_next":
        emulator.corrupt_next = int(message.get("n", 1))
    elif name == "get":
        servo = emulator.servos[int(message["id"])]
        return {"ok": True, "value": servo.get(str(message["item"]))}
    elif name == "unplug":
        pty.unplug()
    elif name == "plug":
        return {"ok": True, "port": pty.plug()}
    elif name == "power":
        ids = message.get("ids")
        unknown = sorted(set(ids or ()) - set(emulator.servos))
        if unknown:
            return {"ok": False, "error": f"power: no servos {unknown} on this bus"}
        emulator.power(None if ids is None else [int(i) for i in ids], bool(message["on"]))
    elif name == "displace":
        if not hasattr(emulator.physics, "displace"):
            return {"ok": False, "error": f"displace: {type(emulator.physics).__name__} cannot"}
        emulator.displace(int(message["id"]), float(message["rad"]))
    elif name == "journal":
        entries = list(emulator.journal)
        emulator.journal.clear()
        return {"ok": True, "entries": entries}
    elif name != "ping":
        return {"ok": False, "error": f"unknown command {name!r}"}
    return {"ok": True}


class EmulatedBus:
    """Starts the emulator process; ``with bus as port`` gives the path the driver should open.

    ``link_path`` (optional) is a symlink kept pointing at the live pty: ``kill()`` then
    ``start()`` is an adapter unplugged and plugged back in, at the same path."""

    def __init__(self, config: BusEmulatorConfig = BusEmulatorConfig(),
                 link_path: str | Path | None = None, startup_timeout_s: float = 20.0) -> None:
        self.config = config
        self.link_path = str(link_path) if link_path else None
        self.startup_timeout_s = startup_timeout_s
        self._process: subprocess.Popen[bytes] | None = None
        self.pty_path: str | None = None

    @property
    def port(self) -> str:
        if self.pty_path is None:
            raise RuntimeError("EmulatedBus: not started")
        return self.link_path or self.pty_path

    def start(self) -> str:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
        args = [sys.executable, "-m", "robot_rl.sim_twin.emulators.dynamixel_bus",
                "--config", json.dumps(asdict(self.config))]
        if self.link_path:
            args += ["--link", self.link_path]
        self._process = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                         env=env, cwd=REPO_ROOT)
        line = self._readline(self.startup_timeout_s)
        if not line.startswith("READY "):
            self.kill()
            raise RuntimeError(f"dynamixel bus emulator did not start (said {line!r}); "
                               "see its stderr above")
        self.pty_path = line.split(" ", 1)[1]
        return self.port

    def _readline(self, timeout_s: float) -> str:
        assert self._process is not None and self._process.stdout is not None
        ready, _, _ = select.select([self._process.stdout], [], [], timeout_s)
        if not ready:
            return ""
        return self._process.stdout.readline().decode().strip()

    def command(self, cmd: str, **arguments: Any) -> dict[str, Any]:
        """Sends a test hook to the running emulator and waits for its answer."""
        if self._process is None or self._process.stdin is None:
            raise RuntimeError("EmulatedBus: not started")
        self._process.stdin.write((json.dumps({"cmd": cmd, **arguments}) + "\n").encode())
        self._process.stdin.flush()
        answer = self._readline(5.0)
        reply = json.loads(answer) if answer else {"ok": False, "error": "no answer"}
        if not reply.get("ok"):
            raise RuntimeError(f"emulator command {cmd}: {reply.get('error')}")
        return reply

    def unplug(self) -> None:
        """The adapter is pulled out; the servos keep their power (use ``link_path``)."""
        self.command("unplug")

    def plug(self) -> str:
        """The adapter is plugged back in: a new pty behind the same ``link_path``."""
        self.pty_path = str(self.command("plug")["port"])
        return self.port

    def power(self, on: bool, ids: list[int] | None = None) -> None:
        """Switches the supply of ``ids`` (default: every servo)."""
        self.command("power", on=on, **({} if ids is None else {"ids": list(ids)}))

    def journal(self) -> list[dict[str, Any]]:
        """Goal Position / Torque Enable writes applied and power changes since the last call."""
        return list(self.command("journal")["entries"])

    def kill(self) -> None:
        """SIGKILL: the adapter vanishes mid-flight (the symlink is left dangling)."""
        if self._process is not None:
            self._process.kill()
            self._process.wait()
            self._close_pipes()

    def stop(self) -> None:
        if self._process is None:
            return
        if self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=5.0)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._close_pipes()

    def _close_pipes(self) -> None:
        assert self._process is not None
        for pipe in (self._process.stdin, self._process.stdout):
            if pipe is not None:
                pipe.close()
        self._process = None

    def __enter__(self) -> str:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="{}", help="BusEmulatorConfig as JSON")
    parser.add_argument("--link", default=None, help="keep this symlink pointing at the pty")
    args = parser.parse_args(argv)
    raw = json.loads(args.config)
    raw["missing_ids"] = tuple(raw.get("missing_ids", ()))
    raw["model_overrides"] = tuple(tuple(pair) for pair in raw.get("model_overrides", ()))
    serve(BusEmulatorConfig(**raw), args.link)


if __name__ == "__main__":
    main()
