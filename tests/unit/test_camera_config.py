"""Camera calibration schema: loading, validation errors, quaternions, saving without clobbering."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from robot_rl.camera_config import (
    CAMERAS_DIR,
    CameraCalibration,
    Extrinsics,
    Intrinsics,
    load_camera,
    matrix_to_quaternion,
    quaternion_to_matrix,
    save_camera,
)
from robot_rl.config import ConfigError

GOOD = """camera: test
serial: "123"
intrinsics: {width: 640, height: 480, fx: 615.0, fy: 615.5, cx: 319.5, cy: 239.5,
             distortion_model: plumb_bob, d: [0.1, -0.2, 0.0, 0.0, 0.05]}
extrinsics: {translation_m: [0.3, -0.3, 0.3], rotation_xyzw: [0.0, 0.0, 0.0, 1.0]}
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "cam.yaml"
    path.write_text(text)
    return path


def test_load_gives_k_d_and_the_transform(tmp_path: Path) -> None:
    cal = load_camera(write(tmp_path, GOOD))
    np.testing.assert_allclose(cal.intrinsics.k, [[615, 0, 319.5], [0, 615.5, 239.5], [0, 0, 1]])
    assert cal.intrinsics.d == (0.1, -0.2, 0.0, 0.0, 0.05)
    assert cal.extrinsics is not None
    np.testing.assert_allclose(cal.extrinsics.matrix()[:3, 3], [0.3, -0.3, 0.3])
    assert cal.extrinsics.child_frame == "camera_color_optical_frame"


@pytest.mark.parametrize("change, expected", [
    (("fx: 615.0", "fx: -1.0"), "intrinsics.fx: -1.0 is out of range"),
    (("plumb_bob", "fisheye"), "intrinsics.distortion_model: 'fisheye' is not one of"),
    (("d: [0.1, -0.2, 0.0, 0.0, 0.05]", "d: [0.1]"), "plumb_bob needs 5 coefficients, got 1"),
    (("[0.0, 0.0, 0.0, 1.0]", "[0.0, 0.0, 0.5, 0.5]"), "expected a unit quaternion"),
    (("[0.3, -0.3, 0.3]", "[0.3, -0.3]"), "extrinsics.translation_m: expected 3 items"),
    (("camera: test\n", ""), "camera: required key is missing"),
])
def test_errors_name_the_file_and_the_key(tmp_path: Path, change: tuple[str, str],
                                          expected: str) -> None:
    path = write(tmp_path, GOOD.replace(*change))
    with pytest.raises(ConfigError) as err:
        load_camera(path)
    assert str(err.value).startswith(str(path)) and expected in str(err.value)


def test_unknown_name_lists_the_known_ones() -> None:
    with pytest.raises(ConfigError, match="known"):
        load_camera("no_such_camera")


def test_shipped_camera_files_load() -> None:
    files = sorted(CAMERAS_DIR.glob("*.yaml"))
    assert files
    for path in files:
        assert load_camera(path.stem).intrinsics.width > 0


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(-1.0, 1.0), min_size=4, max_size=4).filter(
    lambda q: np.linalg.norm(q) > 0.1))
def test_quaternion_round_trip(q: list[float]) -> None:
    q_unit = np.array(q) / np.linalg.norm(q)
    rotation = quaternion_to_matrix(q_unit)
    np.testing.assert_allclose(rotation @ rotation.T, np.eye(3), atol=1e-12)
    assert np.linalg.det(rotation) == pytest.approx(1.0)
    back = matrix_to_quaternion(rotation)
    assert np.allclose(back, q_unit, atol=1e-9) or np.allclose(back, -q_unit, atol=1e-9)


def test_save_round_trips_and_never_overwrites_silently(tmp_path: Path) -> None:
    transform = np.eye(4)
    transform[:3, :3] = quaternion_to_matrix([0.1, 0.7, -0.2, 0.6])
    transform[:3, 3] = [0.1, 0.2, 0.3]
    cal = CameraCalibration("c", Intrinsics(64, 48, 50.0, 50.0, 32.0, 24.0),
                            extrinsics=Extrinsics.from_matrix(transform))
    path = save_camera(cal, tmp_path / "c.yaml", header="made by a test")
    assert path.read_text().startswith("# made by a test\n")
    loaded = load_camera(path)
    assert loaded.extrinsics is not None
    np.testing.assert_allclose(loaded.extrinsics.matrix(), transform, atol=1e-12)
    with pytest.raises(FileExistsError, match="exists"):
        save_camera(cal, path)
    save_camera(cal, path, overwrite=True)
