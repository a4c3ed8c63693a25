"""A task's image observation: which camera, what crop of its frame, at what size, with depth or not.

The policy of a pixel task sees one camera view, cropped and resized here, beside its
proprioception (``Task.proprio_layout``). One function, :func:`preprocess_color` (and
:func:`preprocess_depth`), turns a camera's full frame into that view wherever a frame comes from:
the RealSense node or the twin node before publishing the policy stream, the learner or actor when
they receive full frames, and the twin's environment. The crop is given in fractions of the full
frame, so the same declaration fits a 640x480 camera, its 1280x720 mode or a scaled-down render.

Colour is resized by pixel-area averaging (``cv2.INTER_AREA``, the anti-aliasing choice for
downscaling); depth by nearest neighbour, so that no depth value is invented between a near edge
and the background behind it and 0 (no return) stays 0.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

FULL_FRAME = (0.0, 0.0, 1.0, 1.0)


@dataclass(frozen=True)
class ImageObservationConfig:
    """One camera view in a pixel task's observation (``observation: pixels``)."""

    camera: str = field(default="/camera", metadata={
        "help": "the camera's namespace on the graph: colour on <camera>/color/image_raw, aligned "
                "depth on <camera>/aligned_depth_to_color/image_raw (realsense-ros's names)"})
    twin_camera: str = field(default="realsense", metadata={
        "help": "the MJCF camera the twin renders this view from"})
    width: int = field(default=64, metadata={"range": (8, 1024), "help": "the policy's image, px"})
    height: int = field(default=64, metadata={"range": (8, 1024), "help": "the policy's image, px"})
    crop: tuple[float, float, float, float] | None = field(default=None, metadata={
        "range": (0.0, 1.0),
        "help": "(x0, y0, x1, y1): the part of the full frame the policy sees, in fractions of its "
                "width and height, cut before resizing; null: the task's own framing of its "
                "object (Task.default_crop)"})
    depth: bool = field(default=False, metadata={
        "help": "also the aligned depth, a fourth channel"})
    depth_range_m: float = field(default=1.0, metadata={
        "range": (0.01, 20.0), "help": "the network reads depth / depth_range_m, clipped to 1"})
    max_frame_age_s: float = field(default=0.1, metadata={
        "range": (0.001, 10.0),
        "help": "on the graph, a joint state is paired with the latest frame whose stamp is at "
                "most this much older; with an older one the step is skipped as a stale frame"})

    def __post_init__(self) -> None:
        if self.crop is None:
            return
        x0, y0, x1, y1 = self.crop
        if not (x0 < x1 and y0 < y1):
            raise ValueError(f"crop {self.crop} must have x0 < x1 and y0 < y1 (fractions of "
                             "the full frame)")

    @property
    def channels(self) -> int:
        """Channels the network reads: colour, and depth if declared."""
        return 4 if self.depth else 3

    @property
    def shape(self) -> tuple[int, int, int]:
        """(height, width, channels): the view as the network reads it (``network_image``)."""
        return (self.height, self.width, self.channels)


def crop_box(width: int, height: int, crop: tuple[float, float, float, float] | None
             ) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1) in pixels of a ``width`` x ``height`` frame; at least one pixel each way.
    ``None`` is the whole frame."""
    x0, y0, x1, y1 = FULL_FRAME if crop is None else crop
    left, top = int(round(x0 * width)), int(round(y0 * height))
    right = max(left + 1, int(round(x1 * width)))
    bottom = max(top + 1, int(round(y1 * height)))
    return left, top, min(right, width), min(bottom, height)


def preprocess_color(frame: np.ndarray, config: ImageObservationConfig) -> np.ndarray:
    """A full rgb frame (H, W, 3) uint8 -> the policy's view (height, width, 3) uint8."""
    frame = np.asarray(frame)
    if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
        raise ValueError(f"colour frame: expected (H, W, 3) uint8, got {frame.shape} {frame.dtype}")
    return _crop_resize(frame, config, interpolation="area")


def preprocess_depth(depth_mm: np.ndarray, config: ImageObservationConfig) -> np.ndarray:
    """A full depth frame (H, W) uint16 mm -> the policy's view (height, width) uint16 mm."""
    depth_mm = np.asarray(depth_mm)
    if depth_mm.ndim != 2 or depth_mm.dtype != np.uint16:
        raise ValueError(f"depth frame: expected (H, W) uint16 mm, got {depth_mm.shape} "
                         f"{depth_mm.dtype}")
    return _crop_resize(depth_mm, config, interpolation="nearest")


def _crop_resize(frame: np.ndarray, config: ImageObservationConfig, interpolation: str
                 ) -> np.ndarray:
    import cv2  # imported here: most of the core never needs it

    height, width = frame.shape[:2]
    left, top, right, bottom = crop_box(width, height, config.crop)
    view = frame[top:bottom, left:right]
    if view.shape[:2] == (config.height, config.width):
        return np.ascontiguousarray(view)
    flag = cv2.INTER_AREA if interpolation == "area" else cv2.INTER_NEAREST
    return cv2.resize(np.ascontiguousarray(view), (config.width, config.height),
                      interpolation=flag)


def network_image(color: np.ndarray, depth_mm: np.ndarray | None,
                  config: ImageObservationConfig) -> np.ndarray:
    """The policy's view as the network reads it: (height, width, channels) uint8, colour then
    depth scaled to 0..255 over ``depth_range_m`` (uint8 keeps the replay at one byte a value;
    channels last, as a camera delivers them and as DrQ's shift copies whole pixel rows)."""
    return network_images(np.asarray(color)[None],
                          None if depth_mm is None else np.asarray(depth_mm)[None], config)[0]


def network_images(colors: np.ndarray, depths_mm: np.ndarray | None,
                   config: ImageObservationConfig) -> np.ndarray:
    """:func:`network_image` of (T, height, width, 3) colours and (T, height, width) depths."""
    colors = np.asarray(colors, np.uint8)
    if not config.depth:
        return np.ascontiguousarray(colors)
    if depths_mm is None:
        raise ValueError("image.depth is declared but no depth frame came with the colour")
    scaled = np.asarray(depths_mm, np.float32) / (1000.0 * config.depth_range_m)
    depth = (np.clip(scaled, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    return np.concatenate([colors, depth[..., None]], axis=-1)
