"""MuJoCo's passive viewer window on the twin: needs a display (an X server or Wayland), so the
window test runs only where DISPLAY or WAYLAND_DISPLAY is set (e.g. under ``xvfb-run``)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import robot_rl.sim_twin  # noqa: F401  (sets MUJOCO_GL before mujoco renders)
from robot_rl.robot_config import load_robot
from robot_rl.sim_twin import Twin
from robot_rl.sim_twin.viewer import PassiveViewer, ViewerUnavailable, display_available
from robot_rl.tasks.valve import ValveTaskConfig

HOME = np.tile(ValveTaskConfig().finger_home_rad, 3)  # the valve task's reset pose


def test_no_window_without_a_display(twin, monkeypatch) -> None:
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    with pytest.raises(ViewerUnavailable, match="no display"):
        PassiveViewer(twin.model, twin.data)


@pytest.mark.skipif(bool(display_available()), reason=f"needs a display: {display_available()}")
def test_window_follows_the_twin(twin) -> None:
    viewer = PassiveViewer(twin.model, twin.data)
    try:
        assert viewer.running and "camera realsense" in viewer.description
        for _ in range(5):
            twin.set_joint_targets(HOME + 0.2)
            twin.advance(0.05)
            viewer.update(twin.data)
        assert viewer.running and twin.time_s == pytest.approx(0.25)
        with pytest.raises(ValueError, match="MjData it was opened on"):
            viewer.update(Twin(load_robot("dclaw")).data)
    finally:
        viewer.close()
    assert not viewer.running


EXIT_AFTER_CLOSE = """
import numpy as np
from robot_rl import sim_twin
from robot_rl.robot_config import load_robot
from robot_rl.sim_twin.viewer import PassiveViewer
twin = sim_twin.Twin(load_robot("dclaw"))
viewer = PassiveViewer(twin.model, twin.data)
for _ in range(10):
    twin.advance(0.05)
    viewer.update(twin.data)
viewer.close()
"""


@pytest.mark.skipif(bool(display_available()), reason=f"needs a display: {display_available()}")
def test_process_exits_cleanly_after_close() -> None:
    # GLFW terminates at exit; a window thread still running then crashed half the runs
    for _ in range(2):
        done = subprocess.run([sys.executable, "-c", EXIT_AFTER_CLOSE], capture_output=True,
                              text=True, timeout=60)
        assert done.returncode == 0, done.stderr[-2000:]
