"""The image check shared by the upload gate and the upload step: format, size, full decode."""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from typing import Literal

from PIL import Image, ImageFile

MAX_PIXELS = 40_000_000
# Pillow's format names for ours; it may report a multi-picture JPEG (phone cameras) as
# MPO, which is still a JPEG.
PIL_FORMATS = {"jpg": ("JPEG", "MPO"), "png": ("PNG",), "webp": ("WEBP",)}
FORMAT_OF_PIL = {name: fmt for fmt, names in PIL_FORMATS.items() for name in names}

Reason = Literal["unsupported", "invalid", "too_large"]


class ImageRejected(ValueError):
    """An image we refuse: another image type, not a decodable image, or too many pixels."""

    def __init__(self, reason: Reason, message: str) -> None:
        super().__init__(message)
        self.reason: Reason = reason
        self.message = message


@dataclass(frozen=True)
class CheckedImage:
    """An image that passed: our format word and its size."""

    format: str
    width: int
    height: int


def check_image(data: bytes, fmt: str | None = None, max_pixels: int = MAX_PIXELS) -> CheckedImage:
    """The image in `data` if it fits `max_pixels` and fully decodes (as `fmt`, if given)."""
    if ImageFile.LOAD_TRUNCATED_IMAGES:  # someone turned it on: truncation would pass silently
        raise RuntimeError("PIL.ImageFile.LOAD_TRUNCATED_IMAGES is on; images cannot be checked")
    if not data:
        raise ImageRejected("invalid", "The file is empty.")
    too_large = f"The image has more than {max_pixels:,} pixels."
    # A format from the caller's sniffing is the only one Pillow may try.
    formats = PIL_FORMATS[fmt][:1] if fmt else None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data), formats=formats) as image:
                found = FORMAT_OF_PIL.get(image.format or "")
                if fmt and found != fmt:
                    raise ImageRejected("invalid", f"The file is not a valid {fmt} image.")
                if found is None:
                    message = f"The file is a {image.format} image, not a JPEG, PNG or WebP image."
                    raise ImageRejected("unsupported", message)
                width, height = image.size
                # Refused from the header alone, before any pixel is decoded.
                if width * height > max_pixels:
                    raise ImageRejected("too_large", too_large)
                image.load()
    except ImageRejected:
        raise
    except (Image.DecompressionBombWarning, Image.DecompressionBombError):
        raise ImageRejected("too_large", too_large) from None
    except Exception:  # whatever a decoder raises on hostile bytes, the image is invalid
        what = f"{fmt} image" if fmt else "image"
        raise ImageRejected("invalid", f"The file is not a decodable {what}.") from None
    return CheckedImage(found, width, height)
