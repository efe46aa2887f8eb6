"""Fixtures for Replicate provider tests: a running fake, the provider wired to it, a store."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path

import dagster as dg
import pytest

from resources.local_media import LocalMediaStorage
from resources.media_storage import MediaStorage, StoredMedia
from resources.model_provider import GenerationRequest, ModelProvider, PreparedCall
from resources.replicate_provider import ReplicateModelProvider
from tests.conftest import migrated
from tests.fakes.replicate_server import FakeReplicate
from wf_core.models import MODELS
from wf_core.settings import REPO_ROOT
from wf_store.predictions import TERMINAL_STATUSES, Prediction, PredictionStore

SAMPLE_IMAGE = REPO_ROOT / "samples" / "sample.jpg"
TOKEN = "r8_fake_token"
# Short timeouts keep the suite fast; the code paths are the production ones.
FAST_CONFIG = {"request_timeout_seconds": 5.0, "deadline_seconds": 30.0}


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
    return LocalMediaStorage(
        media_dir=str(tmp_path / "media"), staging_url=str(tmp_path / "staged")
    )


@pytest.fixture
def source(media: LocalMediaStorage) -> StoredMedia:
    """The sample image, stored as job j1's upload."""
    return media.put("jobs/j1/upload", SAMPLE_IMAGE.read_bytes(), "jpg", "image")


@pytest.fixture
def store(tmp_path: Path) -> Iterator[PredictionStore]:
    """The prediction store on a SQLite file in the test's folder."""
    store = PredictionStore(migrated(f"sqlite:///{tmp_path / 'state.db'}"))
    yield store
    store.close()


@pytest.fixture
def provider_config() -> dict:
    """Provider settings for tests: short timeouts."""
    return dict(FAST_CONFIG)


@pytest.fixture
def provider(provider_config: dict) -> Iterator[Callable[..., ReplicateModelProvider]]:
    """Makes the provider as a deployment wires it: token and API root from the environment."""
    with contextlib.ExitStack() as stack:

        def make(**overrides) -> ReplicateModelProvider:
            resource = ReplicateModelProvider(
                api_token=dg.EnvVar("REPLICATE_API_TOKEN"),
                base_url=dg.EnvVar("REPLICATE_API_BASE_URL"),
                **{**provider_config, **overrides},
            )
            return stack.enter_context(resource.process_config_and_initialize_cm())

        yield make


def request(
    source: StoredMedia, model: str = "nano-banana", task: str = "image_edit", prompt="a hat"
) -> GenerationRequest:
    """A generation request for step "edit" of job j1."""
    return GenerationRequest("j1", "edit", task, model, prompt, source)


def intend(
    store: PredictionStore,
    provider: ModelProvider,
    asked: GenerationRequest,
    media: MediaStorage,
) -> tuple[PreparedCall, Prediction]:
    """Prepare the call and record its intent, as a generation step does before submitting."""
    call = provider.prepare(asked, media)
    intent = store.intend(
        job_id=asked.job_id,
        step=asked.step,
        attempt=1,
        workflow_id="wf",
        provider=provider.provider_name,
        model=asked.model,
        provider_model=call.provider_model,
        input_digest=call.digest,
        provider_input=call.provider_input,
        run_id="r1",
    )
    return call, intent


def submitted(
    store: PredictionStore,
    provider: ModelProvider,
    asked: GenerationRequest,
    media: MediaStorage,
    webhook_url: str | None = None,
) -> Prediction:
    """Intend, submit and record the create's answer: the row as it is after a step parks."""
    call, intent = intend(store, provider, asked, media)
    created = provider.submit(call, intent, webhook_url)
    return store.created(intent.id, created.id, created.status, intent.created_at)


def settled(
    store: PredictionStore, provider: ModelProvider, row: Prediction, reads: int = 10
) -> Prediction:
    """Poll the prediction until it ends (at most `reads` reads), recording what it said."""
    for _ in range(reads):
        seen = provider.fetch(row)
        assert seen is not None, f"the provider lost prediction {row.prediction_id}"
        store.apply_provider_update(seen.as_update(), "poll")
        if seen.status in TERMINAL_STATUSES:
            break
    found = store.get(row.id)
    assert found is not None and found.terminal, f"prediction still {found and found.state}"
    return found
