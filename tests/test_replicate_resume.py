"""No double billing: a create whose answer was lost is found again, even after SIGKILL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from resources.media_storage import StoredMedia
from tests.fakes import replicate_fixtures as fx
from tests.fakes.replicate_fixtures import intend, request, settled, submitted
from tests.fakes.replicate_server import Fault, closed_port
from tests.fakes.sample_media import png_bytes
from wf_assets.kinds import STEP_KINDS, StepContext, Upstream
from wf_assets.kinds.generate import Finished, Parked
from wf_core.errors import RetryableError, WorkflowError
from wf_core.settings import REPO_ROOT

# The shared fixtures, bound here so that they stay local to these modules.
fake, provider, provider_config = fx.fake, fx.provider, fx.provider_config
media, source, store = fx.media, fx.source, fx.store

UNAVAILABLE = {"title": "Service Unavailable", "status": 503}


def _hook_url() -> str:
    """A receiver address nobody listens on: what the create names matters, not delivery."""
    return f"http://127.0.0.1:{closed_port()}/hooks/replicate"


def _lose_create(fake, replicate, call, intent, hook: str | None) -> WorkflowError:
    """Submit while the fake makes the prediction but answers 503: the answer is lost."""
    fake.fail_creates(1, Fault(503, UNAVAILABLE, accept=True))
    with pytest.raises(WorkflowError) as caught:
        replicate.submit(call, intent, hook)
    return caught.value


def test_find_names_the_lost_create_by_the_intent_in_its_webhook(
    fake, provider, store, media, source
) -> None:
    fake.webhook_retries = 0
    hook, replicate = _hook_url(), provider()
    # Another intent, same model and input, created fine: not the one we look for.
    other = submitted(store, replicate, request(source), media, hook)
    call, lost = intend(store, replicate, request(source), media)
    error = _lose_create(fake, replicate, call, lost, hook)
    assert error.error_type == "server_unavailable" and replicate.create_may_have_arrived(error)
    assert fake.created_count() == 2
    found = replicate.find(lost)
    assert found is not None and found.id != other.prediction_id
    assert fake.predictions[found.id].webhook == f"{hook}?intent={lost.id}"
    assert found.status == "starting" and found.progress == 20
    [listing] = fake.lists
    assert "created_after=" in listing.path
    # The other intent finds its own prediction, not ours.
    mine = replicate.find(other)
    assert mine is not None and mine.id == other.prediction_id


def test_find_without_a_webhook_matches_model_and_input(
    fake, provider, store, media, source
) -> None:
    fake.webhook_retries = 0
    replicate = provider(request_timeout_seconds=0.5)
    submitted(store, replicate, request(source, prompt="a cap"), media)  # other input
    submitted(store, replicate, request(source), media, _hook_url())  # another intent's
    call, lost = intend(store, replicate, request(source), media)
    fake.hang_creates(2.0)  # made at once, answered after our timeout
    with pytest.raises(WorkflowError) as caught:
        replicate.submit(call, lost, None)
    assert caught.value.error_type == "timeout" and replicate.create_may_have_arrived(caught.value)
    made = list(fake.predictions)[-1]
    assert fake.predictions[made].webhook is None
    found = replicate.find(lost)
    assert found is not None and found.id == made


def test_find_is_none_when_no_create_arrived(fake, provider, store, media, source) -> None:
    fake.webhook_retries = 0
    hook, replicate = _hook_url(), provider()
    submitted(store, replicate, request(source), media, hook)  # another intent's prediction
    call, lost = intend(store, replicate, request(source), media)
    fake.fail_creates(1, Fault(503, UNAVAILABLE))  # refused before anything was made
    with pytest.raises(WorkflowError) as caught:
        replicate.submit(call, lost, hook)
    assert caught.value.error_type == "server_unavailable" and fake.created_count() == 1
    assert replicate.find(lost) is None


def test_find_is_none_for_an_intent_never_submitted(fake, provider, store, media, source):
    _, intent = intend(store, provider(), request(source), media)
    assert provider().find(intent) is None and not fake.creates


def test_find_reads_every_page_of_the_list(fake, provider, store, media, source) -> None:
    fake.webhook_retries = 0
    fake.list_page_size = 2
    hook, replicate = _hook_url(), provider()
    call, lost = intend(store, replicate, request(source), media)
    _lose_create(fake, replicate, call, lost, hook)
    for prompt in ("b", "c", "d", "e"):  # newer ones: the list gives them first
        submitted(store, replicate, request(source, prompt=prompt), media, hook)
    found = replicate.find(lost)
    assert found is not None and fake.predictions[found.id].webhook == f"{hook}?intent={lost.id}"
    assert len(fake.lists) == 3


def test_find_without_a_webhook_does_not_adopt_another_rows_prediction(
    fake, provider, store, media, source
) -> None:
    replicate = provider()
    # An earlier intent of the same step, same input, no webhook: its row owns prediction P.
    earlier = submitted(store, replicate, request(source), media)
    store.abandon(earlier.id, "its output expired")
    call, lost = intend(store, replicate, request(source), media)
    fake.fail_creates(1, Fault(503, UNAVAILABLE))  # this create never arrived
    with pytest.raises(WorkflowError):
        replicate.submit(call, lost, None)

    def taken(prediction_id: str) -> bool:  # as the step asks: owned by another row?
        owner = store.by_prediction_id(prediction_id)
        return owner is not None and owner.id != lost.id

    assert replicate.find(lost, taken) is None


def test_an_expired_output_is_retryable(fake, provider, store, media, source) -> None:
    replicate = provider()
    row = settled(store, replicate, submitted(store, replicate, request(source), media))
    fake.outputs_expired = True
    with pytest.raises(RetryableError, match="gone") as caught:
        replicate.collect(row, request(source), media)
    assert caught.value.error_type == "server_unavailable"
    fake.outputs_expired = False
    assert replicate.collect(row, request(source), media).data == png_bytes()


def _context(replicate, store, media, source: StoredMedia, hook: str | None) -> StepContext:
    """Step "edit" of job j1: nano-banana edits the upload."""
    upload = {
        "image_url": source.url,
        "public_id": source.public_id,
        "format": source.format,
        "resource_type": "image",
        "bytes": source.bytes,
    }
    return StepContext(
        job_id="j1",
        step="edit",
        model="nano-banana",
        prompt="a hat",
        upstream=[Upstream("upload", "input_upload", upload)],
        provider=replicate,
        media=media,
        store=store,
        run_id="r1",
        attempt=1,
        workflow_id="wf",
        webhook_url=hook,
    )


CHILD = """
import json, sys
import dagster as dg
from resources.local_media import LocalMediaStorage
from resources.media_storage import StoredMedia
from resources.replicate_provider import ReplicateModelProvider
from tests.test_replicate_resume import _context
from wf_assets.kinds import STEP_KINDS
from wf_store.predictions import PredictionStore

args = json.loads(sys.argv[1])
resource = ReplicateModelProvider(
    api_token=dg.EnvVar("REPLICATE_API_TOKEN"),
    base_url=dg.EnvVar("REPLICATE_API_BASE_URL"),
    webhooks=True,
    **args["config"],
)
media = LocalMediaStorage(media_dir=args["media"], staging_url=args["staging"])
with resource.process_config_and_initialize_cm() as replicate:
    store = PredictionStore(args["store"])
    source = StoredMedia(**args["source"])
    STEP_KINDS["image_edit"].run(_context(replicate, store, media, source, args["hook"]))
"""


def test_sigkill_before_the_create_answer_does_not_pay_twice(
    fake, provider, provider_config, store, media, source
) -> None:
    fake.webhook_retries = 0
    hook = _hook_url()
    fake.hang_creates(20.0)  # the prediction is made; its answer comes too late for the child
    args = {
        "store": store.url,
        "media": media.media_dir,
        "staging": media.staging_url,
        "source": source.as_dict(),
        "hook": hook,
        "config": {**provider_config, "request_timeout_seconds": 60.0},
    }
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, json.dumps(args)], cwd=REPO_ROOT, env=dict(os.environ)
    )
    try:
        deadline = time.monotonic() + 30
        while not fake.created_count() and child.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert child.poll() is None, "the child should still be waiting for the create's answer"
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.kill()
        child.wait(10)
    assert child.returncode == -signal.SIGKILL
    [created] = fake.predictions
    [row] = store.for_job("j1")
    assert row.state == "creating" and row.prediction_id is None
    replicate = provider(webhooks=True)
    run = STEP_KINDS["image_edit"].run
    parked = run(_context(replicate, store, media, source, hook))
    assert isinstance(parked, Parked) and parked.prediction.prediction_id == created
    assert parked.prediction.id == row.id and parked.prediction.state == "parked"
    settled(store, replicate, parked.prediction)
    finished = run(_context(replicate, store, media, source, hook))
    assert isinstance(finished, Finished) and finished.intent_id == row.id
    assert finished.output["prediction_id"] == created and len(fake.creates) == 1
    assert [d.path for d in fake.downloads] == [f"/files/{created}/output.png"]
    assert not fake.cancels
    assert [r.state for r in store.for_job("j1")] == ["consuming"]
