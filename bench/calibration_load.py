"""What ``load_robot`` costs, and how much of it is the check of the joints against the model.

Each calibration in a fresh Python process (as a node starts): importing ``robot_rl.robot_config``,
importing MuJoCo (only the model check needs it), reading the model's joint and site names with
MuJoCo's own parser (``MjModel.from_xml_path``: parse and compile), the first ``load_robot``
(YAML, validation, the supervisor's limit checks, the model check from the cache), then the median
of later loads (the model's names cached per file version) and of loads with the cache cleared.
A calibration whose model does not exist (ur5e) is loaded without the model check.

    PYTHONPATH=. python bench/calibration_load.py
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]

_PROBE = r"""
import json, statistics, sys, time
name, repeats = sys.argv[1], int(sys.argv[2])
ms = lambda t: (time.perf_counter() - t) * 1e3
t = time.perf_counter(); import robot_rl.robot_config as rc; out = {"import_module_ms": ms(t)}

t = time.perf_counter(); import mujoco; out["import_mujoco_ms"] = ms(t)
t = time.perf_counter(); cal = rc.load_robot(name); out["first_load_ms"] = ms(t)
exists = cal.model_file.exists()
out["model"] = cal.model_mjcf + ("" if exists else " (missing: not checked)")
if exists:
    rc._model_names.cache_clear()
    t = time.perf_counter(); rc.model_names(cal.model_file); out["model_names_ms"] = ms(t)
def median(clear):
    times = []
    for _ in range(repeats):
        if clear:
            rc._model_names.cache_clear()
        t = time.perf_counter(); rc.load_robot(name); times.append(ms(t))
    return statistics.median(times)
out["load_cached_ms"] = median(False)
out["load_uncached_ms"] = median(True)
print(json.dumps(out))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--robots", nargs="+", default=["dclaw", "arm6", "ur5e"])
    parser.add_argument("--repeats", type=int, default=30)
    args = parser.parse_args()
    print("per calibration, in a fresh process; ms (load: median of "
          f"{args.repeats})")
    for robot in args.robots:
        done = subprocess.run([sys.executable, "-c", _PROBE, robot, str(args.repeats)],
                              cwd=REPO_ROOT, capture_output=True, text=True, check=True)
        r = json.loads(done.stdout.strip().splitlines()[-1])
        names = f"{r['model_names_ms']:6.1f}" if "model_names_ms" in r else "     -"
        print(f"  {robot:6s} import robot_config {r['import_module_ms']:6.1f}  import mujoco "
              f"{r['import_mujoco_ms']:6.1f}  first load_robot {r['first_load_ms']:6.1f}  "
              f"model names (compile) {names}  load_robot {r['load_cached_ms']:5.2f} cached, "
              f"{r['load_uncached_ms']:5.2f} uncached  [{r['model']}]")


if __name__ == "__main__":
    main()
