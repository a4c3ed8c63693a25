"""RealSense camera on pyrealsense2's pipeline: a live device by serial, or a recording.

``read()`` returns plain numpy data (``CameraFrame``), ``intrinsics()`` plain numbers, so the ROS
node around this class only converts and publishes. One thread reads; ``read()`` blocks.
"""

from __future__ import annotations

import time
from pathlib import Path
from types import TracebackType

import numpy as np
import pyrealsense2 as rs

from robot_rl.drivers.realsense.config import CameraConfig
from robot_rl.drivers.realsense.errors import CameraError, CameraNotFoundError, RecordingEnded, RecordingError
from robot_rl.drivers.realsense.frame import (
    CameraFrame,
    CameraIntrinsics,
    CameraStats,
    dropped_between,
    is_fresh_pair,
)

# try_wait_for_frames is called in slices this long, so the end of a recording is noticed soon.
_POLL_SLICE_S = 0.1


def connected_serials(context: rs.context | None = None) -> list[str]:
    """Serial numbers of the devices the context sees (live cameras, loaded recordings)."""
    context = context if context is not None else rs.context()
    return [d.get_info(rs.camera_info.serial_number) for d in context.query_devices()]


class RealSenseCamera:
    """Colour (rgb8) and depth (z16, aligned to colour) from one camera or recording."""

    def __init__(self, config: CameraConfig, context: rs.context | None = None) -> None:
        self.config = config
        self.stats = CameraStats()
        self._context = context if context is not None else rs.context()
        self._align = (
            rs.align(rs.stream.color)
            if config.enable_depth and config.align_depth_to_color
            else None
        )
        self._pipeline: rs.pipeline | None = None
        self._profile: rs.pipeline_profile | None = None
        self._playback: rs.playback | None = None
        self._last_number: int | None = None
        self._failures = 0
        self._last_error: str = ""
        self._closed = False
        self._check_source()
        self._start()

    # -- public API -------------------------------------------------------------------------

    def read(self) -> CameraFrame:
        """The next colour frame (with its depth); reconnects on stalls.

        Raises RecordingEnded at the end of a recording, CameraError when the camera stays silent
        through ``max_reconnect_attempts`` reconnects.
        """
        if self._closed:
            raise CameraError(f"{self.config.source}: read() after close()")
        deadline = time.monotonic() + self.config.frame_timeout_s
        while True:
            frames = self._poll(deadline)
            if frames is None:
                self._recover()
                deadline = time.monotonic() + self.config.frame_timeout_s
                continue
            frame = self._accept(frames)
            if frame is not None:
                self._failures = 0
                return frame

    def intrinsics(self) -> CameraIntrinsics:
        """Intrinsics of the colour stream (and of depth too when it is aligned to colour)."""
        return self._stream_intrinsics(rs.stream.color)

    def depth_intrinsics(self) -> CameraIntrinsics:
        """Intrinsics of the depth images ``read()`` returns."""
        if not self.config.enable_depth:
            raise CameraError(f"{self.config.source}: depth is disabled (enable_depth: false)")
        if self._align is not None:
            return self.intrinsics()
        return self._stream_intrinsics(rs.stream.depth)

    @property
    def serial(self) -> str:
        """Serial number of the open device (recordings carry the recorded one)."""
        return self._active_profile().get_device().get_info(rs.camera_info.serial_number)

    def close(self) -> None:
        """Stop streaming; safe to call twice."""
        self._stop()
        self._closed = True

    def __enter__(self) -> RealSenseCamera:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- opening ------------------------------------------------------------------------------

    def _check_source(self) -> None:
        cfg = self.config
        if cfg.recording_path is not None:
            path = Path(cfg.recording_path)
            if not path.is_file():
                raise RecordingError(f"recording {path}: no such file")
            return
        present = connected_serials(self._context)
        if cfg.serial is not None and cfg.serial not in present:
            raise CameraNotFoundError(
                f"no RealSense device with serial {cfg.serial!r} is connected; "
                f"present: {', '.join(present) if present else 'none'}"
            )
        if cfg.serial is None and len(present) != 1:
            found = ", ".join(present) if present else "none"
            raise CameraNotFoundError(
                f"serial not set, so exactly one RealSense device must be connected; present: {found}"
            )

    def _rs_config(self) -> rs.config:
        cfg = self.config
        rs_config = rs.config()
        if cfg.recording_path is not None:
            rs_config.enable_device_from_file(cfg.recording_path, repeat_playback=False)
        elif cfg.serial is not None:
            rs_config.enable_device(cfg.serial)
        rs_config.enable_stream(rs.stream.color, cfg.width, cfg.height, rs.format.rgb8, cfg.fps)
        if cfg.enable_depth:
            rs_config.enable_stream(rs.stream.depth, cfg.width, cfg.height, rs.format.z16, cfg.fps)
        return rs_config

    def _start(self) -> None:
        cfg = self.config
        error = RecordingError if cfg.recording_path is not None else CameraError
        pipeline = rs.pipeline(self._context)
        rs_config = self._rs_config()
        streams = f"rgb8{' + z16' if cfg.enable_depth else ''} {cfg.width}x{cfg.height} @ {cfg.fps} fps"
        try:
            device = rs_config.resolve(rs.pipeline_wrapper(pipeline)).get_device()
        except RuntimeError as err:
            raise error(f"{cfg.source}: cannot open it for {streams}: {err}") from err
        playback = device.as_playback() if device.is_playback() else None
        if playback is not None:
            # Before start: set later, the first frames would already have played in real time.
            playback.set_real_time(cfg.playback_real_time)
        try:
            profile = pipeline.start(rs_config)
        except RuntimeError as err:
            raise error(f"{cfg.source}: cannot start {streams}: {err}") from err
        self._pipeline, self._profile, self._playback = pipeline, profile, playback
        self._last_number = None  # frame counters restart with the stream

    def _stop(self) -> None:
        pipeline, self._pipeline, self._profile, self._playback = self._pipeline, None, None, None
        if pipeline is None:
            return
        try:
            pipeline.stop()
        except RuntimeError as err:  # already stopped, or the device vanished: nothing to release
            self._last_error = str(err)

    def _active_profile(self) -> rs.pipeline_profile:
        if self._profile is None:
            raise CameraError(f"{self.config.source}: not streaming ({self._last_error or 'closed'})")
        return self._profile

    def _stream_intrinsics(self, stream: rs.stream) -> CameraIntrinsics:
        profile = self._active_profile().get_stream(stream).as_video_stream_profile()
        return intrinsics_from_rs(profile.get_intrinsics())

    # -- reading ------------------------------------------------------------------------------

    def _poll(self, deadline: float) -> rs.composite_frame | None:
        """A frameset, or None when none came before the deadline (or the pipeline is down)."""
        while self._pipeline is not None:
            remaining_s = deadline - time.monotonic()
            if remaining_s <= 0:
                return None
            wait_ms = max(1, int(min(remaining_s, _POLL_SLICE_S) * 1000))
            try:
                ok, frames = self._pipeline.try_wait_for_frames(wait_ms)
            except RuntimeError as err:  # device lost mid-wait: handled like a stall
                self._last_error = str(err)
                return None
            if ok:
                return frames
            if self._playback_finished():
                return self._last_frames_or_end()
        return None

    def _playback_finished(self) -> bool:
        return (
            self._playback is not None
            and self._playback.current_status() == rs.playback_status.stopped
        )

    def _last_frames_or_end(self) -> rs.composite_frame:
        # The reader stops before its last frames have left the pipeline's queues.
        assert self._pipeline is not None
        ok, frames = self._pipeline.try_wait_for_frames(int(2 * _POLL_SLICE_S * 1000))
        if ok:
            return frames
        raise RecordingEnded(
            f"{self.config.source}: played to its end after {self.stats.frames_read} frames"
        )

    def _accept(self, frames: rs.composite_frame) -> CameraFrame | None:
        color = frames.get_color_frame()
        depth = frames.get_depth_frame() if self.config.enable_depth else None
        if not color or (self.config.enable_depth and not depth):
            self.stats.stale_framesets_skipped += 1
            return None
        number = color.get_frame_number()
        depth_ms = depth.get_timestamp() if depth else None
        if not is_fresh_pair(
            number, self._last_number, color.get_timestamp(), depth_ms, self.config.fps
        ):
            self.stats.stale_framesets_skipped += 1
            return None
        if self._align is not None:
            depth = self._align.process(frames).get_depth_frame()
        dropped = dropped_between(self._last_number, number)
        self._last_number = number
        self.stats.frames_read += 1
        self.stats.frames_dropped += dropped
        return CameraFrame(
            # Copies: librealsense recycles the buffers once the frame is released.
            color=np.asanyarray(color.get_data()).copy(),
            depth=np.asanyarray(depth.get_data()).copy() if depth else None,
            depth_scale_m=float(depth.get_units()) if depth else 0.0,
            timestamp_s=color.get_timestamp() / 1000.0,
            timestamp_domain=color.get_frame_timestamp_domain().name,
            frame_number=number,
            dropped_frames=dropped,
            depth_timestamp_s=depth_ms / 1000.0 if depth_ms is not None else None,
        )

    # -- recovering ---------------------------------------------------------------------------

    def _recover(self) -> None:
        """Restart the pipeline after a stall, with exponential backoff; give up after N."""
        cfg = self.config
        self.stats.timeouts += 1
        self._failures += 1
        if self._failures > cfg.max_reconnect_attempts:
            self._stop()
            raise CameraError(
                f"{cfg.source}: no frame for {cfg.frame_timeout_s} s after "
                f"{cfg.max_reconnect_attempts} reconnect attempts"
                f" ({self.stats.stale_framesets_skipped} unpaired framesets skipped)"
                + (f" (last error: {self._last_error})" if self._last_error else "")
                + (f"; devices present: {', '.join(connected_serials(self._context)) or 'none'}"
                   if cfg.recording_path is None else "")
            )
        backoff_s = cfg.reconnect_backoff_s * 2.0 ** (self._failures - 1)
        self._stop()
        time.sleep(min(backoff_s, cfg.reconnect_backoff_max_s))
        try:
            self._start()
        except CameraError as err:  # counted as a failure when the next poll finds no pipeline
            self._last_error = str(err)
            return
        self.stats.reconnects += 1


def intrinsics_from_rs(intr: rs.intrinsics) -> CameraIntrinsics:
    """Plain-data copy of a pyrealsense2 intrinsics."""
    return CameraIntrinsics(
        width=intr.width,
        height=intr.height,
        fx=intr.fx,
        fy=intr.fy,
        ppx=intr.ppx,
        ppy=intr.ppy,
        model=intr.model.name,
        coeffs=tuple(float(c) for c in intr.coeffs),
    )
