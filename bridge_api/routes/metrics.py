"""`GET /metrics`: the engine's figures in Prometheus' text format.

Nothing is counted in this process: the metrics sensor folds run events into rows of the
state database (wf_store.metrics), and every bridge worker renders the same rows, plus a
few bounded live counts. A scrape costs the same at a thousand jobs as at fifty thousand.
Not behind user auth; `METRICS_TOKEN`, when set, is the bearer token it requires.
"""

from __future__ import annotations

import hmac
from collections import defaultdict
from collections.abc import Iterable

from flask import Blueprint, Response, current_app, request
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from sqlalchemy.exc import SQLAlchemyError

from bridge_api.http.errors import ApiError
from bridge_api.stores.predictions import prediction_store
from wf_store.metrics import COUNTER, HISTOGRAM, METRICS, MetricsStore, Series

bp = Blueprint("metrics", __name__)


def _families(series: Iterable[Series]) -> list[Metric]:
    """Rows as metric families: counters with `_total`, histograms with every bucket."""
    rows: dict[str, list[Series]] = defaultdict(list)
    for row in series:
        rows[row.name].append(row)
    families = []
    for definition in METRICS.values():
        name = definition.name
        if definition.kind == COUNTER:
            family = Metric(name.removesuffix("_total"), definition.help, "counter")
            for row in rows.get(name, []):
                family.add_sample(name, row.labels, row.value)
        elif definition.kind == HISTOGRAM:
            family = Metric(name, definition.help, "histogram")
            _histogram(family, definition.buckets, rows)
        else:
            family = Metric(name, definition.help, "gauge")
            for row in rows.get(name, []):
                family.add_sample(name, row.labels, row.value)
        families.append(family)
    return families


def _histogram(family: Metric, buckets: tuple[float, ...], rows: dict[str, list[Series]]) -> None:
    name = family.name
    counts = {_key(r.labels): r.value for r in rows.get(f"{name}_bucket", [])}
    sums = {_key(r.labels): r.value for r in rows.get(f"{name}_sum", [])}
    for row in rows.get(f"{name}_count", []):
        # A bucket never reached has no row: its cumulative count is 0.
        for bound in [repr(float(b)) for b in buckets] + ["+Inf"]:
            labels = {**row.labels, "le": bound}
            family.add_sample(f"{name}_bucket", labels, counts.get(_key(labels), 0.0))
        family.add_sample(f"{name}_sum", row.labels, sums.get(_key(row.labels), 0.0))
        family.add_sample(f"{name}_count", row.labels, row.value)


def _key(labels: dict[str, str]) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(labels.items()))


class _StoredCollector:
    """A prometheus_client collector over one read of the stored rows."""

    def __init__(self, store: MetricsStore, local: list[Series]) -> None:
        self.store = store
        self.local = local

    def collect(self) -> list[Metric]:
        """The families of this scrape."""
        return _families([*self.store.series(), *self.store.live(), *self.local])


def _check_token() -> None:
    expected = current_app.config.get("METRICS_TOKEN")
    if not expected:
        return
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(
        token.strip().encode(), str(expected).encode()
    ):
        raise ApiError(401, "invalid_token", "GET /metrics needs the metrics bearer token")


@bp.get("/metrics")
def metrics():
    """Every metric in Prometheus' text format."""
    _check_token()
    registry = CollectorRegistry(auto_describe=False)
    invalid = len(current_app.extensions["specs"].errors())
    local = [Series("wf_spec_files_invalid", {}, invalid)]
    registry.register(_StoredCollector(MetricsStore(prediction_store()), local))
    try:
        body = generate_latest(registry)
    except SQLAlchemyError:
        raise ApiError(
            503, "store_unavailable", "The state database cannot be read", {"Retry-After": "5"}
        ) from None
    return Response(body, content_type=CONTENT_TYPE_LATEST)
