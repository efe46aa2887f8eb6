"""The upload step re-checks its input when the run starts (the bridge checked it first)."""

from __future__ import annotations

import pytest

from tests.test_uploads import image_bytes, png_declaring
from wf_assets.errors import HardError
from wf_assets.kinds.upload import sniff_image


@pytest.mark.parametrize(
    "data,error_type",
    [
        (b"", "invalid_input"),
        (png_declaring(20000, 20000), "file_too_large"),
        (png_declaring(7000, 7000), "file_too_large"),
        (image_bytes("PNG", (64, 48))[:70], "invalid_input"),
        (image_bytes("GIF", (8, 8)), "unsupported_type"),
        (b"MZ\x90\x00" + b"\0" * 64, "invalid_input"),
    ],
    ids=["empty", "bomb", "over-pixel-cap", "truncated", "gif", "exe"],
)
def test_bad_inputs_are_classified(data: bytes, error_type: str) -> None:
    with pytest.raises(HardError) as caught:
        sniff_image(data)
    assert caught.value.error_type == error_type


def test_good_image() -> None:
    assert sniff_image(image_bytes("JPEG", (64, 48))) == ("jpg", 64, 48)
