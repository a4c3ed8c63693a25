"""RealSenseCamera against real pyrealsense2: numpy frames recorded with rs.recorder from a
software device, played back through rs.pipeline (config.enable_device_from_file) or, by serial,
through a context that has loaded the recording as a device. No mocks."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyrealsense2 as rs  # libusb-1.0-0, which it needs, is installed by `make setup`
import pytest

from robot_rl.drivers.realsense.camera import RealSenseCamera, connected_serials
from robot_rl.drivers.realsense.config import CameraConfig
from robot_rl.drivers.realsense.errors import (
    CameraError,
    CameraNotFoundError,
    RecordingEnded,
    RecordingError,
)
from robot_rl.drivers.realsense.frame import CameraFrame, CameraIntrinsics
from robot_rl.drivers.realsense.recording import (
    DEFAULT_SERIAL,
    default_d435_intrinsics,
    image_message_counts,
    write_recording,
)

N_FRAMES = 12
FPS = 30
DEPTH_SCALE_M = 0.001
INTRINSICS = CameraIntrinsics(640, 480, 612.25, 611.75, 318.5, 243.25)
# Irregular, not starting at zero: the camera must return these, not i / fps.
STAMPS_S = [1234.5 + 0.0333 * i + 0.001 * (i % 3) for i in range(N_FRAMES)]


def pattern_color(i: int, h: int = 480, w: int = 640) -> np.ndarray:
    """A gradient moving 8 px right per frame, and the frame index in the top-left 8x8 block."""
    x = np.arange(w)[None, :]
    y = np.arange(h)[:, None]
    color = np.empty((h, w, 3), np.uint8)
    color[..., 0] = (x + 8 * i) % 256
    color[..., 1] = y % 256
    color[..., 2] = (x + y + 3 * i) % 251
    color[:8, :8, :] = i
    return color


def plane_depth(h: int = 480, w: int = 640) -> np.ndarray:
    """A tilted plane from 0.5 m (top left) to 0.8 m (bottom right), in millimetres."""
    x = np.arange(w)[None, :]
    y = np.arange(h)[:, None]
    return (500 + 200 * x / w + 100 * y / h).astype(np.uint16)


def read_all(camera: RealSenseCamera, limit: int = 100) -> list[CameraFrame]:
    frames = []
    with pytest.raises(RecordingEnded):
        for _ in range(limit):
            frames.append(camera.read())
    return frames


def skip_lost_start(expected: list[int], frames: list[CameraFrame]) -> list[int]:
    """The expected frame numbers, less the first one when playback lost it.

    The pipeline hands frames over through a queue of one, and at start the playback reader can
    get one frameset ahead of the first read (seen in about 1 of 20 runs): the first frameset is
    then replaced unseen. Only the first; every later frame must arrive.
    """
    if frames and frames[0].frame_number == expected[1]:
        return expected[1:]
    return expected


@pytest.fixture(scope="module")
def recording(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("realsense") / "pattern.db3"
    colors = (pattern_color(i) for i in range(N_FRAMES))  # a generator, as the twin's renders
    depths = [plane_depth()] * N_FRAMES
    written = write_recording(
        path, colors, depths, INTRINSICS, FPS, DEPTH_SCALE_M, timestamps_s=STAMPS_S
    )
    assert written == N_FRAMES
    return path


def test_recording_holds_every_frame_of_both_streams(recording: Path) -> None:
    counts = image_message_counts(recording)
    assert sorted(counts.values()) == [N_FRAMES, N_FRAMES]


def test_playback_returns_exact_colour_timestamps_and_frame_numbers(recording: Path) -> None:
    with RealSenseCamera(CameraConfig(recording_path=str(recording))) as camera:
        frames = read_all(camera)
        stats = camera.stats
    numbers = skip_lost_start(list(range(1, N_FRAMES + 1)), frames)
    assert [f.frame_number for f in frames] == numbers
    for frame in frames:
        # rs.recorder compresses losslessly: every pixel comes back as written.
        np.testing.assert_array_equal(frame.color, pattern_color(frame.frame_number - 1))
        assert frame.timestamp_domain == "hardware_clock"
    stamps = np.array([f.timestamp_s for f in frames])
    # The file stores nanoseconds; a double in ms carries ~1e-13 s here.
    np.testing.assert_allclose(stamps, STAMPS_S[numbers[0] - 1 :], rtol=0, atol=2e-9)
    assert np.all(np.diff(stamps) > 0)
    assert [f.dropped_frames for f in frames] == [0] * len(numbers)
    assert (stats.frames_read, stats.frames_dropped, stats.reconnects) == (len(numbers), 0, 0)


def test_aligned_depth_is_the_written_plane_in_metres(recording: Path) -> None:
    with RealSenseCamera(CameraConfig(recording_path=str(recording))) as camera:
        frame = camera.read()
    written = plane_depth()
    assert frame.depth is not None and frame.depth.shape == (480, 640)
    assert frame.depth_scale_m == pytest.approx(DEPTH_SCALE_M, rel=1e-6)
    # Identity extrinsics and equal intrinsics make align an identity map up to rounding of
    # pixel edges: librealsense leaves ~5% holes (0) and may take a neighbour's depth (1 mm away).
    valid = frame.depth > 0
    assert valid.mean() > 0.9
    assert np.abs(frame.depth[valid].astype(int) - written[valid]).max() <= 1
    depth_m = frame.depth_m
    assert depth_m is not None and np.isnan(depth_m[~valid]).all()
    assert np.nanmax(np.abs(depth_m - written * DEPTH_SCALE_M)) < 1.5e-3
    assert abs(frame.depth_timestamp_s - frame.timestamp_s) < 1e-9


def test_unaligned_depth_is_exact(recording: Path) -> None:
    config = CameraConfig(recording_path=str(recording), align_depth_to_color=False)
    with RealSenseCamera(config) as camera:
        frame = camera.read()
    np.testing.assert_array_equal(frame.depth, plane_depth())


def test_colour_only_stream_has_no_depth(recording: Path) -> None:
    config = CameraConfig(recording_path=str(recording), enable_depth=False)
    with RealSenseCamera(config) as camera:
        frames = read_all(camera)
    numbers = skip_lost_start(list(range(1, N_FRAMES + 1)), frames)
    assert [f.frame_number for f in frames] == numbers
    assert all(f.depth is None for f in frames)


def test_intrinsics_are_those_written(recording: Path) -> None:
    with RealSenseCamera(CameraConfig(recording_path=str(recording))) as camera:
        color, depth = camera.intrinsics(), camera.depth_intrinsics()
        assert camera.serial == DEFAULT_SERIAL
    assert color == depth  # aligned depth lives in the colour camera
    # librealsense stores intrinsics as float32.
    for name in ("fx", "fy", "ppx", "ppy"):
        assert getattr(color, name) == float(np.float32(getattr(INTRINSICS, name)))
    assert (color.width, color.height, color.model) == (640, 480, "brown_conrady")
    assert color.coeffs == (0.0,) * 5
    info = color.camera_info_fields()
    assert info["K"] == [612.25, 0.0, 318.5, 0.0, 611.75, 243.25, 0.0, 0.0, 1.0]


def test_skipped_frame_numbers_are_reported_as_dropped(tmp_path: Path) -> None:
    numbers = [1, 2, 3, 6, 7, 10, 11, 12]
    path = tmp_path / "drops.db3"
    write_recording(
        path,
        [pattern_color(n) for n in numbers],
        [plane_depth()] * len(numbers),
        INTRINSICS,
        FPS,
        timestamps_s=[(n - 1) / FPS for n in numbers],
        frame_numbers=numbers,
    )
    with RealSenseCamera(CameraConfig(recording_path=str(path))) as camera:
        frames = read_all(camera)
        stats = camera.stats
    seen = skip_lost_start(numbers, frames)
    assert [f.frame_number for f in frames] == seen
    assert [f.dropped_frames for f in frames] == [0, 0, 0, 2, 0, 2, 0, 0][-len(seen) :]
    assert stats.frames_dropped == 4


def test_device_is_selected_by_serial(recording: Path) -> None:
    context = rs.context()
    # A loaded recording shows up as a device, while this reference lives.
    device = context.load_device(str(recording))
    try:
        assert device.get_info(rs.camera_info.serial_number) == DEFAULT_SERIAL
        assert connected_serials(context) == [DEFAULT_SERIAL]
        with RealSenseCamera(CameraConfig(serial=DEFAULT_SERIAL), context=context) as camera:
            frame = camera.read()
            assert camera.serial == DEFAULT_SERIAL
        np.testing.assert_array_equal(frame.color, pattern_color(frame.frame_number - 1))
        with pytest.raises(CameraNotFoundError) as err:
            RealSenseCamera(CameraConfig(serial="849412060123"), context=context)
        assert str(err.value) == (
            f"no RealSense device with serial '849412060123' is connected; present: {DEFAULT_SERIAL}"
        )
    finally:
        context.unload_device(str(recording))


def test_missing_serial_without_devices_says_none_present() -> None:
    context = rs.context()
    if connected_serials(context):
        pytest.skip("a real RealSense device is connected")
    with pytest.raises(CameraNotFoundError, match="serial '849412060123'.*present: none"):
        RealSenseCamera(CameraConfig(serial="849412060123"), context=context)
    with pytest.raises(CameraNotFoundError, match="exactly one.*present: none"):
        RealSenseCamera(CameraConfig(), context=context)


@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty"])
def test_damaged_recording_gives_an_error_naming_the_file(
    recording: Path, tmp_path: Path, damage: str
) -> None:
    path = tmp_path / f"{damage}.db3"
    data = recording.read_bytes()
    path.write_bytes(
        {"truncated": data[: len(data) // 2], "garbage": b"not a bag " * 500, "empty": b""}[damage]
    )
    with pytest.raises(RecordingError, match=f"recording {path}: cannot open it"):
        RealSenseCamera(CameraConfig(recording_path=str(path)))


def test_missing_recording_and_wrong_stream_size_are_named(recording: Path, tmp_path: Path) -> None:
    with pytest.raises(RecordingError, match=f"recording {tmp_path}/nope.db3: no such file"):
        RealSenseCamera(CameraConfig(recording_path=str(tmp_path / "nope.db3")))
    with pytest.raises(RecordingError, match=r"cannot open it for rgb8 \+ z16 1280x720 @ 30 fps"):
        RealSenseCamera(CameraConfig(recording_path=str(recording), width=1280, height=720))


@pytest.fixture(scope="module")
def stalling_recording(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A recording whose writer paused 1.5 s after frame 4: real-time playback stalls there."""
    path = tmp_path_factory.mktemp("realsense") / "stall.db3"

    def colors() -> Iterator[np.ndarray]:
        for i in range(6):
            if i == 4:
                time.sleep(1.5)
            yield pattern_color(i)

    write_recording(path, colors(), [plane_depth()] * 6, INTRINSICS, FPS)
    return path


def stall_config(path: Path, attempts: int) -> CameraConfig:
    return CameraConfig(
        recording_path=str(path),
        playback_real_time=True,
        frame_timeout_s=0.4,
        max_reconnect_attempts=attempts,
        reconnect_backoff_s=0.05,
    )


def test_stall_leads_to_a_reconnect_and_frames_again(stalling_recording: Path) -> None:
    with RealSenseCamera(stall_config(stalling_recording, attempts=3)) as camera:
        # One loop from the first read: under load the stall can come within the first reads,
        # which a loop started after three reads never entered (``after`` then unbound).
        numbers: list[int] = []
        while True:
            after = camera.read()  # the read that reconnects returns the reopened stream's frame
            if camera.stats.reconnects:
                break
            numbers.append(after.frame_number)
        assert camera.stats.timeouts >= 1
        assert numbers, "the recording stalled before its first frame"
    # Reopening a recording restarts it: the frame counter goes back, and is not a drop. (The
    # read after that one may see a real drop: playback in real time runs on while the test
    # reads, which made this test fail at random when it checked that read.)
    assert after.frame_number < max(numbers)
    assert after.dropped_frames == 0


def test_stall_past_all_reconnects_names_the_recording(
    stalling_recording: Path, tmp_path: Path
) -> None:
    path = tmp_path / "vanishing.db3"
    shutil.copy(stalling_recording, path)
    camera = RealSenseCamera(stall_config(path, attempts=2))
    camera.read()
    path.unlink()  # playback goes on from the open file; reopening it will fail
    with pytest.raises(CameraError) as err:
        for _ in range(10):
            camera.read()
    camera.close()
    message = str(err.value)
    assert message.startswith(f"recording {path}: no frame for 0.4 s after 2 reconnect attempts (")
    assert "does not exist" in message
    assert camera.stats.timeouts == 3 and camera.stats.reconnects == 0


def test_read_after_close_is_an_error(recording: Path) -> None:
    camera = RealSenseCamera(CameraConfig(recording_path=str(recording)))
    camera.close()
    camera.close()
    with pytest.raises(CameraError, match="read\\(\\) after close\\(\\)"):
        camera.read()


def test_default_d435_intrinsics_follow_the_datasheet_field_of_view() -> None:
    intr = default_d435_intrinsics(640, 480)
    assert intr.fx == pytest.approx(616.2, abs=0.1) and intr.fx == intr.fy
    assert (intr.ppx, intr.ppy) == (320.0, 240.0)
    wide = default_d435_intrinsics(1280, 720)  # 16:9 keeps the full sensor width
    assert wide.fx == pytest.approx(1386.5 * 1280 / 1920, abs=0.1)


def test_writer_rejects_bad_frames_with_index_and_shape(tmp_path: Path) -> None:
    path = tmp_path / "bad.db3"
    good_c, good_d = pattern_color(0), plane_depth()
    with pytest.raises(RecordingError, match=r"colour frame 1: expected uint8 \(480, 640, 3\)"):
        write_recording(path, [good_c, good_c[:, :, :2]], [good_d, good_d], INTRINSICS)
    with pytest.raises(RecordingError, match="depth frame 0: expected uint16"):
        write_recording(path, [good_c], [good_d.astype(np.float32)], INTRINSICS)
    with pytest.raises(RecordingError, match="colour and depth frames: zip"):
        write_recording(path, [good_c, good_c], [good_d], INTRINSICS)
    with pytest.raises(RecordingError, match="timestamps_s ran out"):
        write_recording(path, [good_c, good_c], [good_d, good_d], INTRINSICS, timestamps_s=[0.0])
    with pytest.raises(RecordingError, match="writes .db3"):
        write_recording(tmp_path / "x.bag", [good_c], [good_d], INTRINSICS)


def test_failed_write_leaves_no_partial_recording(tmp_path: Path) -> None:
    path = tmp_path / "partial.db3"
    frames = [pattern_color(0), pattern_color(1), np.zeros((2, 2, 3), np.uint8)]
    with pytest.raises(RecordingError, match="colour frame 2"):
        write_recording(path, frames, [plane_depth()] * 3, INTRINSICS)
    assert not path.exists()
    with pytest.raises(RecordingError, match="no frames to record"):
        write_recording(path, [], [], INTRINSICS)
    assert not path.exists()
