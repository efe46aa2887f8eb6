"""No double billing: a step run again finds its job's saved prediction, even after SIGKILL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from resources.model_provider import GenerationRequest
from tests.fakes import replicate_fixtures as fx
from tests.fakes.replicate_server import Fault, Script
from tests.fakes.sample_media import png_bytes
from wf_core.errors import WorkflowError
from wf_core.settings import REPO_ROOT

# The shared fixtures, bound here so that they stay local to these modules.
fake, provider, provider_config = fx.fake, fx.provider, fx.provider_config
ledger, media, source = fx.ledger, fx.media, fx.source


def request(source, model="nano-banana", task="image_edit", prompt="a hat") -> GenerationRequest:
    """A generation request for step "edit" of job j1."""
    return GenerationRequest("j1", "edit", task, model, prompt, source)


def test_retry_keeps_waiting_on_the_saved_prediction(fake, provider, media, source) -> None:
    fake.fail_gets(1, Fault(503, {"title": "Service Unavailable"}))
    with pytest.raises(WorkflowError, match="503"):
        provider().generate(request(source), media)
    result = provider().generate(request(source), media)
    assert len(fake.creates) == 1 and list(fake.predictions) == [result.prediction_id]
    assert result.data == png_bytes()


def test_saved_success_is_taken_without_a_new_prediction(fake, provider, media, source) -> None:
    first = provider().generate(request(source), media)
    again = provider().generate(request(source), media)
    assert again.prediction_id == first.prediction_id and len(fake.creates) == 1


def test_failed_prediction_is_replaced_on_retry(fake, provider, media, source) -> None:
    fake.script = Script(outcome="failed", error="CUDA out of memory")
    with pytest.raises(WorkflowError):
        provider().generate(request(source), media)
    fake.script = Script()
    result = provider().generate(request(source), media)
    assert len(fake.creates) == 2 and fake.predictions[result.prediction_id].status == "succeeded"


def test_expired_output_is_made_again(fake, provider, media, source) -> None:
    provider().generate(request(source), media)
    fake.outputs_expired = True
    with pytest.raises(WorkflowError, match="gone"):
        provider().generate(request(source), media)
    fake.outputs_expired = False
    provider().generate(request(source), media)
    assert len(fake.creates) == 2


def test_changed_input_is_not_reused(fake, provider, media, source) -> None:
    fake.script = Script(outcome="never")
    fake.fail_gets(1, Fault(503, {"title": "Service Unavailable"}))
    with pytest.raises(WorkflowError):
        provider().generate(request(source, prompt="old"), media)
    fake.script = Script()
    result = provider().generate(request(source, prompt="new"), media)
    old, new = fake.predictions
    assert [c.body["input"]["prompt"] for c in fake.creates] == ["old", "new"]
    assert result.prediction_id == new and fake.predictions[new].status == "succeeded"
    # The prediction asked for the old prompt is no use any more: it is stopped, not paid on.
    assert [c.path for c in fake.cancels] == [f"/v1/predictions/{old}/cancel"]
    assert fake.predictions[old].status == "canceled"


CHILD = """
import json, sys
import dagster as dg
from resources.local_media import LocalMediaStorage
from resources.media_storage import StoredMedia
from resources.model_provider import GenerationRequest
from resources.replicate_provider import ReplicateModelProvider

args = json.loads(sys.argv[1])
resource = ReplicateModelProvider(
    api_token=dg.EnvVar("REPLICATE_API_TOKEN"),
    base_url=dg.EnvVar("REPLICATE_API_BASE_URL"),
    ledger_url=args["ledger"],
    **args["config"],
)
source = StoredMedia(**args["source"])
request = GenerationRequest("j1", "edit", "image_edit", "nano-banana", "a hat", source)
with resource.process_config_and_initialize_cm() as provider:
    provider.generate(request, LocalMediaStorage(media_dir=args["media"]))
"""


def test_sigkill_while_waiting_does_not_pay_twice(
    fake, provider, provider_config, ledger, media, source
) -> None:
    fake.script = Script(outcome="never")
    args = {
        "ledger": ledger.root,
        "media": media.media_dir,
        "source": source.as_dict(),
        "config": provider_config,
    }
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, json.dumps(args)], cwd=REPO_ROOT, env=dict(os.environ)
    )
    try:
        deadline = time.monotonic() + 20
        while len(fake.gets) < 3 and child.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert child.poll() is None, "the child should still be waiting on its prediction"
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.kill()
        child.wait(10)
    assert child.returncode == -signal.SIGKILL
    [created] = fake.predictions
    assert ledger.read("j1", "edit").prediction_id == created
    fake.release()
    result = provider().generate(request(source), media)
    assert len(fake.creates) == 1 and result.prediction_id == created
    assert result.data == png_bytes() and fake.predictions[created].status == "succeeded"
    assert {g.path for g in fake.gets} == {f"/v1/predictions/{created}"}
    assert [d.path for d in fake.downloads] == [f"/files/{created}/output.png"]
    assert not fake.cancels
