"""Small real media files for fakes to serve: a PNG and an H.264 MP4 of known length."""

from __future__ import annotations

import functools
import io
import os
import tempfile
from pathlib import Path

MP4_SECONDS = 1.5
MP4_FPS = 8


@functools.cache
def png_bytes() -> bytes:
    """A decodable 16x16 PNG."""
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (16, 16), (200, 40, 90)).save(out, format="PNG")
    return out.getvalue()


@functools.cache
def mp4_bytes() -> bytes:
    """A decodable H.264 MP4, MP4_SECONDS long."""
    import imageio_ffmpeg

    with tempfile.TemporaryDirectory() as tmp:
        target = os.path.join(tmp, "clip.mp4")
        writer = imageio_ffmpeg.write_frames(
            target,
            (32, 32),
            fps=MP4_FPS,
            codec="libx264",
            quality=None,
            pix_fmt_out="yuv420p",
            output_params=["-preset", "ultrafast"],
            macro_block_size=2,
            ffmpeg_log_level="error",
        )
        writer.send(None)
        for index in range(int(MP4_SECONDS * MP4_FPS)):
            writer.send(bytes([index * 20 % 256]) * (32 * 32 * 3))
        writer.close()
        return Path(target).read_bytes()
