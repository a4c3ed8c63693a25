"""The mutants issue 25 named, applied by hand to a copy of the tree: prints the tests each fails.

    .venv/bin/python scripts/named_mutants.py                 # all of them
    .venv/bin/python scripts/named_mutants.py store chain     # those of some targets

mutmut (scripts/mutants.py) makes one-token changes; some of the bugs the issue named are not
one token (two writes swapped, an intent set too late, a guard deleted), so each is written here
as a text replacement in one file. Each runs in its own copy of the tree under
out/named_mutants/<name>/ (the working tree is never modified) against the test files that must
catch it, and the script prints the tests that failed; a mutant that none fails is printed as
SURVIVED and the script exits 1. Not in CI (minutes on 2 cores).
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from mutants import TARGETS, copy_tree

REPO = Path(__file__).resolve().parents[1]
WORK = REPO / "out" / "named_mutants"
SUPERVISOR_TESTS = ("tests/unit/test_safety_supervisor.py",)  # the unit tests, not the properties
# the deterministic tests: the SIGKILL ones left out, so a kill that lands by chance cannot count
STORE_TESTS = ("tests/unit/test_data_store.py", "tests/unit/test_data_crash.py",
               "-k", "not sigkill")
CHAIN_TESTS = ("tests/hil/test_dynamixel_faults.py", "tests/hil/test_dynamixel_chain.py")


@dataclass(frozen=True)
class Named:
    target: str
    name: str
    file: str
    old: str  # must occur exactly once in the file
    new: str
    tests: tuple[str, ...]


MUTANTS = (
    Named("supervisor", "lower_limit_dropped", "robot_rl/safety/limits.py",
          "lowers = [limits.lower_rad, measured_rad - step]",
          "lowers = [np.full_like(limits.lower_rad, -np.inf), measured_rad - step]",
          SUPERVISOR_TESTS),
    Named("supervisor", "reset_after_invalid_state", "robot_rl/safety/supervisor.py",
          "fresh = (self._state is not None and self._state_fault is None and not self._now_back",
          "fresh = (self._state is not None and not self._now_back", SUPERVISOR_TESTS),
    Named("store", "ends_grown_before_written", "robot_rl/data/store.py",
          "        self._ends_array.view(shape=(index + 1,))[index] = end\n"
          "        self._ends_array.resize(index + 1)\n",
          "        self._ends_array.resize(index + 1)\n"
          "        self._ends_array.view(shape=(index + 1,))[index] = end\n", STORE_TESTS),
    Named("store", "overwrite_guard_removed", "robot_rl/data/store.py",
          'if path.is_dir() and not (path / ".zgroup").is_file() and any(path.iterdir()):',
          "if False:", STORE_TESTS),
    Named("chain", "reconnect_timeout_ignored", "robot_rl/drivers/dynamixel/chain.py",
          "if elapsed_s >= timeout_s:", "if False:", CHAIN_TESTS),
    Named("chain", "port_error_raised", "robot_rl/drivers/dynamixel/chain.py",
          "        except PORT_ERRORS as err:\n            self._reconnect(err)\n"
          "            return operation(*args)\n",
          "        except PORT_ERRORS:\n            raise\n", CHAIN_TESTS),
    Named("chain", "goal_replayed_after_reconnect", "robot_rl/drivers/dynamixel/chain.py",
          "            self._reconnect(err)\n            now = ",
          "            self._reconnect(err)\n            self._timed_write(ticks)\n"
          "            return clamped\n            now = ", CHAIN_TESTS),
    Named("chain", "torque_intent_set_after_the_change", "robot_rl/drivers/dynamixel/chain.py",
          "        self.torque_on = on\n        if on:\n", "        if on:\n", CHAIN_TESTS),
    Named("chain", "settings_not_restored_when_armed", "robot_rl/drivers/dynamixel/chain.py",
          "        self._last_arm_failures = {}\n        self._write_ram_settings()\n",
          "        self._last_arm_failures = {}\n", CHAIN_TESTS),
    Named("chain", "settings_not_restored_with_torque_off", "robot_rl/drivers/dynamixel/chain.py",
          "        else:\n            self._write_ram_settings()\n", "", CHAIN_TESTS),
    Named("chain", "torque_off_once_reconnects", "robot_rl/drivers/dynamixel/chain.py",
          "        self.torque_on = False\n        if self._port is None:",
          "        return self.torque(False)\n        if self._port is None:", CHAIN_TESTS),
)
# pytest's summary lines: "FAILED tests/x.py::test_y[...] - why" or "ERROR ..."
FAILED = re.compile(r"^(FAILED|ERROR) (\S+)")


def run(mutant: Named) -> list[str]:
    """The tests that fail with ``mutant`` applied (empty: it survived)."""
    copy = WORK / mutant.name
    copy_tree(copy)
    path = copy / mutant.file
    text = path.read_text()
    count = text.count(mutant.old)
    if count != 1:
        raise SystemExit(f"{mutant.name}: {mutant.file} has its text {count} times, expected "
                         "once (the code changed: update scripts/named_mutants.py)")
    path.write_text(text.replace(mutant.old, mutant.new))
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-rfE", "-p", "no:cacheprovider",
                           "-m", "not slow", *mutant.tests], cwd=copy, text=True,
                          capture_output=True, env={**os.environ, "PYTHONPATH": ""})
    failed = [m[2] for m in map(FAILED.match, done.stdout.splitlines()) if m]
    if done.returncode not in (0, 1) or (done.returncode == 1 and not failed):
        raise SystemExit(f"{mutant.name}: pytest exited {done.returncode}:\n{done.stdout[-3000:]}")
    return failed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    # mutants.py's targets (make mutants passes the same list to both); awac has none here: its
    # named mutants are one-token changes that mutmut makes itself
    parser.add_argument("targets", nargs="*", metavar="TARGET",
                        help=f"some of {', '.join(TARGETS)} (default: all)")
    args = parser.parse_args(argv)
    unknown = set(args.targets) - set(TARGETS)
    if unknown:
        parser.error(f"unknown target(s) {', '.join(sorted(unknown))}: expected some of "
                     f"{', '.join(TARGETS)}")
    survived = 0
    for mutant in MUTANTS:
        if args.targets and mutant.target not in args.targets:
            continue
        started = time.monotonic()
        failed = run(mutant)
        survived += not failed
        print(f"== {mutant.target} {mutant.name} ({time.monotonic() - started:.0f} s): "
              + (f"killed by {len(failed)} tests" if failed else "SURVIVED"), flush=True)
        for test in failed:
            print(f"   {test}", flush=True)
    return 1 if survived else 0


if __name__ == "__main__":
    sys.exit(main())
