"""Errors of the RealSense driver; each names the camera serial or the recording it concerns."""

from __future__ import annotations


class CameraError(RuntimeError):
    """The camera cannot deliver frames (not found, stalled past its reconnects, bad recording)."""


class CameraNotFoundError(CameraError):
    """No connected device has the requested serial number."""


class RecordingError(CameraError):
    """A recording cannot be written or played."""


class RecordingEnded(EOFError):
    """A recording played to its end (repeat is off)."""
