"""Fixtures for Replicate provider tests: a running fake, and the provider wired to it."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path

import dagster as dg
import pytest

from resources.local_media import LocalMediaStorage
from resources.media_storage import StoredMedia
from resources.prediction_ledger import PredictionLedger
from resources.replicate_provider import ReplicateModelProvider
from tests.fakes.replicate_server import FakeReplicate
from wf_core.models import MODELS
from wf_core.settings import REPO_ROOT

SAMPLE_IMAGE = REPO_ROOT / "samples" / "sample.jpg"
TOKEN = "r8_fake_token"
# Small intervals keep the suite fast; the code paths are the production ones.
FAST_CONFIG = {
    "wait_seconds": 1,
    "poll_initial_seconds": 0.01,
    "poll_max_seconds": 0.05,
    "request_timeout_seconds": 5.0,
    "deadline_seconds": 30.0,
}


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeReplicate]:
    """A running fake Replicate that the provider reaches through REPLICATE_API_BASE_URL."""
    models = {spec.provider_model for spec in MODELS.values()}
    videos = {spec.provider_model for spec in MODELS.values() if "image_to_video" in spec.tasks}
    with FakeReplicate(TOKEN, models, videos) as server:
        monkeypatch.setenv("REPLICATE_API_TOKEN", TOKEN)
        monkeypatch.setenv("REPLICATE_API_BASE_URL", server.base_url)
        yield server


@pytest.fixture
def media(tmp_path: Path) -> LocalMediaStorage:
    """Local media storage in the test's folder."""
    return LocalMediaStorage(media_dir=str(tmp_path / "media"))


@pytest.fixture
def source(media: LocalMediaStorage) -> StoredMedia:
    """The sample image, stored as job j1's upload."""
    return media.put("jobs/j1/upload", SAMPLE_IMAGE.read_bytes(), "jpg", "image")


@pytest.fixture
def ledger(tmp_path: Path) -> PredictionLedger:
    """The prediction ledger in the test's folder."""
    return PredictionLedger(str(tmp_path / "ledger"))


@pytest.fixture
def provider_config() -> dict:
    """Provider settings for tests: short polls and timeouts."""
    return dict(FAST_CONFIG)


@pytest.fixture
def provider(
    ledger: PredictionLedger, provider_config: dict
) -> Iterator[Callable[..., ReplicateModelProvider]]:
    """Makes the provider as a deployment wires it: token and API root from the environment."""
    with contextlib.ExitStack() as stack:

        def make(**overrides) -> ReplicateModelProvider:
            resource = ReplicateModelProvider(
                api_token=dg.EnvVar("REPLICATE_API_TOKEN"),
                base_url=dg.EnvVar("REPLICATE_API_BASE_URL"),
                ledger_url=ledger.root,
                **{**provider_config, **overrides},
            )
            return stack.enter_context(resource.process_config_and_initialize_cm())

        yield make
