"""A camera's latest frames beside the joint states: approximate time synchronisation.

The learner and the actor act on joint states; a pixel task's step also needs its camera view.
``LatestFrames`` keeps the last few frames of one camera (colour, and aligned depth when the view
declares it) and pairs a joint state with the frame whose header stamp is closest to the joint
state's (ROS's approximate-time rule, message_filters' ApproximateTime, for two streams of
different rates), provided the two stamps are at most ``view.max_frame_age_s`` apart. Otherwise
the step gets no observation, with a named reason: ``stale frame`` (the camera stopped or lags:
its newest frame is too far from the joint state) or ``no frame`` (none received yet); an old
frame is never silently reused.

Stamps must come from one clock: the twin stamps both streams with its own (sim) time; on a real
cell the camera and joint drivers run on one computer or synchronised clocks (what
message_filters assumes too). A frame is either already the task's view (a camera node's
``view/`` stream, ``full_frames=False``) or a full camera frame, cut to the view here
(``tasks.camera.preprocess_color``) only when a step uses it, so unused frames cost nothing.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np

from robot_rl.tasks.camera import ImageObservationConfig, preprocess_color, preprocess_depth

STALE_FRAME = "stale frame"
NO_FRAME = "no frame"
# colour and aligned depth of one capture carry the same stamp (RealSense framesets, the twin)
SAME_CAPTURE_S = 1e-3


@dataclass(frozen=True)
class ViewFrame:
    """One capture as the policy sees it."""

    stamp_s: float
    color: np.ndarray              # (height, width, 3) uint8, the view
    depth: np.ndarray | None       # (height, width) uint16 mm, when the view has depth


class LatestFrames:
    def __init__(self, view: ImageObservationConfig, *, full_frames: bool, keep: int = 8) -> None:
        if keep < 1:
            raise ValueError(f"LatestFrames: keep must be >= 1, got {keep}")
        self.view, self.full_frames = view, full_frames
        self._color: deque[tuple[float, np.ndarray]] = deque(maxlen=keep)
        self._depth: deque[tuple[float, np.ndarray]] = deque(maxlen=keep)
        self._cache: tuple[float, ViewFrame] | None = None
        self.counts = {"paired": 0, STALE_FRAME: 0, NO_FRAME: 0}

    # ---- inputs (the camera subscriptions) ------------------------------------------------------
    def on_color(self, image: np.ndarray, stamp_s: float) -> None:
        image = np.asarray(image)
        expected = None if self.full_frames else (self.view.height, self.view.width, 3)
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8 or \
                (expected is not None and image.shape != expected):
            raise ValueError(f"colour frame {image.shape} {image.dtype}: expected "
                             f"{expected or '(H, W, 3)'} uint8 rgb"
                             f"{'' if self.full_frames else ' (the view stream)'}")
        self._color.append((float(stamp_s), image))

    def on_depth(self, depth_mm: np.ndarray, stamp_s: float) -> None:
        depth_mm = np.asarray(depth_mm)
        if depth_mm.ndim != 2 or depth_mm.dtype != np.uint16:
            raise ValueError(f"depth frame {depth_mm.shape} {depth_mm.dtype}: expected (H, W) "
                             "uint16 mm")
        self._depth.append((float(stamp_s), depth_mm))

    # ---- pairing ---------------------------------------------------------------------------
    def pair(self, joint_stamp_s: float, not_before_s: float | None = None
             ) -> tuple[ViewFrame | None, str | None]:
        """(the view to act on with this joint state, None) or (None, why there is none).
        ``not_before_s``: only frames stamped at or after it (an episode's first step: frames
        from before its reset show the last episode's scene)."""
        frame, reason = self._pair(float(joint_stamp_s), not_before_s)
        self.counts["paired" if frame is not None else reason.split(":")[0]] += 1
        return frame, (reason or None)

    def _pair(self, joint_stamp_s: float, not_before_s: float | None
              ) -> tuple[ViewFrame | None, str]:
        if not self._color:
            return None, f"{NO_FRAME}: no camera frame received yet"
        candidates = [item for item in self._color
                      if not_before_s is None or item[0] >= not_before_s]
        if not candidates:
            return None, (f"{NO_FRAME}: no camera frame stamped since {not_before_s:.3f} s "
                          "(the episode's reset) yet")
        stamp, image = min(candidates, key=lambda item: abs(item[0] - joint_stamp_s))
        gap = abs(stamp - joint_stamp_s)
        limit = self.view.max_frame_age_s
        if gap > limit:
            newest = max(s for s, _ in self._color)
            return None, (f"{STALE_FRAME}: the closest camera frame is {gap * 1e3:.0f} ms from "
                          f"the joint state (limit {limit * 1e3:.0f} ms; newest frame "
                          f"{(joint_stamp_s - newest) * 1e3:.0f} ms before it)")
        depth = None
        if self.view.depth:
            matches = [d for s, d in self._depth if abs(s - stamp) <= SAME_CAPTURE_S]
            if not matches:
                return None, (f"{NO_FRAME}: no depth frame with the colour frame's stamp "
                              f"{stamp:.3f} s (the view declares depth)")
            depth = matches[-1]
        return self._view(stamp, image, depth), ""

    def _view(self, stamp_s: float, image: np.ndarray, depth: np.ndarray | None) -> ViewFrame:
        """The frame cut to the view (once per frame: consecutive steps may share one)."""
        if self._cache is not None and self._cache[0] == stamp_s:
            return self._cache[1]
        if self.full_frames:
            image = preprocess_color(image, self.view)
            depth = None if depth is None else preprocess_depth(depth, self.view)
        elif depth is not None and depth.shape != image.shape[:2]:
            raise ValueError(f"depth frame {depth.shape}: expected {image.shape[:2]} (the view)")
        frame = ViewFrame(stamp_s, image, depth)
        self._cache = (stamp_s, frame)
        return frame
