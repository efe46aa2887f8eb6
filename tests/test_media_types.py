"""One content-type table: the bridge serves media with the types storage and uploads use."""

from __future__ import annotations

from pathlib import Path

import pytest

from bridge_api.app import create_app
from wf_core.media_types import CONTENT_TYPES


@pytest.mark.parametrize("fmt", sorted(CONTENT_TYPES))
def test_media_is_served_with_its_content_type(tmp_path: Path, fmt: str) -> None:
    media = tmp_path / "media"
    (media / "jobs" / "j").mkdir(parents=True)
    (media / "jobs" / "j" / f"out.{fmt}").write_bytes(b"stored bytes")
    app = create_app({"MEDIA_DIR": str(media), "AUTH_MODE": "disabled"})
    response = app.test_client().get(f"/media/jobs/j/out.{fmt}")
    assert response.status_code == 200
    assert response.mimetype == CONTENT_TYPES[fmt]
