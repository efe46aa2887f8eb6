"""The upload gate: every file in the issue's upload matrix is accepted or refused by content."""

from __future__ import annotations

import io
import os
import struct
import tempfile
import time
import zlib
from pathlib import Path

import imageio_ffmpeg
import pytest
from PIL import Image, ImageFile
from werkzeug.datastructures import FileStorage

from bridge_api.http.errors import ApiError
from bridge_api.jobs.uploads import UploadedFile, inspect_upload

MB = 1024 * 1024


def image_bytes(fmt: str, size: tuple[int, int] = (64, 48), noisy: bool = False) -> bytes:
    """An image made by Pillow; `noisy` makes it compress badly, so a cut lands mid-pixels."""
    image = Image.frombytes("RGB", size, os.urandom(size[0] * size[1] * 3)) if noisy else None
    image = image or Image.new("RGB", size, (200, 40, 90))
    out = io.BytesIO()
    image.save(out, fmt)
    return out.getvalue()


def png_declaring(width: int, height: int) -> bytes:
    """A tiny PNG whose header declares `width` x `height` (a decompression bomb's header)."""
    data = bytearray(image_bytes("PNG", (1, 1)))
    ihdr = b"IHDR" + struct.pack(">II", width, height) + bytes(data[24:29])
    data[12:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(ihdr))
    return bytes(data)


def video_bytes(tmp: Path, name: str, codec: str, size: tuple[int, int] = (64, 48)) -> bytes:
    """A one-second 10 fps video written by the packaged ffmpeg."""
    path = tmp / name
    writer = imageio_ffmpeg.write_frames(
        str(path), size, fps=10, codec=codec, pix_fmt_out="yuv420p", macro_block_size=16
    )
    writer.send(None)
    for k in range(10):
        writer.send(bytes([k * 20]) * (size[0] * size[1] * 3))
    writer.close()
    return path.read_bytes()


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    """A small valid MP4 (H.264), MOV (H.264) and WebM (VP9)."""
    tmp = tmp_path_factory.mktemp("videos")
    return {
        "mp4": video_bytes(tmp, "v.mp4", "libx264"),
        "mov": video_bytes(tmp, "v.mov", "libx264"),
        "webm": video_bytes(tmp, "v.webm", "libvpx-vp9"),
    }


@pytest.fixture
def own_tempdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point `tempfile` at an empty folder, so what the gate leaves behind can be seen."""
    folder = tmp_path / "tmp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


def inspect(data: bytes, filename: str = "upload", **kwargs) -> UploadedFile:
    """Run the gate over in-memory bytes with a 10 MB limit."""
    return inspect_upload(io.BytesIO(data), filename, kwargs.pop("max_bytes", 10 * MB), **kwargs)


def refused(data: bytes, filename: str = "upload", **kwargs) -> ApiError:
    """The ApiError the gate raises for `data`."""
    with pytest.raises(ApiError) as info:
        inspect(data, filename, **kwargs)
    return info.value


class EndlessStream:
    """A client that never stops sending; counts what was read and forbids unbounded reads."""

    def __init__(self, head: bytes) -> None:
        self.head = head
        self.bytes_read = 0

    def read(self, size: int = -1) -> bytes:
        assert size is not None and size >= 0, "the gate asked for the whole body at once"
        head = self.head[self.bytes_read : self.bytes_read + size]
        chunk = head + b"\0" * (size - len(head))
        self.bytes_read += len(chunk)
        return chunk


@pytest.mark.parametrize(
    ("fmt", "pil_format", "content_type"),
    [("jpg", "JPEG", "image/jpeg"), ("png", "PNG", "image/png"), ("webp", "WEBP", "image/webp")],
)
def test_valid_images_are_accepted(fmt: str, pil_format: str, content_type: str) -> None:
    data = image_bytes(pil_format, (64, 48))
    upload = inspect(data, f"holiday photo.{fmt}")
    assert upload == UploadedFile(
        data, "image", fmt, content_type, 64, 48, None, f"holiday_photo.{fmt}"
    )


@pytest.mark.parametrize(
    ("fmt", "content_type"),
    [("mp4", "video/mp4"), ("mov", "video/quicktime"), ("webm", "video/webm")],
)
def test_valid_videos_are_probed(
    videos: dict[str, bytes], own_tempdir: Path, fmt: str, content_type: str
) -> None:
    upload = inspect(videos[fmt], f"clip.{fmt}")
    assert (upload.kind, upload.format, upload.content_type) == ("video", fmt, content_type)
    assert (upload.width, upload.height) == (64, 48)
    assert upload.duration == pytest.approx(1.0, abs=0.05)
    assert upload.data == videos[fmt] and upload.safe_name == f"clip.{fmt}"
    assert list(own_tempdir.iterdir()) == []


def test_a_flask_file_storage_is_read_directly() -> None:
    storage = FileStorage(io.BytesIO(image_bytes("PNG")), "a.png", content_type="image/png")
    assert inspect_upload(storage, storage.filename, MB).format == "png"


def test_empty_file_is_400() -> None:
    error = refused(b"", "photo.jpg")
    assert (error.status, error.code) == (400, "empty_file")


def test_over_the_limit_is_413_and_reading_stops_early() -> None:
    stream = EndlessStream(image_bytes("PNG"))
    with pytest.raises(ApiError) as info:
        inspect_upload(stream, "big.png", max_bytes=MB)
    assert (info.value.status, info.value.code) == (413, "file_too_large")
    assert info.value.extra == {"max_bytes": MB}
    assert MB < stream.bytes_read <= MB + 1


def test_a_file_of_exactly_the_limit_is_read_whole() -> None:
    data = image_bytes("PNG")
    assert inspect(data, max_bytes=len(data)).data == data
    assert refused(data, max_bytes=len(data) - 1).status == 413


@pytest.mark.parametrize("pil_format", ["PNG", "JPEG", "WEBP"])
def test_truncated_image_is_400(pil_format: str) -> None:
    data = image_bytes(pil_format, (256, 256), noisy=True)
    error = refused(data[: len(data) // 2])
    assert (error.status, error.code) == (400, "invalid_image")


def test_truncation_is_never_tolerated(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    with pytest.raises(RuntimeError, match="LOAD_TRUNCATED_IMAGES"):
        inspect(image_bytes("PNG"))


def test_decompression_bomb_is_refused_from_its_header_fast() -> None:
    bomb = png_declaring(20_000, 20_000)
    assert len(bomb) < 100
    started = time.monotonic()
    error = refused(bomb, "bomb.png")
    assert time.monotonic() - started < 1
    assert (error.status, error.code) == (413, "image_too_large")


def test_pillows_bomb_warning_is_fatal_even_under_a_higher_cap() -> None:
    # 100 MP is above Pillow's warning threshold but below its error threshold.
    assert Image.MAX_IMAGE_PIXELS < 100_000_000 < 2 * Image.MAX_IMAGE_PIXELS
    error = refused(png_declaring(10_000, 10_000), max_pixels=200_000_000)
    assert (error.status, error.code) == (413, "image_too_large")


@pytest.mark.parametrize(("size", "max_pixels"), [((8000, 6000), None), ((100, 100), 9_999)])
def test_pixel_cap_is_413(size: tuple[int, int], max_pixels: int | None) -> None:
    kwargs = {"max_pixels": max_pixels} if max_pixels else {}
    error = refused(png_declaring(*size), **kwargs)
    assert (error.status, error.code) == (413, "image_too_large")
    assert error.extra["max_pixels"] == (max_pixels or 40_000_000)


def test_video_pixel_cap_is_413(videos: dict[str, bytes]) -> None:
    error = refused(videos["mp4"], max_pixels=1000)
    assert (error.status, error.code) == (413, "video_too_large")


@pytest.mark.parametrize(
    ("data", "found"),
    [
        (b"MZ\x90\x00\x03\x00\x00\x00" + bytes(200), "Windows executable"),
        (b"\x7fELF\x02\x01\x01" + bytes(200), "ELF executable"),
        (image_bytes("GIF"), "GIF image"),
        (b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg"/>', "SVG image"),
        (b"just some notes\nabout a photo\n", "text"),
        (b"%PDF-1.7\n", "PDF document"),
        (image_bytes("BMP"), "BMP image"),
        (bytes([0, 0, 0, 24]) + b"ftypheic" + bytes(4) + b"mif1heic", "HEIC image"),
        (bytes([0, 0, 0, 16]) + b"ftypM4A " + bytes(4), "audio file"),
        (b"\x1a\x45\xdf\xa3\x9f\x42\x86\x81\x01\x42\x82\x88matroska" + bytes(64), "Matroska"),
        (b"\x00\x01\x02\x03\x04" + bytes(40), "binary data"),
    ],
)
def test_anything_else_is_415_naming_what_was_found(data: bytes, found: str) -> None:
    error = refused(data, "photo.jpg")
    assert (error.status, error.code) == (415, "unsupported_type")
    assert found in error.message and found in error.extra["found"]


@pytest.mark.parametrize("filename", ["../../x", "..\\..\\x", "/etc/../x", "x\x00.sh", "x"])
def test_hostile_filename_is_reduced_to_a_harmless_base_name(filename: str) -> None:
    assert inspect(image_bytes("PNG"), filename).safe_name == "x.png"


@pytest.mark.parametrize("filename", [None, "", "..", "../../", "....jpg", "фото.png"])
def test_a_name_with_nothing_left_becomes_upload(filename: str | None) -> None:
    assert inspect(image_bytes("JPEG"), filename).safe_name == "upload.jpg"


def test_a_hostile_filename_does_not_change_a_refusal() -> None:
    error = refused(b"MZ" + bytes(100), "../../../../etc/cron.d/x.jpg")
    assert (error.status, error.code) == (415, "unsupported_type")


def test_the_name_and_declared_type_do_not_decide_the_type(videos: dict[str, bytes]) -> None:
    png = inspect(image_bytes("PNG"), "photo.jpg")
    assert (png.format, png.content_type, png.safe_name) == ("png", "image/png", "photo.png")
    mp4 = inspect(videos["mp4"], "photo.jpg")
    assert (mp4.kind, mp4.format, mp4.safe_name) == ("video", "mp4", "photo.mp4")


@pytest.mark.parametrize(
    "data",
    [
        b"\x89PNG\r\n\x1a\n" + image_bytes("JPEG")[8:],
        b"\xff\xd8\xff" + image_bytes("PNG"),
        b"RIFF\x00\x10\x00\x00WEBP" + image_bytes("PNG"),
    ],
    ids=["png-magic-jpeg-body", "jpeg-magic-png-body", "webp-magic-png-body"],
)
def test_magic_that_the_image_header_does_not_back_up_is_400(data: bytes) -> None:
    error = refused(data)
    assert (error.status, error.code) == (400, "invalid_image")


@pytest.mark.parametrize("fmt", ["mp4", "mov", "webm"])
def test_corrupt_or_truncated_video_is_400(
    videos: dict[str, bytes], own_tempdir: Path, fmt: str
) -> None:
    valid = videos[fmt]
    garbage = valid[:32] + os.urandom(4000)
    for data in (garbage, valid[: len(valid) // 2]):
        error = refused(data, f"clip.{fmt}")
        assert (error.status, error.code) == (400, "invalid_video")
    assert list(own_tempdir.iterdir()) == []


def test_an_mp4_body_in_a_webm_header_is_400(videos: dict[str, bytes]) -> None:
    webm_header = videos["webm"][:40]
    error = refused(webm_header + videos["mp4"])
    assert (error.status, error.code) == (400, "invalid_video")


def test_a_probe_that_overruns_its_timeout_is_400_and_leaves_nothing(
    videos: dict[str, bytes], own_tempdir: Path
) -> None:
    error = refused(videos["mp4"], probe_timeout=0.001)
    assert (error.status, error.code) == (400, "invalid_video")
    assert list(own_tempdir.iterdir()) == []
