"""The metrics sensor's fold on a real instance: each finished run counted once, the job
index follows the jobs, and /metrics renders what was folded."""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

from bridge_api import create_app
from sensors.metrics_sensor import fold_metrics
from tests.conftest import Workbench, run_job
from wf_core.job_ids import new_job_id
from wf_core.tags import job_tags
from wf_store.job_index import JobFilter, JobIndex
from wf_store.metrics import MetricsStore
from wf_store.predictions import PredictionStore

WORKFLOW = "img-edit-to-video"


@pytest.fixture
def store(bench: Workbench) -> MetricsStore:
    return MetricsStore(PredictionStore(bench.state_db_url))


def _samples(bench: Workbench) -> dict:
    app = create_app({"AUTH_MODE": "disabled", "STATE_DB_URL": bench.state_db_url})
    text = app.test_client().get("/metrics").get_data(as_text=True)
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def _tagged(spec) -> dict:
    """A job id and our run tags for it, as the bridge gives a job's first run."""
    job_id = new_job_id()
    return {"job_id": job_id, "tags": job_tags(spec.id, job_id, "user-1", "bridge")}


def test_a_failed_and_a_completed_job_are_folded_once(instance, specs, bench, store) -> None:
    spec = specs[WORKFLOW]
    bench.set_faults({"nano-banana": {"error_type": "content_rejected", "times": 1}})
    failed = run_job(spec, instance, bench.resources(), **_tagged(spec))
    assert not failed.success
    done = run_job(spec, instance, bench.resources(), **_tagged(spec))
    assert done.success
    assert fold_metrics(instance, specs, store, now=1e10) >= 2
    # A second tick re-reads the overlap: nothing is counted twice.
    fold_metrics(instance, specs, store, now=1e10)
    samples = _samples(bench)
    started = ("wf_jobs_started_total", frozenset({("workflow", WORKFLOW)}))
    assert samples[started] == 2
    finished = {
        (dict(labels)["status"], dict(labels)["error_type"]): value
        for (name, labels), value in samples.items()
        if name == "wf_jobs_finished_total"
    }
    assert finished == {("completed", ""): 1, ("failed", "content_rejected"): 1}
    failures = [k for k in samples if k[0] == "wf_step_failures_total"]
    assert [dict(labels)["step"] for _, labels in failures] == ["image_edit"]
    buckets = [v for (n, ls), v in samples.items() if n == "wf_step_duration_seconds_bucket"]
    assert buckets and all(v >= 0 for v in buckets)
    index = JobIndex(store.store)
    [row] = index.find(JobFilter(status="failed"))
    assert row.error_type == "content_rejected" and row.workflow_id == WORKFLOW
    assert len(index.find(JobFilter(workflow_id=WORKFLOW))) == 2
