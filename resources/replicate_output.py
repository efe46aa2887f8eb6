"""What a finished Replicate prediction gives us: output URLs, file format, video length."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlparse

from resources.mp4_info import mp4_duration
from wf_core.errors import HardError
from wf_core.media_types import CONTENT_TYPES

# A format word from a file suffix or a content type (the core's table, read backwards).
FORMATS = {"jpeg": "jpg", **{content: fmt for fmt, content in CONTENT_TYPES.items()}}
PERCENT = re.compile(r"(\d{1,3})%")


def output_urls(prediction: dict[str, Any]) -> list[str]:
    """The output URLs of a prediction, whether `output` is one URL or a list."""
    output = prediction.get("output")
    items = output if isinstance(output, list) else [output]
    return [item for item in items if isinstance(item, str) and item.startswith("http")]


def output_format(url: str, content_type: str) -> str:
    """Our format word for an output, from the URL's suffix or else its Content-Type."""
    path = urlparse(url).path
    suffix = path.rsplit(".", 1)[-1].lower() if "." in path.rsplit("/", 1)[-1] else ""
    fmt = FORMATS.get(suffix, suffix) or FORMATS.get(content_type.split(";")[0].strip(), "")
    if fmt not in CONTENT_TYPES:
        raise HardError(
            "unsupported_type",
            f"output {url} ({content_type or 'no type'}) is none of {sorted(CONTENT_TYPES)}",
            provider="replicate",
        )
    return fmt


def video_duration(provider_input: dict[str, Any], data: bytes) -> float | None:
    """The clip length: what the input asked for, else what the MP4 header says, else None."""
    asked = provider_input.get("duration")
    if isinstance(asked, int | float) and not isinstance(asked, bool):
        return float(asked)
    return mp4_duration(data)


def progress_of(prediction: dict[str, Any]) -> tuple[int, str]:
    """A percent and message for a running prediction, using the model's own log percentages."""
    if prediction.get("status") == "starting":
        return 20, "Waiting for the model to start"
    found = PERCENT.findall(prediction.get("logs") or "")
    done = min(100, int(found[-1])) if found else 0
    return 25 + 65 * done // 100, "Model running"
