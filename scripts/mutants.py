"""Mutation testing: mutmut over the modules whose tests must catch one-line bugs; prints survivors.

    make mutants                      # every target below
    make mutants MUTANTS="awac store" # some of them
    .venv/bin/python scripts/mutants.py awac --only 'robot_rl.learning.awac.x_awr_weights__mutmut_5'
                                      # some mutants again (e.g. survivors, after adding tests)

Each target runs in its own copy of this tree (tracked and untracked-but-not-ignored files) under
out/mutants/<target>/, so the working tree is never modified, with a [mutmut] section appended to
the copy's setup.cfg: the files to mutate and the test files relevant to them (mutmut then runs,
for each mutant, only those of them that call the mutated function). A mutant "survives" when they
all still pass. Survivors are printed as diffs; docs/testing.md says which remain and why each is
equivalent or acceptable. Not in CI: a target takes minutes (awac) to much longer on 2 cores.

Tests that reach the code only in a child process (the store's SIGKILL tests, graph tests) do run
against the mutant (children import the copy and inherit mutmut's MUTANT_UNDER_TEST), but mutmut
only selects a test for a mutant when the test calls the function in its own process.
"""

from __future__ import annotations

import argparse
import fnmatch
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
WORK = REPO / "out" / "mutants"


@dataclass(frozen=True)
class Target:
    mutate: tuple[str, ...]  # files whose mutants are tried
    tests: tuple[str, ...]   # the test files relevant to them
    pytest_args: tuple[str, ...] = ("-m", "not slow")
    # mutmut's mutant names to try (globs; empty: every function of the files). A function f of
    # module m is "m.x_f", a method C.f "m.xǁCǁf"; its mutants add "__mutmut_<n>".
    functions: tuple[str, ...] = ()


def functions(module: str, names: str) -> tuple[str, ...]:
    """Globs of the mutants of ``names`` ("f" for a function, "C.f" for a method) in ``module``."""
    def glob(name: str) -> str:
        cls, _, func = name.rpartition(".")
        return f"{module}.x{'ǁ' + cls + 'ǁ' if cls else '_'}{func}__mutmut_*"
    return tuple(glob(n) for n in names.split())


TARGETS = {
    # the supervisor's checks: every decision from a state, command, tick, e-stop or reset to a
    # verdict, and the limits it applies (not the diagnostics' wording, nor the workspace's
    # construction); the property tests draw a quarter of their examples, always the same ones
    # (the "mutants" hypothesis profile, tests/helpers/examples.py)
    "supervisor": Target(("robot_rl/safety/supervisor.py", "robot_rl/safety/limits.py"),
                         ("tests/unit/test_safety_supervisor.py",
                          "tests/unit/test_safety_properties.py"),
                         ("-m", "not slow", "--hypothesis-profile=mutants"),
                         functions("robot_rl.safety.supervisor",
                                   "Supervisor.__init__ Supervisor.update_state Supervisor.filter "
                                   "Supervisor.tick Supervisor.estop Supervisor.reset "
                                   "Supervisor._conditions Supervisor._telemetry_conditions "
                                   "Supervisor._hold Supervisor._enter_hold "
                                   "Supervisor._hold_command Supervisor._run "
                                   "Supervisor._constrained Supervisor._rebase Supervisor._emit "
                                   "Supervisor._verdict Supervisor._clock "
                                   "Supervisor._state_problem Supervisor._take_telemetry")
                         + functions("robot_rl.safety.limits",
                                     "JointLimits.from_calibration clip hard_box "
                                     "acceleration_window constrain jumped")),
    # AWAC's update: the functions from the batch to the new weights (not construction, acting,
    # persistence or the compile fallback, whose 8 s test is left out of the run)
    "awac": Target(("robot_rl/learning/awac.py",),
                   ("tests/unit/test_learning_awac.py", "tests/unit/test_learning_awac_maths.py",
                    "tests/unit/test_learning_awac_chain.py",
                    "tests/unit/test_learning_awac_d3rlpy.py"),
                   ("-m", "not slow", "-k", "not failed_compilation"),
                   functions("robot_rl.learning.awac", "awr_weights _sample AWAC.update "
                             "AWAC._update AWAC._losses AWAC.td_target AWAC._td_target "
                             "AWAC._actor_loss AWAC._noise AWAC._aggregate")),
    # the store's commit: writing an episode's rows, its info and its end (the commit point), the
    # recovery that opening for append makes, and the overwrite guard
    "store": Target(("robot_rl/data/store.py",),
                    ("tests/unit/test_data_store.py", "tests/unit/test_data_crash.py"),
                    functions=functions("robot_rl.data.store",
                                        "EpisodeStore.create EpisodeStore.add_episode "
                                        "EpisodeStore._ensure_arrays EpisodeStore._write_rows "
                                        "EpisodeStore._fit_rows EpisodeStore._truncate_rows "
                                        "EpisodeStore._commit _committed_count _recover "
                                        "_remove_partial_files check_removable remove_store")),
    # the chain's reconnect, and what runs through it: a goal write or a torque change when the
    # port fails, torque off with the port gone, the settings restored by a re-arm. The node's
    # fault test runs the chain in a child process: mutmut never selects it for a mutant (it
    # selects by the calls a test makes in its own process), so it runs only in the clean run.
    "chain": Target(("robot_rl/drivers/dynamixel/chain.py",),
                    ("tests/hil/test_dynamixel_chain.py", "tests/hil/test_dynamixel_faults.py",
                     "tests/hil/test_dynamixel_node_faults.py"),
                    functions=functions("robot_rl.drivers.dynamixel.chain",
                                        "DynamixelChain._reconnect DynamixelChain._with_reconnect "
                                        "DynamixelChain._wait_unless_stopped "
                                        "DynamixelChain.write_positions DynamixelChain.torque "
                                        "DynamixelChain.torque_off_once "
                                        "DynamixelChain._torque_off_everywhere "
                                        "DynamixelChain._arm "
                                        "DynamixelChain._write_ram_settings")),
}
# Copied whole into mutmut's mutants/ folder, so that tests and their child processes import one
# consistent tree; only the Target's files are mutated.
SOURCE_PATHS = ("robot_rl",)
ALSO_COPY = ("tests", "launch", "setup.cfg")
STATUS = re.compile(r"^\s*(\S+): (.+)$")


def copy_tree(dest: Path) -> None:
    """This tree as git sees it (committed or not, ignored files left out) into ``dest``."""
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                            cwd=REPO, check=True, capture_output=True).stdout
    for name in filter(None, listed.decode().split("\0")):
        source = REPO / name
        if source.is_file():  # a deleted-but-tracked file is listed too
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / name)


def mutmut_section(target: Target) -> str:
    def listing(key: str, values: tuple[str, ...]) -> str:
        return f"{key} =\n" + "".join(f"    {v}\n" for v in values)

    return ("\n[mutmut]\n" + listing("source_paths", SOURCE_PATHS)
            + listing("only_mutate", target.mutate) + listing("also_copy", ALSO_COPY)
            + listing("pytest_add_cli_args_test_selection", target.tests)
            + listing("pytest_add_cli_args", (*target.pytest_args, "-p", "no:cacheprovider"))
            # forkserver: each mutant's pytest forks from a process that has not run torch
            + "process_isolation = forkserver\n")


def mutmut(copy: Path, *args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mutmut", *args], cwd=copy, text=True,
                          env={**os.environ, "PYTHONPATH": ""}, **kwargs)


def run_target(name: str, target: Target, max_children: int,
               only: tuple[str, ...] = ()) -> dict[str, list[str]]:
    if only:  # some mutants by name (globs), e.g. the survivors of an earlier run
        target = replace(target, functions=only)
    copy = WORK / name
    copy_tree(copy)
    with open(copy / "setup.cfg", "a") as cfg:
        cfg.write(mutmut_section(target))
    started = time.monotonic()
    log = copy / "mutmut-run.log"
    with open(log, "w") as out:
        done = mutmut(copy, "run", "--max-children", str(max_children), *target.functions,
                      stdout=out, stderr=subprocess.STDOUT)
    if done.returncode != 0:
        print(f"{name}: mutmut run failed (exit {done.returncode}); its output: {log}")
    listed = mutmut(copy, "results", "--all", "true", capture_output=True, check=True).stdout
    by_status: dict[str, list[str]] = {}
    for line in listed.splitlines():
        match = STATUS.match(line)
        if match and (not target.functions
                      or any(fnmatch.fnmatch(match[1], g) for g in target.functions)):
            by_status.setdefault(match[2], []).append(match[1])
    counts = ", ".join(f"{len(v)} {k}" for k, v in sorted(by_status.items()))
    print(f"\n== {name}: {' '.join(target.mutate)} ({time.monotonic() - started:.0f} s): {counts}")
    for status in ("survived", "timeout", "suspicious", "no tests"):
        for mutant in by_status.get(status, []):
            if status == "no tests":
                print(f"-- {mutant}: no test calls this function")
                continue
            diff = mutmut(copy, "show", mutant, capture_output=True).stdout
            changed = [line for line in diff.splitlines()
                       if line[:1] in "+-" and not line.startswith(("+++", "---"))]
            print(f"-- {mutant}: {status}\n" + "\n".join(f"   {line}" for line in changed))
    return by_status


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("targets", nargs="*", metavar="TARGET",
                        help=f"some of {', '.join(TARGETS)} (default: all)")
    parser.add_argument("--max-children", type=int, default=os.cpu_count() or 2,
                        help="mutants tested at once (default: the CPU count)")
    parser.add_argument("--only", nargs="+", default=(), metavar="MUTANT",
                        help="only these mutants (names or globs as printed, e.g. the survivors "
                             "of an earlier run, after adding tests)")
    args = parser.parse_args(argv)
    names = args.targets or list(TARGETS)
    unknown = [n for n in names if n not in TARGETS]
    if unknown:
        parser.error(f"unknown target(s) {', '.join(unknown)}: expected some of "
                     f"{', '.join(TARGETS)}")
    survivors = 0
    for name in names:
        by_status = run_target(name, TARGETS[name], args.max_children, tuple(args.only))
        survivors += len(by_status.get("survived", []))
    print(f"\n{survivors} surviving mutants in {', '.join(names)} (docs/testing.md says why each "
          "is equivalent or acceptable)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
