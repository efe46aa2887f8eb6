"""Metrics kept as rows: the metrics sensor folds run events in, `/metrics` reads them out.

A scrape must not read every run: its cost would grow with the jobs stored. Instead the
metrics sensor folds each run once (when it finishes) into counters, histogram buckets
and gauges, one row per series in `wf_metrics`, in the same transaction as the runs it
folded (`wf_metrics_folded`) and its cursor (`wf_metrics_state`). Any number of bridge
processes read the same rows, so values are consistent across workers.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from wf_store.predictions import CREATING, LIVE, PARKED, PredictionStore
from wf_store.schema import (
    job_index,
    metric_folded,
    metric_series,
    metric_state,
    owner_events,
    predictions,
    waiting,
)

COUNTER, GAUGE, HISTOGRAM = "counter", "gauge", "histogram"
DURATION_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600)


@dataclass(frozen=True)
class MetricDef:
    """One metric family: its kind, help text and (histograms) bucket bounds."""

    name: str
    kind: str
    help: str
    buckets: tuple[float, ...] = ()


METRICS: dict[str, MetricDef] = {
    m.name: m
    for m in (
        MetricDef("wf_jobs_started_total", COUNTER, "Jobs executed, by workflow."),
        MetricDef(
            "wf_jobs_finished_total",
            COUNTER,
            "Jobs reaching completed, failed or cancelled, by workflow, status and error type.",
        ),
        MetricDef("wf_jobs", GAUGE, "Jobs by workflow and current status."),
        MetricDef(
            "wf_job_duration_seconds",
            HISTOGRAM,
            "Time from a job's creation to its end, by workflow and status.",
            DURATION_BUCKETS,
        ),
        MetricDef("wf_runs_total", COUNTER, "Finished runs by workflow, launcher and outcome."),
        MetricDef(
            "wf_resumes_total",
            COUNTER,
            "Runs resuming a job from its checkpoints (attempt > 1), by launcher and outcome.",
        ),
        MetricDef(
            "wf_auto_retries_total",
            COUNTER,
            "Runs launched by the retry sensor, by workflow and outcome.",
        ),
        MetricDef(
            "wf_step_failures_total",
            COUNTER,
            "Step failures by workflow, step, error type, provider and model.",
        ),
        MetricDef(
            "wf_step_duration_seconds",
            HISTOGRAM,
            "Step execution time by workflow, step and outcome.",
            DURATION_BUCKETS,
        ),
        MetricDef(
            "wf_provider_latency_seconds",
            HISTOGRAM,
            "Time from asking a provider for a prediction to its end, by provider and model.",
            (0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600),
        ),
        MetricDef("wf_run_queue_depth", GAUGE, "Runs queued in Dagster, waiting to start."),
        MetricDef("wf_runs_in_progress", GAUGE, "Runs starting or started in Dagster."),
        MetricDef("wf_breaker_open", GAUGE, "1 while a quota breaker (provider/model) is open."),
        MetricDef(
            "wf_breaker_opened_timestamp_seconds",
            GAUGE,
            "When an open breaker opened (epoch seconds).",
        ),
        MetricDef("wf_metrics_folded_timestamp_seconds", GAUGE, "When the counters last moved."),
        # Read at scrape time (MetricsStore.live), not folded.
        MetricDef(
            "wf_predictions_live", GAUGE, "Predictions not yet consumed, by state, provider."
        ),
        MetricDef("wf_jobs_waiting_on_provider", GAUGE, "Steps waiting on a provider's answer."),
        MetricDef("wf_retries_waiting", GAUGE, "Failed runs waiting for a retry, by error type."),
        # Read by the bridge from the spec folder it serves.
        MetricDef("wf_spec_files_invalid", GAUGE, "Spec files skipped as invalid."),
        MetricDef(
            "wf_jobs_ownerless_total",
            COUNTER,
            "Jobs the owner check found without an owner, by what it did (repaired, failed).",
        ),
    )
}


def labels_key(labels: Mapping[str, Any]) -> str:
    """The canonical text of a label set (its row key)."""
    return json.dumps({k: str(v) for k, v in labels.items()}, sort_keys=True)


@dataclass
class Fold:
    """The changes of one sensor tick, applied in one transaction."""

    increments: dict[tuple[str, str], float] = field(default_factory=dict)
    gauges: dict[tuple[str, str], float] = field(default_factory=dict)
    # Gauge families whose series not set in `gauges` drop to 0 (a breaker that closed).
    reset: set[str] = field(default_factory=set)
    folded_runs: list[str] = field(default_factory=list)
    state: dict[str, str] = field(default_factory=dict)
    # Rows of `wf_job_index` to write (whole rows, keyed by job_id).
    jobs: dict[str, dict[str, Any]] = field(default_factory=dict)

    def inc(self, name: str, labels: Mapping[str, Any], by: float = 1.0) -> None:
        """Add `by` to a counter (or a gauge kept by deltas)."""
        key = (name, labels_key(labels))
        self.increments[key] = self.increments.get(key, 0.0) + by

    def observe(self, name: str, labels: Mapping[str, Any], value: float) -> None:
        """One histogram observation: its buckets, sum and count."""
        for bound in METRICS[name].buckets:
            if value <= bound:
                self.inc(f"{name}_bucket", {**labels, "le": _bound_text(bound)})
        self.inc(f"{name}_bucket", {**labels, "le": "+Inf"})
        self.inc(f"{name}_sum", labels, value)
        self.inc(f"{name}_count", labels)

    def set(self, name: str, labels: Mapping[str, Any], value: float) -> None:
        """Set a gauge."""
        self.gauges[(name, labels_key(labels))] = float(value)


def _bound_text(bound: float) -> str:
    return repr(float(bound))


@dataclass(frozen=True)
class Series:
    """One stored series."""

    name: str
    labels: dict[str, str]
    value: float


class MetricsStore:
    """`wf_metrics*` on the engine's state database (same engine as the prediction store)."""

    def __init__(self, store: PredictionStore) -> None:
        self.store = store
        self.engine = store.engine

    def state(self, key: str) -> str | None:
        """A stored cursor value."""
        query = sa.select(metric_state.c.value).where(metric_state.c.key == key)
        with self.engine.connect() as conn:
            return conn.execute(query).scalar_one_or_none()

    def folded(self, run_ids: Iterable[str]) -> set[str]:
        """Which of these runs were folded already."""
        ids = list(run_ids)
        if not ids:
            return set()
        query = sa.select(metric_folded.c.run_id).where(metric_folded.c.run_id.in_(ids))
        with self.engine.connect() as conn:
            return set(conn.execute(query).scalars())

    def apply(self, fold: Fold, now: float) -> None:
        """Everything of one tick, or nothing (a run folded meanwhile by another process
        raises IntegrityError: the tick is dropped and its runs folded next time)."""
        insert = postgresql.insert if self.engine.dialect.name == "postgresql" else sqlite.insert
        with self.engine.begin() as conn:
            if fold.folded_runs:
                rows = [{"run_id": r, "folded_at": now} for r in fold.folded_runs]
                conn.execute(metric_folded.insert(), rows)
            for (name, labels), delta in sorted(fold.increments.items()):
                stmt = insert(metric_series).values(
                    name=name, labels=labels, value=delta, updated_at=now
                )
                conn.execute(
                    stmt.on_conflict_do_update(
                        index_elements=["name", "labels"],
                        set_={"value": metric_series.c.value + delta, "updated_at": now},
                    )
                )
            for name in sorted(fold.reset):
                conn.execute(
                    metric_series.update()
                    .where(metric_series.c.name == name)
                    .values(value=0.0, updated_at=now)
                )
            for (name, labels), value in sorted(fold.gauges.items()):
                stmt = insert(metric_series).values(
                    name=name, labels=labels, value=value, updated_at=now
                )
                conn.execute(
                    stmt.on_conflict_do_update(
                        index_elements=["name", "labels"],
                        set_={"value": value, "updated_at": now},
                    )
                )
            for job_id, row in sorted(fold.jobs.items()):
                stmt = insert(job_index).values(job_id=job_id, **row)
                conn.execute(stmt.on_conflict_do_update(index_elements=["job_id"], set_=row))
            for key, text in sorted(fold.state.items()):
                stmt = insert(metric_state).values(key=key, value=text)
                conn.execute(
                    stmt.on_conflict_do_update(index_elements=["key"], set_={"value": text})
                )

    def series(self) -> list[Series]:
        """Every stored series (their number follows the label values, not the jobs)."""
        query = sa.select(metric_series.c.name, metric_series.c.labels, metric_series.c.value)
        with self.engine.connect() as conn:
            return [
                Series(name, json.loads(labels), float(value))
                for name, labels, value in conn.execute(query)
            ]

    def live(self) -> list[Series]:
        """Figures read at scrape time, each a bounded indexed query: predictions still at
        a provider (by state and provider) and retries waiting (by reason)."""
        c, w = predictions.c, waiting.c
        by_state = (
            sa.select(c.state, c.provider, sa.func.count())
            .where(c.state.in_(LIVE))
            .group_by(c.state, c.provider)
        )
        by_reason = sa.select(w.error_type, sa.func.count()).group_by(w.error_type)
        found: list[Series] = []
        at_provider: dict[str, float] = {}
        with self.engine.connect() as conn:
            for state, provider, count in conn.execute(by_state):
                labels = {"state": state, "provider": provider}
                found.append(Series("wf_predictions_live", labels, count))
                if state in (CREATING, PARKED):
                    at_provider[provider] = at_provider.get(provider, 0) + count
            for reason, count in conn.execute(by_reason):
                found.append(Series("wf_retries_waiting", {"reason": reason}, count))
            by_action = sa.select(owner_events.c.action, sa.func.count()).group_by(
                owner_events.c.action
            )
            for action, count in conn.execute(by_action):
                found.append(Series("wf_jobs_ownerless_total", {"action": action}, count))
        found += [
            Series("wf_jobs_waiting_on_provider", {"provider": p}, n)
            for p, n in sorted(at_provider.items())
        ]
        return found
