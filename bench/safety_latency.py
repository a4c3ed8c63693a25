"""Safety supervisor figures: added latency per command and worst-case reaction to each fault.

Latency: wall time of ``Supervisor.filter`` per command (p50, p99, max) on a realistic stream (a
smooth target the robot tracks), with the calibration's workspace check and without it.
Reaction: a simulated clock with the watchdog ticking at ``--tick-hz``, commands at
``--command-hz`` and states at ``--state-hz``; each fault starts at a random phase and the time
to the first hold (or e-stop) verdict is measured from the fault's onset (the last state or
command before a stream stops; the arrival of the faulty state, e.g. the first one stamped 10 s
ahead of the supervisor's clock; the e-stop call).

    python bench/safety_latency.py --robot dclaw            # figures
    python bench/safety_latency.py --smoke                  # a quick run proving the script works
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import time

import numpy as np

from robot_rl.robot_config import RobotCalibration, load_robot
from robot_rl.safety import RobotState, Supervisor

FAULTS = ("stale_state", "stale_command", "overcurrent", "overtemperature", "future_stamp",
          "estop")


def without_workspace(calibration: RobotCalibration) -> RobotCalibration:
    return dataclasses.replace(calibration,
                               safety=dataclasses.replace(calibration.safety, workspace=None))


def target(calibration: RobotCalibration, t_s: float) -> np.ndarray:
    """A smooth target sweeping the middle half of each joint's range at 0.5 Hz."""
    lo, hi = calibration.lower_rad, calibration.upper_rad
    phase = np.arange(calibration.n_joints)
    return (lo + hi) / 2 + 0.25 * (hi - lo) * np.sin(2 * np.pi * 0.5 * t_s + phase)


def state(calibration: RobotCalibration, t_s: float, q: np.ndarray, *, effort: float = 0.0,
          temperature: float = 40.0) -> RobotState:
    n = calibration.n_joints
    return RobotState(t_s, q.copy(), np.zeros(n), np.full(n, effort), np.full(n, temperature),
                      np.zeros(n, bool))


def latency(calibration: RobotCalibration, commands: int, command_hz: float) -> dict[str, float]:
    sup = Supervisor(calibration)
    period = 1.0 / command_hz
    q = target(calibration, 0.0)
    sup.update_state(state(calibration, 0.0, q), 0.0)
    times, statuses = [], {"pass": 0, "clipped": 0, "hold": 0, "estop": 0}
    for k in range(1, commands + 1):
        t = k * period
        command = target(calibration, t)
        start = time.perf_counter_ns()
        verdict = sup.filter(command, t)
        times.append(time.perf_counter_ns() - start)
        statuses[verdict.status] += 1
        if verdict.command_rad is not None:
            q = verdict.command_rad  # the robot reaches each target within the period
        sup.update_state(state(calibration, t + 0.5 * period, q), t + 0.5 * period)
    us = np.array(times) / 1e3
    return {"p50_us": float(np.percentile(us, 50)), "p99_us": float(np.percentile(us, 99)),
            "max_us": float(us.max()), **{f"{k}_share": v / commands for k, v in statuses.items()}}


def reaction(calibration: RobotCalibration, fault: str, tick_hz: float, command_hz: float,
             state_hz: float, rng: np.random.Generator) -> float:
    """Seconds from the fault's onset to the first hold or e-stop verdict (one random phase)."""
    sup = Supervisor(without_workspace(calibration))
    fault_s = 1.0 + rng.uniform(0.0, 1.0)
    schedule = sorted((period * (k + offset), kind)
                      for kind, period in (("tick", 1 / tick_hz), ("command", 1 / command_hz),
                                           ("state", 1 / state_hz))
                      for offset in [rng.uniform()] for k in range(int(4.0 / period)))
    q = target(calibration, 0.0)
    last_state_s = last_command_s = 0.0
    onset: float | None = None
    for t, kind in schedule:
        after = t >= fault_s
        if after and onset is None:
            if fault == "stale_state":
                onset = last_state_s
            elif fault == "stale_command":
                onset = last_command_s
            elif fault == "estop":
                sup.estop("bench", fault_s)
                onset = fault_s
        if kind == "state":
            if fault == "stale_state" and after:
                continue
            overcurrent = after and fault == "overcurrent"
            overheated = after and fault == "overtemperature"
            ahead_s = 10.0 if after and fault == "future_stamp" else 0.0  # the driver's clock
            if (overcurrent or overheated or ahead_s) and onset is None:
                onset = t  # the first faulty measurement reaches the supervisor now
            effort = 2.0 * calibration.current_limit_a.max() if overcurrent else 0.0
            temperature = calibration.safety.temperature_limit_c + (5.0 if overheated else -20.0)
            sup.update_state(state(calibration, t + ahead_s, q, effort=effort,
                                   temperature=temperature), t)
            last_state_s = t
            continue
        if kind == "command":
            if fault == "stale_command" and after:
                continue
            verdict = sup.filter(target(calibration, t), t)
            last_command_s = t
        else:
            verdict = sup.tick(t)
        if verdict is None:
            continue
        if verdict.status in ("pass", "clipped"):
            q = verdict.command_rad  # the robot reaches each target before the next state
        elif onset is not None:
            return t - onset
    raise RuntimeError(f"no hold after {fault}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--robot", default="dclaw")
    parser.add_argument("--commands", type=int, default=20000)
    parser.add_argument("--trials", type=int, default=500, help="random phases per fault")
    parser.add_argument("--tick-hz", type=float, default=100.0)
    parser.add_argument("--command-hz", type=float, default=20.0)
    parser.add_argument("--state-hz", type=float, default=100.0)
    parser.add_argument("--smoke", action="store_true", help="a few hundred commands, 20 trials")
    args = parser.parse_args()
    if args.smoke:
        args.commands, args.trials = 300, 20
    calibration = load_robot(args.robot)
    print(f"robot {args.robot}: {calibration.n_joints} joints; {args.commands} commands at "
          f"{args.command_hz:g} Hz")
    runs = [("without workspace", without_workspace(calibration))]
    if calibration.safety.workspace is not None:
        runs.append((f"with workspace ({', '.join(calibration.safety.workspace.sites)})",
                     calibration))
    for label, cal in runs:
        r = latency(cal, args.commands, args.command_hz)
        print(f"  filter {label:50s} p50 {r['p50_us']:8.1f} us  p99 {r['p99_us']:8.1f} us  "
              f"max {r['max_us']:8.1f} us  (pass {r['pass_share']:.0%}, clipped "
              f"{r['clipped_share']:.0%}, hold {r['hold_share']:.0%})")
    tick_s = 1.0 / args.tick_hz
    print(f"reaction: watchdog tick {args.tick_hz:g} Hz, commands {args.command_hz:g} Hz, states "
          f"{args.state_hz:g} Hz; state_timeout_s {calibration.safety.state_timeout_s}, "
          f"command_timeout_s {calibration.safety.command_timeout_s}; {args.trials} phases each")
    rng = np.random.default_rng(0)
    for fault in FAULTS:
        worst = max(reaction(calibration, fault, args.tick_hz, args.command_hz, args.state_hz, rng)
                    for _ in range(args.trials))
        timeout = {"stale_state": calibration.safety.state_timeout_s,
                   "stale_command": calibration.safety.command_timeout_s}.get(fault, 0.0)
        beyond = worst - timeout
        print(f"  {fault:16s} worst {worst * 1e3:7.1f} ms from onset = timeout {timeout * 1e3:5.0f}"
              f" ms + {beyond * 1e3:5.1f} ms ({math.ceil(beyond / tick_s - 1e-9)} tick(s))")


if __name__ == "__main__":
    main()
