"""The one image check: what the upload gate and the upload step both accept and refuse."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from tests.test_uploads import image_bytes, png_declaring
from wf_core.media_checks import CheckedImage, ImageRejected, check_image


def mpo_bytes() -> bytes:
    """A multi-picture JPEG, as phone cameras write them (Pillow reads it as MPO)."""
    out = io.BytesIO()
    first, second = Image.new("RGB", (64, 48), "red"), Image.new("RGB", (64, 48), "blue")
    first.save(out, "MPO", save_all=True, append_images=[second])
    return out.getvalue()


@pytest.mark.parametrize("fmt", [None, "jpg"])
def test_a_multi_picture_jpeg_is_a_jpg(fmt: str | None) -> None:
    assert check_image(mpo_bytes(), fmt) == CheckedImage("jpg", 64, 48)


@pytest.mark.parametrize(
    ("data", "fmt", "reason"),
    [
        (b"", None, "invalid"),
        (image_bytes("GIF", (8, 8)), None, "unsupported"),
        (b"MZ\x90\x00" + bytes(64), None, "invalid"),
        (image_bytes("PNG"), "jpg", "invalid"),
        (image_bytes("PNG", (256, 256), noisy=True)[:2000], "png", "invalid"),
        (png_declaring(20_000, 20_000), None, "too_large"),
        (png_declaring(100, 100), "png", "too_large"),
    ],
    ids=["empty", "gif", "exe", "png-as-jpg", "truncated", "bomb", "over-the-cap"],
)
def test_refusals_say_why(data: bytes, fmt: str | None, reason: str) -> None:
    with pytest.raises(ImageRejected) as caught:
        check_image(data, fmt, max_pixels=9_999 if reason == "too_large" else 40_000_000)
    assert caught.value.reason == reason and caught.value.message
