"""Write numpy frames to a RealSense recording (.db3) that the camera driver can play back.

A software device cannot feed ``rs.pipeline`` directly, so this records one with ``rs.recorder``;
``RealSenseCamera(CameraConfig(recording_path=...))`` then plays it through the real pipeline code.
The twin's renders use the same entry point.
"""

from __future__ import annotations

import contextlib
import gc
import math
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import numpy as np
import pyrealsense2 as rs

from robot_rl.drivers.realsense.errors import RecordingError
from robot_rl.drivers.realsense.frame import CameraIntrinsics

# Intel RealSense D400-series datasheet: the D435's RGB sensor (OV2740) sees 69.4 deg x 42.5 deg
# over its 1920x1080 frame, so fx = 960 / tan(34.7 deg) = 1386.5 px there. Narrower modes (4:3
# such as 640x480) are the largest centred crop of that frame, scaled: at 640x480 the crop is
# 1440x1080 and the scale 480/1080, so fx = fy = 616.2 and the principal point the image centre.
# Factory calibrations of real units differ by a few pixels; read a real camera's with intrinsics().
_D435_FULL_WIDTH_PX = 1920
_D435_FULL_HEIGHT_PX = 1080
_D435_HFOV_RAD = math.radians(69.4)

DEFAULT_SERIAL = "SYNTHETIC0001"
_WRITE_TIMEOUT_S = 10.0


def default_d435_intrinsics(width: int = 640, height: int = 480) -> CameraIntrinsics:
    """D435-like colour intrinsics for a width x height mode (no distortion)."""
    full_fx = (_D435_FULL_WIDTH_PX / 2) / math.tan(_D435_HFOV_RAD / 2)
    scale = max(width / _D435_FULL_WIDTH_PX, height / _D435_FULL_HEIGHT_PX)
    f = full_fx * scale
    return CameraIntrinsics(width, height, f, f, width / 2, height / 2)


def write_recording(
    path: str | Path,
    color_frames: Iterable[np.ndarray],
    depth_frames: Iterable[np.ndarray],
    intrinsics: CameraIntrinsics,
    fps: int = 30,
    depth_scale_m: float = 0.001,
    *,
    timestamps_s: Iterable[float] | None = None,
    frame_numbers: Iterable[int] | None = None,
    serial: str = DEFAULT_SERIAL,
    timestamp_domain: str = "hardware_clock",
) -> int:
    """Record colour (H, W, 3 uint8 RGB) and depth (H, W uint16) frames; return how many.

    Depth must already be in the colour camera (the twin renders both from one camera): both
    streams get ``intrinsics`` and an identity extrinsic. ``timestamps_s`` default to i / fps;
    ``frame_numbers`` default to 1, 2, ...; give gaps to simulate dropped frames.
    """
    path = Path(path)
    if path.suffix != ".db3":
        raise RecordingError(f"{path}: librealsense >= 2.58 writes .db3 recordings; name it *.db3")
    if path.exists():
        path.unlink()  # the recorder would append to an existing bag
    stamps = _stream(timestamps_s, lambda i: i / fps, path, "timestamps_s")
    numbers = _stream(frame_numbers, lambda i: i + 1, path, "frame_numbers")
    writer = _Writer(path, intrinsics, fps, depth_scale_m, serial, timestamp_domain)
    try:
        for i, (color, depth) in enumerate(zip(color_frames, depth_frames, strict=True)):
            _check_frame(path, i, color, depth, intrinsics)
            writer.write(i, color, depth, float(next(stamps)) * 1000.0, int(next(numbers)))
    except BaseException as err:
        writer.close()
        path.unlink(missing_ok=True)  # a partial recording would pass for a whole one
        if isinstance(err, ValueError) and str(err).startswith("zip()"):
            raise RecordingError(f"{path}: colour and depth frames: {err}") from err
        raise
    written = writer.close()
    if written == 0:
        path.unlink(missing_ok=True)
        raise RecordingError(f"{path}: no frames to record")
    _check_counts(path, written)
    return written

def _stream(
    given: Iterable[float] | None, default: Callable[[int], float], path: Path, name: str
) -> Iterator[float]:
    if given is None:
        i = 0
        while True:
            yield default(i)
            i += 1
    yield from given
    raise RecordingError(f"{path}: {name} ran out; it needs one value per frame")


def _check_frame(
    path: Path, i: int, color: np.ndarray, depth: np.ndarray, intrinsics: CameraIntrinsics
) -> None:
    shape = (intrinsics.height, intrinsics.width)
    if color.dtype != np.uint8 or color.shape != (*shape, 3):
        raise RecordingError(
            f"{path}: colour frame {i}: expected uint8 {(*shape, 3)}, got {color.dtype} {color.shape}"
        )
    if depth.dtype != np.uint16 or depth.shape != shape:
        raise RecordingError(
            f"{path}: depth frame {i}: expected uint16 {shape}, got {depth.dtype} {depth.shape}"
        )


class _Writer:
    """A software device with a depth and a colour sensor, recorded to ``path``."""

    def __init__(
        self,
        path: Path,
        intrinsics: CameraIntrinsics,
        fps: int,
        depth_scale_m: float,
        serial: str,
        timestamp_domain: str,
    ) -> None:
        self.path = path
        self.depth_scale_m = depth_scale_m
        self.domain = getattr(rs.timestamp_domain, timestamp_domain)
        self.device = rs.software_device()
        self.device.register_info(rs.camera_info.name, "Synthetic RealSense (robot_rl)")
        self.device.register_info(rs.camera_info.serial_number, serial)
        self.depth_sensor = self.device.add_sensor("Stereo Module")
        self.color_sensor = self.device.add_sensor("RGB Camera")
        self.depth_sensor.add_read_only_option(rs.option.depth_units, depth_scale_m)
        rs_intr = _to_rs_intrinsics(intrinsics)
        self.depth_profile = self.depth_sensor.add_video_stream(
            _video_stream(rs.stream.depth, 0, rs.format.z16, 2, fps, rs_intr), True
        ).as_video_stream_profile()
        self.color_profile = self.color_sensor.add_video_stream(
            _video_stream(rs.stream.color, 1, rs.format.rgb8, 3, fps, rs_intr), True
        ).as_video_stream_profile()
        # The default extrinsic is all zeros (not identity), and align then maps every pixel to 0.
        identity = rs.extrinsics()
        identity.rotation = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
        identity.translation = [0.0, 0.0, 0.0]
        self.depth_profile.register_extrinsics_to(self.color_profile, identity)
        self.recorder = rs.recorder(str(path), self.device)
        # Frames reach the file only through the recorder's own sensors wrapping ours.
        self.recorded_sensors = list(self.recorder.query_sensors())
        self.recorded_sensors[0].open(self.depth_profile)
        self.recorded_sensors[1].open(self.color_profile)
        for sensor in self.recorded_sensors:
            sensor.start(lambda frame: None)
        self.written = 0

    def write(self, i: int, color: np.ndarray, depth: np.ndarray, stamp_ms: float, number: int) -> None:
        # Depth first: the pipeline emits a set when colour arrives, and its depth is then present.
        self._inject(self.depth_sensor, self.depth_profile, depth, 2, stamp_ms, number)
        self._inject(self.color_sensor, self.color_profile, color, 3, stamp_ms, number)
        self.written = i + 1
        # The recorder writes on its own thread and loses what is still queued when it closes,
        # so wait until the file holds this frame: this also bounds the recorder's backlog.
        _wait_for_messages(self.path, self.written)

    def _inject(
        self,
        sensor: rs.software_sensor,
        profile: rs.video_stream_profile,
        pixels: np.ndarray,
        bytes_per_pixel: int,
        stamp_ms: float,
        number: int,
    ) -> None:
        frame = rs.software_video_frame()
        frame.pixels = np.ascontiguousarray(pixels)  # pyrealsense2 copies the buffer
        frame.bpp = bytes_per_pixel
        frame.stride = pixels.shape[1] * bytes_per_pixel
        frame.timestamp = stamp_ms
        frame.domain = self.domain
        frame.frame_number = number
        frame.profile = profile
        if bytes_per_pixel == 2:
            frame.depth_units = self.depth_scale_m
        sensor.on_video_frame(frame)

    def close(self) -> int:
        for sensor in self.recorded_sensors:
            sensor.stop()
            sensor.close()
        # The file is finalised when the recorder and everything holding the device are freed.
        del self.recorded_sensors, self.recorder, self.depth_profile, self.color_profile
        del self.depth_sensor, self.color_sensor, self.device
        gc.collect()
        return self.written


def _video_stream(
    kind: rs.stream, uid: int, fmt: rs.format, bpp: int, fps: int, intr: rs.intrinsics
) -> rs.video_stream:
    stream = rs.video_stream()
    stream.type = kind
    stream.index = 0
    stream.uid = uid
    stream.width = intr.width
    stream.height = intr.height
    stream.fps = fps
    stream.bpp = bpp
    stream.fmt = fmt
    stream.intrinsics = intr
    return stream


def _to_rs_intrinsics(intrinsics: CameraIntrinsics) -> rs.intrinsics:
    intr = rs.intrinsics()
    intr.width = intrinsics.width
    intr.height = intrinsics.height
    intr.fx = intrinsics.fx
    intr.fy = intrinsics.fy
    intr.ppx = intrinsics.ppx
    intr.ppy = intrinsics.ppy
    intr.model = getattr(rs.distortion, intrinsics.model)
    intr.coeffs = list(intrinsics.coeffs) + [0.0] * (5 - len(intrinsics.coeffs))
    return intr


def image_message_counts(path: str | Path) -> dict[str, int]:
    """Image messages per topic in a .db3 recording (read-only; safe while it is being written)."""
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=1.0)
    try:
        rows = con.execute(
            "SELECT t.name, COUNT(*) FROM messages m JOIN topics t ON m.topic_id = t.id "
            "WHERE t.name LIKE '%/image/data%' GROUP BY t.name"
        ).fetchall()
    finally:
        con.close()
    return dict(rows)


def _wait_for_messages(path: Path, frames: int) -> None:
    deadline = time.monotonic() + _WRITE_TIMEOUT_S
    counts: dict[str, int] = {}
    while time.monotonic() < deadline:
        # A read can meet a half-written page; the next one will not.
        with contextlib.suppress(sqlite3.DatabaseError):
            counts = image_message_counts(path)
        if len(counts) == 2 and min(counts.values()) >= frames:
            return
        time.sleep(0.002)
    raise RecordingError(
        f"{path}: the recorder wrote {counts} image messages after {_WRITE_TIMEOUT_S} s; "
        f"expected {frames} per stream"
    )


def _check_counts(path: Path, frames: int) -> None:
    counts = image_message_counts(path)
    if frames and (len(counts) != 2 or set(counts.values()) != {frames}):
        raise RecordingError(f"{path}: expected {frames} images per stream, found {counts}")

