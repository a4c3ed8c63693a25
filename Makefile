# The two commands of the README: `make demo` and `make test`. Both set everything up first;
# a second run reuses the installed .venv and starts at once.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# The CPU build on machines without a GPU; override for yours, e.g. make TORCH_SPEC='torch==2.13.0'.
TORCH_SPEC ?= torch==2.13.0
STAMP := $(VENV)/.installed
# make test also installs real ROS 2 where its wheels exist: robot_rl[ros] (rclpy, Jazzy), ROS 2
# Jazzy's launch system from its sources (not on PyPI; ../shared beside the checkout, or beside
# its parent for a worktree; override with ROS2_LAUNCH_SRC=...) and colcon, for the tests that run
# the nodes on rclpy, mixed graphs, and colcon build + ros2 launch. Where they cannot install,
# one line says so and those tests are skipped, each with its reason. The launch sources are built
# from a copy inside the venv: ../shared may be read-only, and stays as it was.
ROS_STAMP := $(VENV)/.ros-installed
ROS2_LAUNCH_SRC ?= $(firstword $(wildcard ../shared/ros2-launch-jazzy ../../shared/ros2-launch-jazzy))
LAUNCH_PKGS := launch launch_yaml launch_xml launch_ros composition_interfaces_stub
# d3rlpy, the learner's peer: tests compare robot_rl's AWAC with it (tests/unit/test_learning_awac_d3rlpy.py)
# and bench/ measures both. pip resolving its pins would downgrade gymnasium, so it is installed
# without them, plus what it imports. Pinned exactly: the comparison reads its update's parts.
D3RLPY_SPEC ?= d3rlpy==2.8.1
PEERS := $(VENV)/.peers-installed
# Arguments for `make demo`'s robot-rl demo, e.g. DEMO_ARGS=--overwrite to replace an earlier run.
DEMO_ARGS ?=
export MUJOCO_GL ?= egl
export PYTHONUNBUFFERED := 1

.PHONY: demo test lint bench experiments mutants setup setup-ros clean lerobot-venv

setup: $(STAMP)

setup-ros: $(ROS_STAMP)

$(STAMP): setup.cfg setup.py scripts/system_deps.sh
	@bash scripts/system_deps.sh
	@$(PYTHON) -c 'import sys; v = sys.version_info[:2]; sys.exit(0 if (3, 10) <= v <= (3, 12) else \
	  "robot_rl needs Python 3.10-3.12; found %d.%d (set PYTHON=python3.11)" % v)'
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH_SPEC)"
	$(PY) -m pip install -q -e ".[test,lerobot]"
	@touch $@

# The real lerobot package, to check what `robot-rl dataset export --format lerobot` writes
# (tests/unit/test_data_lerobot.py). lerobot 0.4.4 pins torch<2.11 and opencv<4.13, so it cannot
# share .venv (torch 2.13): its own venv, used by that test only. Measured here: 7 min 45 s and
# 8.3 GB the first time (its CUDA torch from PyPI); pip's cache makes a rebuild faster.
LEROBOT_VENV ?= .venv-lerobot
LEROBOT_STAMP := $(LEROBOT_VENV)/.installed
lerobot-venv: $(LEROBOT_STAMP)
$(LEROBOT_STAMP):
	@test -x $(LEROBOT_VENV)/bin/python || $(PYTHON) -m venv $(LEROBOT_VENV)
	$(LEROBOT_VENV)/bin/python -m pip install -q "lerobot==0.4.4"
	@touch $@

$(PEERS): $(STAMP) Makefile
	$(PY) -m pip install -q --no-deps "$(D3RLPY_SPEC)"
	$(PY) -m pip install -q gym==0.26.2 gym-notices colorama dataclasses-json structlog scikit-learn
	@touch $@

# rclpy's wheels first: they bring lark-parser 0.12, whose `lark` module the launch system's
# lark 1.x then replaces (rclpy does not import it at run time). colcon before the launch
# packages: pip's check at colcon's install would call launch_ros' ament_index_python (the
# wheel is named ros-ament-index-python) missing.
$(ROS_STAMP): $(STAMP)
	@if $(PY) -m pip install -q -e ".[ros]" && $(PY) -c "import rclpy" 2>/dev/null; then \
	  echo "robot_rl[ros]: rclpy (ROS 2 Jazzy) installed"; \
	  $(PY) -m pip install -q colcon-common-extensions && echo "colcon installed"; \
	  if [ -n "$(ROS2_LAUNCH_SRC)" ] && [ -d "$(ROS2_LAUNCH_SRC)/launch_ros" ]; then \
	    $(PY) -m pip install -q osrf-pycommon lark packaging && \
	    rm -rf $(VENV)/ros2-launch-src && cp -r $(ROS2_LAUNCH_SRC) $(VENV)/ros2-launch-src && chmod -R u+w $(VENV)/ros2-launch-src && \
	    PYTHONWARNINGS=ignore $(PY) -m pip install -q --no-deps $(addprefix $(VENV)/ros2-launch-src/,$(LAUNCH_PKGS)) && \
	    echo "ROS 2 Jazzy launch installed from $(ROS2_LAUNCH_SRC)"; \
	  else echo "ROS 2 Jazzy launch sources not found (../shared/ros2-launch-jazzy): its tests will be skipped"; fi; \
	else echo "robot_rl[ros]: no ROS 2 Jazzy wheels for this machine (x86_64 Linux, CPython 3.10-3.13 only): the rclpy, mixed-graph and ros2 launch tests will be skipped"; fi
	@touch $@

demo: $(STAMP)
	$(VENV)/bin/robot-rl demo --profile demo $(DEMO_ARGS)

test: $(STAMP) $(PEERS) $(LEROBOT_STAMP) $(ROS_STAMP) lint
	$(PY) -m pytest

lint: $(STAMP)
	$(VENV)/bin/ruff check .

# Benchmarks print figures (they are not tests), each next to its peer where one exists.
bench: $(STAMP) $(PEERS)
	$(PY) bench/env_throughput.py
	$(PY) bench/learner_throughput.py
	$(PY) bench/safety_latency.py
	$(PY) bench/dynamixel_cycle.py
	$(PY) bench/dds_roundtrip.py
	$(PY) bench/safety_node_latency.py
	$(PY) bench/control_loop.py
	$(PY) bench/lockstep_speedup.py
	$(PY) bench/recorder_write.py

# Mutation testing (not in CI: minutes to hours): mutmut over the supervisor, AWAC's update, the
# store's commit and the chain's reconnect, each against its own tests, in copies of the tree under
# out/mutants/; prints the survivors (docs/testing.md), then the tests that fail each mutant issue 25
# named (scripts/named_mutants.py). Some targets: make mutants MUTANTS="awac".
MUTMUT_SPEC ?= mutmut==3.8.1
mutants: $(STAMP) $(PEERS)
	$(PY) -m pip install -q "$(MUTMUT_SPEC)"
	$(PY) scripts/mutants.py $(MUTANTS)
	$(PY) scripts/named_mutants.py $(MUTANTS)

# The offline-to-online experiments of docs/results.md (quick profile: minutes on 2 cores).
experiments: $(STAMP)
	$(PY) bench/experiments.py --task valve --profile quick --seeds 3
	$(PY) bench/experiments.py --task drawer --profile quick --seeds 3

clean:
	rm -rf $(VENV) $(LEROBOT_VENV) runs .pytest_cache .ruff_cache
