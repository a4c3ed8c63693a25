"""The video writer: real MP4 through imageio-ffmpeg, real GIF through Pillow, read back."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from PIL import Image, ImageSequence

from robot_rl.data.video import VideoWriter, mp4_available


def ramp(n: int, height: int = 48, width: int = 64) -> list[np.ndarray]:
    return [np.full((height, width, 3), 20 * i, np.uint8) for i in range(n)]


@pytest.mark.skipif(bool(mp4_available()), reason=f"no MP4 here: {mp4_available()}")
def test_mp4_keeps_every_frame_its_size_and_rate(tmp_path) -> None:
    import imageio.v2 as imageio

    writer = VideoWriter(tmp_path / "clip.mp4", fps=20)
    for frame in ramp(9):
        writer.append(frame)
    info = writer.close()
    assert (info.format, info.frames, info.width, info.height) == ("mp4", 9, 64, 48)
    reader = imageio.get_reader(info.path)
    frames = [f for f in reader.iter_data()]  # list() trusts a guessed length
    assert reader.get_meta_data()["fps"] == pytest.approx(20)
    assert len(frames) == 9 and frames[0].shape == (48, 64, 3)
    # lossy, but each frame's grey level survives within a few counts
    np.testing.assert_allclose([f.mean() for f in frames], [20 * i for i in range(9)], atol=3)


def test_gif_total_duration_and_size(tmp_path) -> None:
    writer = VideoWriter(tmp_path / "clip.gif", fps=20)
    frames = ramp(3) + ramp(3)[-1:] * 2     # two repeats: Pillow merges them into one frame
    for frame in frames:
        writer.append(frame)
    info = writer.close()
    assert info.frames == 5
    with Image.open(info.path) as gif:
        assert gif.size == (64, 48)
        durations = [f.info["duration"] for f in ImageSequence.Iterator(gif)]
    assert len(durations) == 3 and sum(durations) == 5 * 50


def test_mp4_falls_back_to_gif_without_imageio_ffmpeg(tmp_path, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "imageio_ffmpeg", None)   # as if not installed
    with pytest.warns(UserWarning, match="cannot write MP4"):
        writer = VideoWriter(tmp_path / "clip.mp4", fps=10)
    for frame in ramp(2):
        writer.append(frame)
    info = writer.close()
    assert info.path == tmp_path / "clip.gif" and info.format == "gif"
    assert "imageio_ffmpeg" in info.fallback_reason and info.path.exists()


def test_bad_requests_are_named(tmp_path) -> None:
    with pytest.raises(ValueError, match=r"unknown format '\.avi'"):
        VideoWriter(tmp_path / "clip.avi", fps=10)
    with pytest.raises(ValueError, match="fps must be"):
        VideoWriter(tmp_path / "clip.gif", fps=0)
    writer = VideoWriter(tmp_path / "clip.gif", fps=10)
    with pytest.raises(ValueError, match="no frames"):
        writer.close()
    writer.append(ramp(1)[0])
    with pytest.raises(ValueError, match=r"frame 1 is \(48, 62, 3\), the first was \(48, 64, 3\)"):
        writer.append(ramp(1, width=62)[0])
    with pytest.raises(ValueError, match="uint8"):
        writer.append(np.zeros((48, 64, 3), np.float32))
    if not mp4_available():
        odd = VideoWriter(tmp_path / "odd.mp4", fps=10)
        with pytest.raises(ValueError, match="even width and height, got 63x48"):
            odd.append(ramp(1, width=63)[0])
