"""The upload step re-checks its input when the run starts (the bridge checked it first),
then deletes the bridge's raw upload once its copy is in media storage."""

from __future__ import annotations

from pathlib import Path

import pytest

from resources.local_media import LocalMediaStorage
from tests.conftest import SAMPLE_IMAGE
from tests.test_media_checks import mpo_bytes
from tests.test_uploads import image_bytes, png_declaring
from wf_assets.kinds.base import StepContext
from wf_assets.kinds.generate import Finished
from wf_assets.kinds.upload import run_upload, sniff_image
from wf_core.errors import HardError


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


def test_good_images() -> None:
    assert sniff_image(image_bytes("JPEG", (64, 48))) == ("jpg", 64, 48)
    # A phone's multi-picture JPEG passes the bridge's gate, so the step takes it too.
    assert sniff_image(mpo_bytes()) == ("jpg", 64, 48)


JOB = "0190aaaa-0000-7000-8000-000000000000"


def _context(media: LocalMediaStorage, source: Path) -> StepContext:
    return StepContext(
        job_id=JOB,
        step="upload",
        model=None,
        prompt=None,
        upstream=[],
        provider=None,  # type: ignore[arg-type]  # the upload step never calls a model
        media=media,
        source_path=str(source),
    )


def _bridge_upload(tmp_path: Path) -> Path:
    """An input stored as the bridge stores it: <UPLOAD_DIR>/<job_id>/input.<fmt>."""
    path = tmp_path / "uploads" / JOB / "input.jpg"
    path.parent.mkdir(parents=True)
    path.write_bytes(SAMPLE_IMAGE.read_bytes())
    return path


def test_the_bridges_upload_is_deleted_once_its_copy_is_stored(tmp_path: Path) -> None:
    media = LocalMediaStorage(media_dir=str(tmp_path / "media"))
    source = _bridge_upload(tmp_path)
    finished = run_upload(_context(media, source))
    assert isinstance(finished, Finished) and finished.intent_id is None  # no prediction
    output = finished.output
    assert not source.exists()
    stored = media.path_of(output["public_id"], output["format"])
    assert stored.read_bytes() == SAMPLE_IMAGE.read_bytes()


def test_a_rerun_reuses_the_stored_copy_when_the_upload_is_gone(tmp_path: Path) -> None:
    media = LocalMediaStorage(media_dir=str(tmp_path / "media"))
    source = _bridge_upload(tmp_path)
    first = run_upload(_context(media, source)).output
    source.unlink(missing_ok=True)  # gone, whoever removed it
    assert run_upload(_context(media, source)).output == first


def test_a_rerun_with_neither_upload_nor_stored_copy_is_invalid_input(tmp_path: Path) -> None:
    media = LocalMediaStorage(media_dir=str(tmp_path / "media"))
    source = _bridge_upload(tmp_path)
    output = run_upload(_context(media, source)).output
    media.path_of(output["public_id"], output["format"]).unlink()
    with pytest.raises(HardError) as caught:
        run_upload(_context(media, source))
    assert caught.value.error_type == "invalid_input"


def test_a_source_that_is_not_a_bridge_upload_is_left_alone(tmp_path: Path) -> None:
    media = LocalMediaStorage(media_dir=str(tmp_path / "media"))
    source = tmp_path / "samples" / "sample.jpg"
    source.parent.mkdir()
    source.write_bytes(SAMPLE_IMAGE.read_bytes())
    run_upload(_context(media, source))
    assert source.read_bytes() == SAMPLE_IMAGE.read_bytes()
