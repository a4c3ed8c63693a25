"""Video files from rendered frames: MP4 (H.264 through imageio-ffmpeg) or an animated GIF (Pillow).

MP4 needs ``imageio`` and ``imageio-ffmpeg`` (whose wheel ships an ffmpeg binary). Where either
is missing, an ``.mp4`` request falls back to a GIF next to it (same name, ``.gif``) and says so.
GIF notes: frame durations are whole centiseconds, and Pillow merges identical consecutive frames
(adding their durations), so a GIF may hold fewer frames than were written; its total duration is
what was asked. Frames are buffered until ``close`` for a GIF (keep them small), streamed for MP4.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

FORMATS = ("mp4", "gif")
GIF_MIN_FRAME_MS = 20  # most viewers play shorter GIF frames at 100 ms


@dataclass(frozen=True)
class VideoInfo:
    path: Path
    format: str
    frames: int          # frames written (a GIF may store fewer: see the module notes)
    width: int
    height: int
    fps: float
    fallback_reason: str = ""   # why a GIF was written instead of the MP4 asked for


def mp4_available() -> str:
    """'' when MP4 can be written here, else why not."""
    try:
        import imageio  # noqa: F401
        import imageio_ffmpeg
    except ImportError as err:
        return (f"{err.name or err} is not installed "
                "(pip install 'imageio>=2.31' 'imageio-ffmpeg>=0.5')")
    try:
        imageio_ffmpeg.get_ffmpeg_exe()
    except RuntimeError as err:
        return f"imageio-ffmpeg has no ffmpeg binary: {err}"
    return ""


class VideoWriter:
    """``append(frame)`` uint8 (height, width, 3) frames of one size, then ``close()``."""

    def __init__(self, path: str | os.PathLike[str], fps: float) -> None:
        path = Path(path)
        if not 0 < fps <= 240:
            raise ValueError(f"video {path}: fps must be in (0, 240], got {fps}")
        fmt = path.suffix.lower().lstrip(".")
        if fmt not in FORMATS:
            raise ValueError(f"video {path}: unknown format {path.suffix!r}; expected a name "
                             f"ending in one of {['.' + f for f in FORMATS]}")
        self.fallback_reason = ""
        if fmt == "mp4" and (why := mp4_available()):
            self.fallback_reason = why
            warnings.warn(f"{path}: cannot write MP4 ({why}); writing {path.with_suffix('.gif')}",
                          stacklevel=2)
            path, fmt = path.with_suffix(".gif"), "gif"
        self.path, self.format, self.fps = path, fmt, float(fps)
        self.frames = 0
        self._shape: tuple[int, ...] | None = None
        self._gif_frames: list[np.ndarray] = []
        self._mp4: Any = None

    def append(self, frame: np.ndarray) -> None:
        frame = np.asarray(frame)
        if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
            raise ValueError(f"video {self.path}: frames must be uint8 (height, width, 3), got "
                             f"{frame.dtype} {frame.shape}")
        if self._shape is None:
            self._start(frame.shape)
        elif frame.shape != self._shape:
            raise ValueError(f"video {self.path}: frame {self.frames} is {frame.shape}, the first "
                             f"was {self._shape}")
        if self._mp4 is not None:
            self._mp4.append_data(frame)
        else:
            self._gif_frames.append(frame.copy())
        self.frames += 1

    def _start(self, shape: tuple[int, ...]) -> None:
        height, width = shape[:2]
        self._shape = shape
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.format != "mp4":
            return
        if height % 2 or width % 2:
            raise ValueError(f"video {self.path}: MP4 (H.264, yuv420p) needs an even width and "
                             f"height, got {width}x{height}; pick even sizes or write a .gif")
        import imageio.v2 as imageio

        # macro_block_size=1: keep the size asked for (the default 16 would rescale the frames)
        self._mp4 = imageio.get_writer(self.path, format="FFMPEG", mode="I", fps=self.fps,
                                       codec="libx264", pixelformat="yuv420p", quality=8,
                                       macro_block_size=1, ffmpeg_log_level="error")

    def close(self) -> VideoInfo:
        """Finishes the file; the info of what was written."""
        if self._shape is None:
            raise ValueError(f"video {self.path}: no frames were written")
        if self._mp4 is not None:
            self._mp4.close()
            self._mp4 = None
        elif self._gif_frames:
            self._write_gif()
        height, width = self._shape[:2]
        return VideoInfo(self.path, self.format, self.frames, width, height, self.fps,
                         self.fallback_reason)

    def _write_gif(self) -> None:
        from PIL import Image

        duration_ms = max(GIF_MIN_FRAME_MS, round(100.0 / self.fps) * 10)
        images = [Image.fromarray(f) for f in self._gif_frames]
        images[0].save(self.path, format="GIF", save_all=True, append_images=images[1:],
                       duration=duration_ms, loop=0)
        self._gif_frames = []

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._mp4 is not None:
            self._mp4.close()
            self._mp4 = None
