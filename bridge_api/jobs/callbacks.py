"""`callback_url` on execute: where a job's final event goes as a signed webhook.

An `https` URL that reaches a public address only (wf_core.outbound: loopback, private,
link-local, unspecified, multicast, reserved and IPv4-mapped addresses are refused, in
every spelling, at submit and again at delivery). An operator may allow specific hosts
(CALLBACK_ALLOWED_HOSTS, `host` or `host:port`, comma-separated); plain `http` goes only
to those, and only with ALLOW_HTTP_CALLBACKS=on (development). Refused outright (422)
when the bridge has no CALLBACK_SIGNING_SECRET: an unsigned webhook would be worthless
to its receiver. The callbacks sensor (sensors/callbacks.py) sends it once the job is
completed, failed for good or cancelled.
"""

from __future__ import annotations

from flask import current_app, request

from bridge_api.http.auth import current_user
from bridge_api.http.errors import ApiError
from bridge_api.stores.predictions import prediction_store
from wf_core import outbound
from wf_core.outbound import allowed_callback_hosts
from wf_core.specs import WorkflowSpec
from wf_store.callbacks import CallbackStore

FIELD = "callback_url"
MAX_URL_LENGTH = 2000


def _setting(name: str) -> str:
    return str(current_app.config.get(name) or "")


def requested_callback() -> str | None:
    """The request's checked `callback_url`, or None; 422 if it cannot be accepted."""
    url = (request.form.get(FIELD) or "").strip()
    if not url:
        return None

    def refuse(message: str) -> ApiError:
        return ApiError(422, "invalid_options", message, field=FIELD)

    if not _setting("CALLBACK_SIGNING_SECRET"):
        raise refuse("callback_url is not available: the bridge has no signing secret")
    if len(url) > MAX_URL_LENGTH:
        raise refuse("callback_url is too long")
    try:
        outbound.check_url(
            url,
            outbound.system_resolve,
            allowed_callback_hosts(_setting("CALLBACK_ALLOWED_HOSTS")),
            allow_http=_setting("ALLOW_HTTP_CALLBACKS").lower() == "on",
        )
    except outbound.RefusedDestination as exc:
        raise refuse(str(exc)) from None
    return url


def callback_store() -> CallbackStore:
    """Job webhooks, on the app's state database."""
    return CallbackStore(prediction_store().engine)


def watch_job(spec: WorkflowSpec, job_id: str, url: str | None) -> None:
    """Remember that the new job's final event goes to `url`."""
    if url:
        callback_store().watch(job_id, current_user(), spec.id, url)


def forget_job(job_id: str, url: str | None) -> None:
    """The job was never launched: nothing to send."""
    if url:
        callback_store().forget(job_id)
