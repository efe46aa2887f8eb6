"""One GraphQL request to dagster-webserver, and what its failures mean."""

from __future__ import annotations

import logging
from typing import Any

import httpx

from bridge_api.dagster_client.errors import DagsterError, DagsterUnavailable

log = logging.getLogger(__name__)


class GraphQLTransport:
    """Posts GraphQL documents to one endpoint over a kept-alive HTTP client."""

    def __init__(self, graphql_url: str, timeout: float = 10.0) -> None:
        self.graphql_url = graphql_url
        self.timeout = timeout
        self._http = httpx.Client(timeout=timeout)

    def query(self, document: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        """Run one GraphQL document; DagsterUnavailable when Dagster is unreachable or
        failing, DagsterError when it refuses the request."""
        try:
            response = self._http.post(
                self.graphql_url, json={"query": document, "variables": variables or {}}
            )
        except httpx.HTTPError as exc:
            raise DagsterUnavailable(f"Dagster is unreachable: {type(exc).__name__}") from exc
        if response.status_code >= 500 or response.status_code == 404:
            raise DagsterUnavailable(f"Dagster answered HTTP {response.status_code}")
        try:
            body = response.json()
        except ValueError:
            raise DagsterUnavailable("Dagster answered no JSON") from None
        if body.get("errors"):
            # The message may quote our query or server paths: it goes to the log only.
            log.error("GraphQL error: %s", body["errors"][0].get("message"))
            raise DagsterError("The orchestrator refused the request")
        return body["data"]
