"""Configuration of one RealSense camera: which device (or recording), which streams, how to recover."""

from __future__ import annotations

from dataclasses import dataclass, field, fields


@dataclass(frozen=True)
class CameraConfig:
    """One camera. Give a serial (or neither, for the only connected camera) or a recording path."""

    serial: str | None = field(
        default=None,
        metadata={"help": "serial number of the camera to open; none: the only connected camera"},
    )
    recording_path: str | None = field(
        default=None,
        metadata={"help": "play this .db3/.bag recording instead of a live camera"},
    )
    width: int = field(default=640, metadata={"help": "image width, pixels", "range": (64, 1920)})
    height: int = field(default=480, metadata={"help": "image height, pixels", "range": (48, 1080)})
    fps: int = field(default=30, metadata={"help": "frame rate, frames/s", "range": (1, 90)})
    enable_depth: bool = field(default=True, metadata={"help": "stream z16 depth beside colour"})
    align_depth_to_color: bool = field(
        default=True,
        metadata={"help": "reproject depth into the colour camera, so one CameraInfo serves both"},
    )
    frame_timeout_s: float = field(
        default=1.0,
        metadata={"help": "no fresh frame for this long counts as a stall", "range": (0.01, 60.0)},
    )
    max_reconnect_attempts: int = field(
        default=5,
        metadata={"help": "consecutive reconnects before giving up; 0: never", "range": (0, 100)},
    )
    reconnect_backoff_s: float = field(
        default=0.5,
        metadata={"help": "wait before the first reconnect; doubles each time", "range": (0.0, 60.0)},
    )
    reconnect_backoff_max_s: float = field(
        default=8.0,
        metadata={"help": "longest wait between reconnects", "range": (0.0, 300.0)},
    )
    playback_real_time: bool = field(
        default=False,
        metadata={"help": "recordings only: pace playback at the recorded rate instead of on demand"},
    )

    def __post_init__(self) -> None:
        if self.serial is not None and self.recording_path is not None:
            raise ValueError(
                f"serial {self.serial!r} and recording_path {self.recording_path!r} are both set; "
                "expected at most one of them"
            )
        for f in fields(self):
            if "range" not in f.metadata:
                continue
            lo, hi = f.metadata["range"]
            value = getattr(self, f.name)
            if not lo <= value <= hi:
                raise ValueError(f"{f.name}: {value!r} is out of range [{lo}, {hi}]")

    @property
    def source(self) -> str:
        """What this config opens, in words, for error messages."""
        if self.recording_path is not None:
            return f"recording {self.recording_path}"
        if self.serial is not None:
            return f"camera serial {self.serial}"
        return "the connected camera"
