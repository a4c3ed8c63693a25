"""A live view of the twin for the person recording demonstrations.

With a display (``DISPLAY`` or ``WAYLAND_DISPLAY`` set), MuJoCo's passive viewer: a window on the
twin's own ``MjData``, synced from the thread that steps the physics (the twin node's timers run
one at a time, so a sync never sees half a step). Dragging a body in the window pushes the twin.

Without a display there is no window to open (and the project's OpenCV is the headless build,
without ``imshow``), so the latest frame rendered from the scene's camera goes to a PNG file,
replaced atomically (write, then rename) at the viewer rate; an image viewer that reloads on
change shows it live (``eog``, ``feh --reload 0.2``, an editor's preview, or over SSH with
``scp``/``sshfs``). Rendering runs on its own thread and drops frames while one renders, so a
slow software renderer never stalls the joint states.
"""

from __future__ import annotations

import contextlib
import copy
import os
import queue
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

import mujoco
import numpy as np

WINDOW_START_TIMEOUT_S = 10.0
DEFAULT_PNG = "twin_view.png"


class ViewerUnavailable(RuntimeError):
    """The viewer window cannot be opened here; the message says why."""


class Viewer(Protocol):
    description: str

    def update(self, data: mujoco.MjData) -> None: ...

    def close(self) -> None: ...


def display_available(environ: Mapping[str, str] | None = None) -> str:
    """'' when a window can be opened, else why not."""
    environ = os.environ if environ is None else environ
    if environ.get("DISPLAY") or environ.get("WAYLAND_DISPLAY"):
        return ""
    return "no display (DISPLAY and WAYLAND_DISPLAY are unset: a headless machine or SSH session)"


class PassiveViewer:
    """MuJoCo's passive viewer window on ``data``; ``update`` syncs it (from the physics thread)."""

    def __init__(self, model: mujoco.MjModel, data: mujoco.MjData, *, camera: str = "realsense",
                 start_timeout_s: float = WINDOW_START_TIMEOUT_S) -> None:
        if why := display_available():
            raise ViewerUnavailable(why)
        self._data = data
        self._handle, self._gui_thread = _launch_passive(model, data, start_timeout_s)
        self.description = "MuJoCo viewer window"
        if camera in [model.camera(i).name for i in range(model.ncam)]:
            # start where the scene's camera looks (the default free camera frames the whole
            # floor); Esc in the window frees the camera
            with self._handle.lock():
                self._handle.cam.type = mujoco.mjtCamera.mjCAMERA_FIXED
                self._handle.cam.fixedcamid = model.camera(camera).id
            self.description += f" (camera {camera}; Esc frees it)"

    @property
    def running(self) -> bool:
        return bool(self._handle.is_running())

    def update(self, data: mujoco.MjData) -> None:
        if data is not self._data:
            raise ValueError("PassiveViewer.update: the window shows the MjData it was opened on")
        if self._handle.is_running():  # closing the window does not stop the twin
            self._handle.sync()

    def close(self) -> None:
        with contextlib.suppress(Exception):  # the window may already be gone
            self._handle.close()
        # GLFW is terminated at interpreter exit: the window's thread must have let go by then
        # (measured: a segfault in about half the runs under Xvfb without this join)
        if self._gui_thread is not None:
            self._gui_thread.join(timeout=5.0)


def _launch_passive(model: mujoco.MjModel, data: mujoco.MjData, timeout_s: float
                    ) -> tuple[Any, threading.Thread | None]:
    """The viewer's handle and its GUI thread. launch_passive waits for that thread forever if it
    fails (no GLFW, no GL): start it from a helper thread and give up after ``timeout_s``."""
    result: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=1)

    def start() -> None:
        try:
            import mujoco.viewer

            handle = mujoco.viewer.launch_passive(model, data, show_left_ui=False,
                                                  show_right_ui=False)
            result.put(("ok", handle))
        except Exception as err:  # any failure means: no window
            result.put(("error", err))

    threading.Thread(target=start, name="twin-viewer-start", daemon=True).start()
    try:
        kind, value = result.get(timeout=timeout_s)
    except queue.Empty:
        raise ViewerUnavailable(f"the MuJoCo viewer window did not open within {timeout_s:g} s "
                                "(no working GLFW/OpenGL on this display?)") from None
    if kind == "error":
        raise ViewerUnavailable(f"the MuJoCo viewer cannot start: "
                                f"{type(value).__name__}: {value}")
    # Python names a thread after its target: mujoco.viewer's GUI loop is _launch_internal
    gui = [t for t in threading.enumerate() if "_launch_internal" in t.name]
    return value, gui[-1] if gui else None


class PngViewer:
    """The latest camera frame of the scene, written to ``path`` (PNG) on a thread of its own."""

    def __init__(self, model: mujoco.MjModel, path: str | os.PathLike[str], *, width: int = 640,
                 height: int = 480, camera: str = "realsense") -> None:
        names = [model.camera(i).name for i in range(model.ncam)]
        if camera not in names:
            raise ValueError(f"viewer camera {camera!r} is not in the model; its cameras: "
                             f"{names}")
        self.path = Path(path).absolute()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._model, self._width, self._height, self._camera = model, width, height, camera
        self.frames_written = 0
        self.error: BaseException | None = None
        self.description = f"PNG {self.path} (latest frame, {width}x{height})"
        self._jobs: queue.Queue[mujoco.MjData | None] = queue.Queue(maxsize=1)
        self._thread = threading.Thread(target=self._run, name="twin-viewer-png", daemon=True)
        self._thread.start()

    def update(self, data: mujoco.MjData) -> None:
        """Offers a snapshot; dropped while the previous one renders."""
        with contextlib.suppress(queue.Full):
            self._jobs.put_nowait(copy.copy(data))

    def _run(self) -> None:
        try:
            # a GL context belongs to the thread that makes it
            renderer = mujoco.Renderer(self._model, height=self._height, width=self._width)
        except Exception as err:  # reported through .error (the node logs it)
            self.error = err
            return
        try:
            while (data := self._jobs.get()) is not None:
                renderer.update_scene(data, camera=self._camera)
                self._write(renderer.render())
        except Exception as err:  # reported through .error
            self.error = err
        finally:
            renderer.close()

    def _write(self, rgb: np.ndarray) -> None:
        from PIL import Image

        tmp = self.path.with_name(f".{self.path.name}.tmp")
        Image.fromarray(rgb).save(tmp, format="PNG", compress_level=1)
        os.replace(tmp, self.path)  # readers see the old frame or the new one, never half
        self.frames_written += 1

    def close(self) -> None:
        with contextlib.suppress(queue.Empty):
            self._jobs.get_nowait()  # make room for the stop marker (only update() offers)
        with contextlib.suppress(queue.Full):
            self._jobs.put_nowait(None)
        self._thread.join(timeout=5.0)


def open_viewers(model: mujoco.MjModel, data: mujoco.MjData, *, window: bool, png_path: str,
                 width: int = 640, height: int = 480, camera: str = "realsense"
                 ) -> tuple[list[Viewer], list[str]]:
    """The viewers asked for, and lines for the log.

    ``window``: MuJoCo's viewer if a display allows it, else the PNG fallback (at ``png_path``, or
    ``twin_view.png`` in the working directory). ``png_path`` alone: the PNG, with or without a
    display.
    """
    viewers: list[Viewer] = []
    notes: list[str] = []
    want_png = bool(png_path)
    if window:
        try:
            viewers.append(PassiveViewer(model, data, camera=camera))
        except ViewerUnavailable as err:
            notes.append(f"viewer window unavailable: {err}; writing the latest frame to a PNG "
                         "instead")
            want_png = True
    if want_png:
        viewers.append(PngViewer(model, png_path or DEFAULT_PNG, width=width, height=height,
                                 camera=camera))
    notes += [f"live view: {v.description}" for v in viewers]
    return viewers, notes
