"""The upload gate: an uploaded file is checked by content before anything is stored or run."""

from __future__ import annotations

import io
import re
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, NoReturn, Protocol

import imageio_ffmpeg
from werkzeug.utils import secure_filename

from bridge_api.http.errors import ApiError
from wf_core.media_checks import MAX_PIXELS, ImageRejected, check_image
from wf_core.media_types import CONTENT_TYPES

CHUNK_BYTES = 64 * 1024
PROBE_FRAMES = 5
PROBE_TIMEOUT_SECONDS = 30.0

# How the gate answers an image the core check refuses.
IMAGE_REFUSALS = {
    "unsupported": (415, "unsupported_type"),
    "invalid": (400, "invalid_image"),
    "too_large": (413, "image_too_large"),
}
FFMPEG_DEMUXERS = {"mp4": "mov", "mov": "mov", "webm": "matroska"}

MP4_BRANDS = {b"isom", b"mp41", b"mp42", b"mp71", b"avc1", b"dash", b"M4V ", b"f4v ", b"mmp4"}
MP4_BRANDS |= {b"iso%d" % n for n in range(2, 10)}
OTHER_ISO_BRANDS = {
    b"heic": "a HEIC image", b"heix": "a HEIC image", b"mif1": "a HEIF image",
    b"msf1": "a HEIF image", b"avif": "an AVIF image", b"avis": "an AVIF image",
    b"crx ": "a Canon raw image", b"M4A ": "an audio file", b"M4B ": "an audio file",
}  # fmt: skip
OTHER_MAGIC = (
    (b"GIF8", "a GIF image"), (b"MZ", "a Windows executable"), (b"\x7fELF", "an ELF executable"),
    (b"\xcf\xfa\xed\xfe", "a Mach-O executable"), (b"\xca\xfe\xba\xbe", "a Mach-O or Java binary"),
    (b"#!", "a script"), (b"%PDF", "a PDF document"), (b"PK\x03\x04", "a ZIP archive"),
    (b"\x1f\x8b", "a gzip archive"), (b"Rar!", "a RAR archive"), (b"BM", "a BMP image"),
    (b"II*\x00", "a TIFF image"), (b"MM\x00*", "a TIFF image"), (b"8BPS", "a Photoshop file"),
    (b"\x00\x00\x01\x00", "an ICO image"), (b"ID3", "an MP3 file"), (b"OggS", "an Ogg file"),
)  # fmt: skip


class Readable(Protocol):
    """Anything with `read(size)`: a file, `request.files[...]` or its `.stream`."""

    def read(self, size: int = -1, /) -> bytes: ...


@dataclass(frozen=True)
class UploadedFile:
    """An upload that passed the gate: its bytes and what its content was found to be."""

    data: bytes = field(repr=False)
    kind: Literal["image", "video"]
    format: str
    content_type: str
    width: int
    height: int
    duration: float | None
    safe_name: str


def inspect_upload(
    stream: Readable,
    filename: str | None,
    max_bytes: int,
    max_pixels: int = MAX_PIXELS,
    probe_timeout: float = PROBE_TIMEOUT_SECONDS,
) -> UploadedFile:
    """Read an upload and check it by content; an `ApiError` (4xx) for anything refused."""
    data = read_bounded(stream, max_bytes)
    kind, fmt = sniff_type(data)
    if kind == "image":
        (width, height), duration = _checked_image(data, fmt, max_pixels), None
    else:
        width, height, duration = probe_video(data, fmt, max_pixels, probe_timeout)
    return UploadedFile(
        data, kind, fmt, CONTENT_TYPES[fmt], width, height, duration, safe_name(filename, fmt)
    )


def read_bounded(stream: Readable, max_bytes: int) -> bytes:
    """The stream's bytes, read in chunks and abandoned as soon as they exceed `max_bytes`."""
    if max_bytes <= 0:
        raise ValueError("max_bytes must be positive")
    buffer = io.BytesIO()
    while chunk := stream.read(min(CHUNK_BYTES, max_bytes + 1 - buffer.tell())):
        buffer.write(chunk)
        if buffer.tell() > max_bytes:
            limit = f"{max_bytes / 1024 / 1024:.4g} MB"
            raise ApiError(
                413, "file_too_large", f"The file is larger than {limit}.", max_bytes=max_bytes
            )
    if not buffer.tell():
        raise ApiError(400, "empty_file", "The uploaded file is empty.")
    return buffer.getvalue()


def sniff_type(data: bytes) -> tuple[Literal["image", "video"], str]:
    """(kind, format) from the leading bytes alone; 415 naming what was found otherwise."""
    if data.startswith(b"\xff\xd8\xff"):
        return "image", "jpg"
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image", "png"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image", "webp"
    if data[4:8] == b"ftyp":
        return "video", _iso_media_format(data)
    if data.startswith(b"\x1a\x45\xdf\xa3"):
        if re.search(rb"\x42\x82[\x00-\xff]{1,8}?webm", data[:64]):  # the EBML DocType
            return "video", "webm"
        _unsupported("a Matroska video that is not WebM")
    _unsupported(_describe(data))


def _iso_media_format(data: bytes) -> str:
    """mp4 or mov from an ISO media `ftyp` box's major and compatible brands."""
    major = data[8:12]
    box_end = min(int.from_bytes(data[:4], "big"), len(data), 256)
    brands = {major} | {data[i : i + 4] for i in range(16, box_end - 3, 4)}
    if major in OTHER_ISO_BRANDS:
        _unsupported(OTHER_ISO_BRANDS[major])
    if major == b"qt  ":
        return "mov"
    if brands & MP4_BRANDS:
        return "mp4"
    _unsupported(f"an ISO media file of brand {major.decode('latin-1')!r}")


def _describe(data: bytes) -> str:
    """A person's name for content we do not accept, for the 415 message."""
    for magic, label in OTHER_MAGIC:
        if data.startswith(magic):
            return label
    if data[:4] == b"RIFF":
        return f"a RIFF {data[8:12].decode('latin-1').strip()!r} file"
    sample = data[:512]
    try:
        text = sample.decode("utf-8")
    except UnicodeDecodeError as exc:  # a character cut at the sample's end is still text
        if exc.start < len(sample) - 3:
            return "unrecognised binary data"
        text = sample[: exc.start].decode("utf-8")
    text = text.lstrip("\ufeff")
    if text.lstrip().startswith("<"):
        return "an SVG image" if "<svg" in text.lower() else "XML or HTML markup"
    return "text" if all(c.isprintable() or c in "\t\r\n\f" for c in text) else "binary data"


def _unsupported(found: str) -> NoReturn:
    """Refuse with 415, naming what was found and what we take."""
    wanted = "a JPEG, PNG or WebP image or an MP4, MOV or WebM video"
    message = f"The file is {found}; upload {wanted}."
    raise ApiError(415, "unsupported_type", message, found=found)


def _checked_image(data: bytes, fmt: str, max_pixels: int) -> tuple[int, int]:
    """(width, height) of an image the core check passes; its refusal as a 4xx."""
    try:
        image = check_image(data, fmt, max_pixels)
    except ImageRejected as exc:
        status, code = IMAGE_REFUSALS[exc.reason]
        if exc.reason == "too_large":
            raise ApiError(status, code, exc.message, max_pixels=max_pixels) from None
        raise ApiError(status, code, exc.message) from None
    return image.width, image.height


def probe_video(
    data: bytes,
    fmt: str,
    max_pixels: int = MAX_PIXELS,
    timeout: float = PROBE_TIMEOUT_SECONDS,
) -> tuple[int, int, float | None]:
    """(width, height, duration) of a video whose first frames decode with the packaged ffmpeg."""
    with tempfile.TemporaryDirectory(prefix="upload-") as folder:
        path = Path(folder) / f"upload.{fmt}"  # never the caller's name
        path.write_bytes(data)
        # The demuxer is forced and only local files may be opened, so a crafted file cannot
        # make ffmpeg read playlists, other files or URLs.
        command = [
            imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-nostdin", "-xerror",
            "-protocol_whitelist", "file", "-max_pixels", str(min(max_pixels, 2**31 - 1)),
            "-f", FFMPEG_DEMUXERS[fmt], "-i", str(path),
            "-map", "0:v:0", "-frames:v", str(PROBE_FRAMES), "-f", "framecrc", "-",
        ]  # fmt: skip
        try:
            done = subprocess.run(
                command, capture_output=True, text=True, errors="replace", timeout=timeout
            )
        except subprocess.TimeoutExpired:
            message = "The video could not be decoded in time."
            raise ApiError(400, "invalid_video", message) from None
    size = re.search(r"^#dimensions 0: (\d+)x(\d+)$", done.stdout, re.MULTILINE)
    width, height = (int(size[1]), int(size[2])) if size else (0, 0)
    if "exceeds specified max pixel count" in done.stderr or width * height > max_pixels:
        message = f"The video's frames have more than {max_pixels:,} pixels."
        raise ApiError(413, "video_too_large", message, max_pixels=max_pixels)
    frames = [line for line in done.stdout.splitlines() if line and not line.startswith("#")]
    if done.returncode != 0 or not size or not frames:
        raise ApiError(400, "invalid_video", f"The file is not a decodable {fmt} video.")
    # Anchored: metadata lines are indented and "key : value", so a tag cannot pose as this.
    duration = re.search(r"^  Duration: (\d+):(\d\d):(\d\d(?:\.\d+)?)", done.stderr, re.MULTILINE)
    seconds = None
    if duration:
        hours, minutes, secs = duration.groups()
        seconds = int(hours) * 3600 + int(minutes) * 60 + float(secs)
    return width, height, seconds


def safe_name(filename: str | None, fmt: str) -> str:
    """The upload's base name made harmless, with the extension its content earned."""
    base = re.split(r"[\\/]", filename or "")[-1]
    stem = secure_filename(base.rsplit(".", 1)[0])[:100].strip("._")
    return f"{stem or 'upload'}.{fmt}"
