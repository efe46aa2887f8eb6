"""`callback_url` on execute: where a job's final event goes as a signed webhook.

An `https` URL; plain `http` only to a loopback host, and only with
ALLOW_HTTP_CALLBACKS=on (development). Refused outright (422) when the bridge has no
CALLBACK_SIGNING_SECRET: an unsigned webhook would be worthless to its receiver. The
callbacks sensor (sensors/callbacks.py) sends it once the job is completed, failed for
good or cancelled.
"""

from __future__ import annotations

import ipaddress
import os
from urllib.parse import urlsplit

from flask import current_app, request

from bridge_api.auth import current_user
from bridge_api.errors import ApiError
from bridge_api.predictions import prediction_store
from wf_core.specs import WorkflowSpec
from wf_store.callbacks import CallbackStore

FIELD = "callback_url"
MAX_URL_LENGTH = 2000


def _setting(name: str) -> str:
    return str(current_app.config.get(name) or os.environ.get(name) or "")


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


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
        parts = urlsplit(url)
        host = parts.hostname or ""
        parts.port  # noqa: B018 (a bad port raises here)
    except ValueError:
        raise refuse("callback_url is not a URL") from None
    if not host or parts.username or parts.password:
        raise refuse("callback_url must be an absolute URL without credentials")
    if parts.scheme == "https":
        return url
    dev_http = _setting("ALLOW_HTTP_CALLBACKS").lower() == "on"
    if parts.scheme == "http" and dev_http and _loopback(host):
        return url
    raise refuse("callback_url must be https (plain http only to loopback in development)")


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
