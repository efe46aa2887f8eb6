"""The few Replicate HTTP calls we make, each raising our classified errors on failure."""

from __future__ import annotations

import functools
import math
import ssl
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import httpx

from resources.replicate_errors import error_from_response, error_from_transport


@functools.cache
def tls_context() -> ssl.SSLContext:
    """httpx's default TLS context, made once per process: loading the CA bundle costs
    ~60 ms of CPU, and each step opens its clients afresh."""
    return httpx.create_ssl_context()


class ReplicateApi:
    """Create, read and cancel predictions, and fetch their outputs, for one model."""

    def __init__(
        self, base_url: str, token: str, model: str, timeout: float, wait_seconds: int = 0
    ) -> None:
        self.model = model
        self.timeout = timeout
        self.wait_seconds = max(0, min(60, wait_seconds))
        self.client = httpx.Client(
            base_url=base_url.rstrip("/"),
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
            timeout=httpx.Timeout(timeout, connect=min(10.0, timeout)),
            verify=tls_context(),
        )
        # Output URLs live on another host: never send them our token.
        self.downloads = httpx.Client(
            timeout=httpx.Timeout(timeout, connect=min(10.0, timeout)),
            follow_redirects=True,
            verify=tls_context(),
        )

    def __enter__(self) -> ReplicateApi:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Close both connection pools."""
        self.client.close()
        self.downloads.close()

    def create(
        self,
        provider_model: str,
        provider_input: dict[str, Any],
        deadline_seconds: float,
        webhook: str | None = None,
        events: list[str] | None = None,
    ) -> dict[str, Any]:
        """Start a prediction; with `Prefer: wait` the answer may already be final."""
        name, _, version = provider_model.partition(":")
        body: dict[str, Any] = {"input": provider_input}
        if version:
            path, body["version"] = "/predictions", version
        else:
            path = f"/models/{name}/predictions"
        if webhook:
            body["webhook"] = webhook
            body["webhook_events_filter"] = events or ["completed"]
        # Replicate refuses deadlines under 5 s; we keep our own stricter one locally.
        headers = {"Cancel-After": f"{max(5, math.ceil(deadline_seconds))}s"}
        timeout = self.timeout
        if self.wait_seconds:
            headers["Prefer"] = f"wait={self.wait_seconds}"
            timeout += self.wait_seconds
        created = self._call("POST", path, json=body, headers=headers, timeout=timeout)
        assert created is not None  # only a lookup with missing_ok answers None
        return created

    def get(self, prediction_id: str) -> dict[str, Any] | None:
        """The prediction's current state, or None if Replicate does not know it."""
        return self._call("GET", f"/predictions/{prediction_id}", missing_ok=True)

    def list_since(self, since: datetime, max_pages: int) -> Iterator[list[dict[str, Any]]]:
        """Pages of the account's predictions created after `since`, newest first."""
        url: str | None = "/predictions"
        params: dict[str, str] | None = {"created_after": since.isoformat()}
        for _ in range(max_pages):
            if url is None:
                return
            page = self._call("GET", url, params=params)
            assert page is not None
            yield list(page.get("results") or [])
            url, params = page.get("next"), None

    def cancel(self, prediction_id: str) -> dict[str, Any] | None:
        """Ask Replicate to stop a prediction; a failure here is not worth raising."""
        try:
            return self._call("POST", f"/predictions/{prediction_id}/cancel", missing_ok=True)
        except Exception:
            return None

    def download(self, url: str) -> httpx.Response | None:
        """Fetch an output file; None when it is gone (404/410)."""
        try:
            response = self.downloads.get(url)
        except httpx.TransportError as exc:
            raise error_from_transport(exc, self.model) from exc
        if response.status_code in (404, 410):
            return None
        if response.status_code >= 400:
            raise error_from_response(
                response.status_code, response.headers, response.content, self.model
            )
        return response

    def _call(
        self, method: str, path: str, missing_ok: bool = False, **kwargs: Any
    ) -> dict[str, Any] | None:
        timeout = kwargs.pop("timeout", None)
        if timeout is not None:
            kwargs["timeout"] = httpx.Timeout(timeout, connect=min(10.0, timeout))
        try:
            response = self.client.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise error_from_transport(exc, self.model) from exc
        if missing_ok and response.status_code == 404:
            return None
        if response.status_code >= 400:
            raise error_from_response(
                response.status_code, response.headers, response.content, self.model
            )
        try:
            return response.json()
        except ValueError as exc:
            raise error_from_response(502, response.headers, response.content, self.model) from exc
