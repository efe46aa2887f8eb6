"""A generation step never waits for its model: it parks, and a later call finishes it.

`make_generation_run` driven directly, with the offline provider, local media and a
prediction store on SQLite; the provider's call log says what would have been billed.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from resources.local_media import LocalMediaStorage
from resources.local_provider import LocalModelProvider
from resources.media_storage import StoredMedia
from resources.model_provider import GenerationRequest
from tests.conftest import SAMPLE_IMAGE, migrated
from tests.fakes.clock import FakeClock
from wf_assets.kinds.base import StepContext, Upstream
from wf_assets.kinds.generate import Finished, Parked, make_generation_run
from wf_core.errors import HardError, RetryableError, WorkflowError
from wf_core.polling import PollSettings
from wf_store.predictions import Prediction, PredictionStore

JOB, STEP, MODEL = "j1", "edit", "nano-banana"
HOUR = 3600.0
run_edit = make_generation_run("image_edit", "edited_image_url", "image", "Editing...")


@dataclass
class Bench:
    """The step's resources in one temp folder, and what the provider was asked."""

    root: Path
    store: PredictionStore
    clock: FakeClock
    media: LocalMediaStorage
    source: StoredMedia
    progress: list[tuple[int, str]] = field(default_factory=list)

    @property
    def call_log(self) -> Path:
        return self.root / "calls.jsonl"

    @property
    def fault_file(self) -> Path:
        return self.root / "faults.json"

    def provider(self, latency: float = 0.0) -> LocalModelProvider:
        """The offline provider with this bench's call log and faults."""
        return LocalModelProvider(
            latency_seconds=latency, call_log=str(self.call_log), fault_file=str(self.fault_file)
        )

    def context(self, latency: float = 0.0, prompt: str = "a hat", run_id: str = "r1"):
        """Step "edit" of job j1 (nano-banana edits the upload), as a run would build it."""
        upload = {
            "image_url": self.source.url,
            "public_id": self.source.public_id,
            "format": self.source.format,
            "resource_type": "image",
            "bytes": self.source.bytes,
        }
        return StepContext(
            job_id=JOB,
            step=STEP,
            model=MODEL,
            prompt=prompt,
            upstream=[Upstream("upload", "input_upload", upload)],
            provider=self.provider(latency),
            media=self.media,
            store=self.store,
            run_id=run_id,
            attempt=1,
            workflow_id="wf",
            webhook_url=None,
            poll_settings=PollSettings(),
            clock=self.clock,
            progress=lambda percent, message: self.progress.append((percent, message)),
        )

    def calls(self) -> list[dict]:
        """Every create the provider saw (a refused one has created=False)."""
        if not self.call_log.exists():
            return []
        return [json.loads(line) for line in self.call_log.read_text().splitlines()]

    def intend(self, call) -> Prediction:
        """The intent a first run (r1) records before its create call."""
        return self.store.intend(
            job_id=JOB,
            step=STEP,
            attempt=1,
            workflow_id="wf",
            provider="local",
            model=MODEL,
            provider_model=call.provider_model,
            input_digest=call.digest,
            provider_input=call.provider_input,
            run_id="r1",
        )

    def rows(self) -> list[Prediction]:
        """Every prediction row of the job, oldest first."""
        return self.store.for_job(JOB)

    def row(self, intent_id: str) -> Prediction:
        found = self.store.get(intent_id)
        assert found is not None
        return found


@pytest.fixture
def bench(tmp_path: Path) -> Iterator[Bench]:
    """Offline resources; the store's clock is a FakeClock a minute behind the wall clock
    (the offline provider ends predictions by the wall clock: a latency of 0 is over at
    once, one of an hour is still running), moved by hand between intents."""
    clock = FakeClock(start=time.time() - 60)
    store = PredictionStore(migrated(f"sqlite:///{tmp_path / 'state.db'}"), clock=clock)
    media = LocalMediaStorage(
        media_dir=str(tmp_path / "media"), staging_url=str(tmp_path / "staged")
    )
    source = media.put(f"jobs/{JOB}/upload", SAMPLE_IMAGE.read_bytes(), "jpg", "image")
    yield Bench(tmp_path, store, clock, media, source)
    store.close()


def test_without_latency_the_step_finishes_in_one_call(bench: Bench) -> None:
    outcome = run_edit(bench.context(latency=0))
    assert isinstance(outcome, Finished)
    [row] = bench.rows()
    # Consumed only once the run has written its checkpoint (the asset does that).
    assert outcome.intent_id == row.id and row.state == "consuming" and row.run_id == "r1"
    assert row.completed_by == "create" and row.provider_status == "succeeded"
    output = outcome.output
    assert output["public_id"] == f"jobs/{JOB}/{STEP}" and output["format"] == "png"
    assert output["edited_image_url"] == f"/media/jobs/{JOB}/{STEP}.png"
    assert output["model_used"] == MODEL and output["prompt"] == "a hat"
    assert output["provider"] == "local" and output["prediction_id"] == row.prediction_id
    assert bench.media.path_of(output["public_id"], "png").stat().st_size == output["bytes"]
    [call] = bench.calls()
    assert call["intent"] == row.id and call["created"] is True
    assert bench.progress[-1] == (100, "Output stored")


def test_with_latency_the_step_parks(bench: Bench) -> None:
    outcome = run_edit(bench.context(latency=HOUR))
    assert isinstance(outcome, Parked)
    [row] = bench.rows()
    assert outcome.prediction.id == row.id and row.state == "parked"
    assert row.provider_status == "starting" and row.prediction_id == f"local-{row.id}"
    # The offline provider says when it will be done: the first poll is then.
    assert row.expected_at == pytest.approx(row.created_at + HOUR)
    assert row.next_poll_at == row.expected_at
    assert [c["intent"] for c in bench.calls()] == [row.id]
    assert not bench.media.path_of(f"jobs/{JOB}/{STEP}", "png").exists()


def test_called_again_while_parked_it_parks_and_creates_nothing(bench: Bench) -> None:
    first = run_edit(bench.context(latency=HOUR))
    bench.clock.advance(5)
    again = run_edit(bench.context(latency=HOUR, run_id="r2"))
    assert isinstance(first, Parked) and isinstance(again, Parked)
    assert again.prediction.id == first.prediction.id
    assert [r.state for r in bench.rows()] == ["parked"] and len(bench.calls()) == 1


@pytest.mark.parametrize("handed_off", [False, True], ids=["completed", "handed_off"])
def test_once_completed_the_next_call_finishes(bench: Bench, handed_off: bool) -> None:
    parked = run_edit(bench.context(latency=HOUR))
    assert isinstance(parked, Parked)
    intent = parked.prediction
    bench.store.apply_provider_update({"id": intent.prediction_id, "status": "succeeded"}, "poll")
    if handed_off:
        bench.store.hand_off([intent.id])
    finished = run_edit(bench.context(latency=HOUR, run_id="r2"))
    assert isinstance(finished, Finished) and finished.intent_id == intent.id
    assert finished.output["prediction_id"] == intent.prediction_id
    row = bench.row(intent.id)
    assert row.state == "consuming" and row.run_id == "r2" and row.completed_by == "poll"
    assert len(bench.calls()) == 1


@pytest.mark.parametrize("latency,outcome", [(HOUR, Parked), (0.0, Finished)])
def test_a_create_logged_before_a_crash_is_found_not_made_again(
    bench: Bench, latency: float, outcome: type
) -> None:
    ctx = bench.context(latency=latency)
    request = GenerationRequest(JOB, STEP, "image_edit", MODEL, "a hat", bench.source)
    call = ctx.provider.prepare(request, bench.media)
    intent = bench.intend(call)
    ctx.provider.submit(call, intent, None)  # the run died before recording the answer
    assert bench.row(intent.id).state == "creating"
    result = run_edit(bench.context(latency=latency, run_id="r2"))
    assert isinstance(result, outcome)
    [row] = bench.rows()
    assert row.id == intent.id and row.prediction_id == f"local-{intent.id}"
    assert row.state == ("parked" if outcome is Parked else "consuming")
    assert [c["intent"] for c in bench.calls()] == [intent.id]


def test_an_intent_whose_create_never_left_is_created_under_the_same_row(bench: Bench) -> None:
    ctx = bench.context(latency=HOUR)
    request = GenerationRequest(JOB, STEP, "image_edit", MODEL, "a hat", bench.source)
    call = ctx.provider.prepare(request, bench.media)
    intent = bench.intend(call)  # the run died before submitting
    result = run_edit(bench.context(latency=HOUR, run_id="r2"))
    assert isinstance(result, Parked) and result.prediction.id == intent.id
    assert [c["intent"] for c in bench.calls()] == [intent.id]


def test_a_changed_prompt_abandons_the_old_prediction(bench: Bench) -> None:
    old = run_edit(bench.context(latency=HOUR, prompt="a hat"))
    bench.clock.advance(5)
    new = run_edit(bench.context(latency=HOUR, prompt="a cap"))
    assert isinstance(old, Parked) and isinstance(new, Parked)
    assert new.prediction.id != old.prediction.id
    first, second = bench.rows()
    assert (first.id, first.state) == (old.prediction.id, "abandoned")
    assert first.error == "the step's model or input changed"
    assert (second.id, second.state) == (new.prediction.id, "parked")
    assert [c["intent"] for c in bench.calls()] == [first.id, second.id]
    assert second.provider_input["prompt"] == "a cap"


@pytest.mark.parametrize(
    "update,error_class,error_type",
    [
        ({"status": "failed", "error": "boom"}, HardError, "internal"),
        ({"status": "canceled"}, RetryableError, "timeout"),
    ],
    ids=["failed", "canceled"],
)
def test_a_prediction_that_ended_without_output_raises_its_failure(
    bench: Bench, update: dict, error_class: type[WorkflowError], error_type: str
) -> None:
    parked = run_edit(bench.context(latency=HOUR))
    assert isinstance(parked, Parked)
    intent = parked.prediction
    bench.store.apply_provider_update({"id": intent.prediction_id, **update}, "webhook")
    with pytest.raises(error_class) as caught:
        run_edit(bench.context(latency=HOUR, run_id="r2"))
    assert caught.value.error_type == error_type
    assert caught.value.details["provider"] == "local"
    assert bench.row(intent.id).state == "consumed" and len(bench.calls()) == 1


@pytest.mark.parametrize(
    "error_type,error_class",
    [("server_unavailable", RetryableError), ("content_rejected", HardError)],
)
def test_a_refused_create_abandons_its_intent(
    bench: Bench, error_type: str, error_class: type[WorkflowError]
) -> None:
    bench.fault_file.write_text(json.dumps({"image_edit": {"error_type": error_type, "times": 1}}))
    with pytest.raises(error_class) as caught:
        run_edit(bench.context(latency=0))
    assert caught.value.error_type == error_type
    [refused] = bench.rows()
    assert refused.state == "abandoned" and refused.error == f"create refused: {error_type}"
    assert [c["created"] for c in bench.calls()] == [False]
    # The next attempt records a new intent and creates its prediction.
    bench.clock.advance(5)
    retried = run_edit(bench.context(latency=0, run_id="r2"))
    assert isinstance(retried, Finished)
    first, second = bench.rows()
    assert first.id == refused.id and retried.intent_id == second.id != refused.id
    assert [c["created"] for c in bench.calls()] == [False, True]


@pytest.mark.parametrize(
    "change,error_type",
    [({"upstream": []}, "invalid_input"), ({"model": None}, "model_not_found")],
    ids=["no-input", "no-model"],
)
def test_a_step_without_input_or_model_fails_before_any_call(
    bench: Bench, change: dict, error_type: str
) -> None:
    ctx = bench.context()
    for name, value in change.items():
        setattr(ctx, name, value)
    with pytest.raises(WorkflowError) as caught:
        run_edit(ctx)
    assert caught.value.error_type == error_type
    assert not bench.rows() and not bench.calls()
