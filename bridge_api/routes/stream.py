"""`GET /jobs/<job_id>/stream`: the job's history and live progress as Server-Sent Events,
from the job's shared feed (streaming/feeds.py; the events are streaming/events.py)."""

from __future__ import annotations

from flask import Blueprint, Response, current_app, request

from bridge_api.http.auth import require_user
from bridge_api.http.errors import ApiError
from bridge_api.jobs.lookup import catalog, gateway, job_not_found, owned_spec
from bridge_api.jobs.read_model import read_row
from bridge_api.streaming.events import Delivered
from bridge_api.streaming.feeds import StreamHub, StreamsFull, client_gone, watch
from wf_core import tags as t
from wf_core.job_ids import is_job_id
from wf_core.specs import WorkflowSpec

bp = Blueprint("stream", __name__)


def _owned_spec(hub: StreamHub, job_id: str) -> WorkflowSpec:
    """The caller's job's workflow, as `load_owned_job` decides, with the job's owner read
    once per process: a thousand watchers arriving at once cost Dagster one read."""
    if not is_job_id(job_id):
        raise job_not_found(job_id)

    def load() -> tuple[str | None, str | None]:
        row = read_row(job_id)  # the read model; a job from before it, from Dagster
        if row is not None:
            record = row.job_record()
            first = record.first_run()
            runs = sorted(record.runs.values(), key=lambda r: (r.created_at, r.run_id))
            if first is not None:
                return first.tags.get(t.USER), runs[-1].tags.get(t.WORKFLOW)
        snapshot = gateway().snapshot(job_id, catalog().specs_for_job(job_id))
        if not snapshot.runs:
            raise job_not_found(job_id)
        return snapshot.owner, snapshot.workflow_id

    return owned_spec(job_id, *hub.owners.get(job_id, load))


@bp.get("/jobs/<job_id>/stream")
@require_user(allow_query_token=True)
def stream(job_id: str):
    """Server-Sent Events for one of the caller's jobs, from the job's shared feed."""
    hub: StreamHub = current_app.extensions["streams"]
    try:
        release = hub.acquire()
    except StreamsFull:
        retry_after = current_app.config["STREAM_RETRY_AFTER_SECONDS"]
        raise ApiError(
            503,
            "too_many_streams",
            "This server streams to as many clients as it can; try again shortly.",
            headers={"Retry-After": str(retry_after)},
        ) from None
    try:
        spec = _owned_spec(hub, job_id)
    except BaseException:
        release()
        raise
    delivered = Delivered.parse(request.headers.get("Last-Event-ID"))
    heartbeat = current_app.config["STREAM_HEARTBEAT_SECONDS"]
    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    body = watch(hub, spec, job_id, delivered, heartbeat, client_gone(request.environ))
    response = Response(body, mimetype="text/event-stream", headers=headers)
    # Called by the server when the response ends or the client goes away, even when the
    # body was never started: the slot never outlives the connection.
    response.call_on_close(release)
    return response
