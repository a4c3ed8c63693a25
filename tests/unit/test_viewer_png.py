"""The headless live view: the twin's latest frame as a PNG file, from the real renderer (the twin
node writing it when ``viewer:=true`` finds no display: tests/graph/test_graph_viewer_png.py)."""

from __future__ import annotations

import numpy as np
import pytest
from helpers.viewer import read_png, wait_for

import robot_rl.sim_twin  # noqa: F401  (sets MUJOCO_GL before mujoco renders)
from robot_rl.sim_twin.viewer import PngViewer, display_available, open_viewers
from robot_rl.tasks.valve import ValveTaskConfig

HOME = np.tile(ValveTaskConfig().finger_home_rad, 3)  # the valve task's reset pose


def test_png_shows_the_latest_state_and_is_replaced_whole(twin, tmp_path) -> None:
    path = tmp_path / "view" / "twin.png"
    viewer = PngViewer(twin.model, path, width=64, height=48)
    try:
        viewer.update(twin.data)
        wait_for(lambda: viewer.frames_written >= 1, 10.0, "the first PNG")
        first = read_png(path)
        assert first.shape == (48, 64, 3) and first.std() > 0
        twin.reset(HOME, 1.2)                          # the valve turns
        viewer.update(twin.data)
        wait_for(lambda: viewer.frames_written >= 2, 10.0, "the second PNG")
        assert np.abs(read_png(path) - first).mean() > 0.05
        assert viewer.error is None
        assert sorted(p.name for p in path.parent.iterdir()) == ["twin.png"]  # no temp file left
    finally:
        viewer.close()


def test_window_without_display_falls_back_to_png_and_says_why(twin, tmp_path,
                                                               monkeypatch) -> None:
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    monkeypatch.chdir(tmp_path)
    viewers, notes = open_viewers(twin.model, twin.data, window=True, png_path="", width=64,
                                  height=48)
    try:
        assert len(viewers) == 1 and isinstance(viewers[0], PngViewer)
        assert "no display" in notes[0] and "PNG instead" in notes[0]
        assert str(tmp_path / "twin_view.png") in notes[1]
        viewers[0].update(twin.data)
        wait_for((tmp_path / "twin_view.png").exists, 10.0, "twin_view.png")
    finally:
        for viewer in viewers:
            viewer.close()


def test_display_detection_and_bad_camera(twin, tmp_path) -> None:
    assert display_available({"DISPLAY": ":0"}) == ""
    assert display_available({"WAYLAND_DISPLAY": "wayland-0"}) == ""
    assert "no display" in display_available({})
    with pytest.raises(ValueError, match=r"viewer camera 'top' .* cameras: \['realsense'\]"):
        PngViewer(twin.model, tmp_path / "x.png", camera="top")
