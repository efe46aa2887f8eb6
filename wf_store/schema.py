"""The engine's own tables, all in one metadata: created together, whoever comes first."""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()
predictions = sa.Table(
    "wf_predictions",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("job_id", sa.String(80), nullable=False),
    sa.Column("step", sa.String(120), nullable=False),
    sa.Column("attempt", sa.Integer, nullable=False),
    sa.Column("workflow_id", sa.String(120), nullable=False),
    sa.Column("provider", sa.String(40), nullable=False),
    sa.Column("model", sa.String(200), nullable=False),
    sa.Column("provider_model", sa.String(300), nullable=False),
    sa.Column("input_digest", sa.String(64), nullable=False),
    sa.Column("provider_input", sa.Text, nullable=True),
    sa.Column("state", sa.String(20), nullable=False),
    sa.Column("prediction_id", sa.String(120), nullable=True, unique=True),
    sa.Column("provider_status", sa.String(20), nullable=True),
    sa.Column("progress", sa.Integer, nullable=True),
    sa.Column("output", sa.Text, nullable=True),
    sa.Column("error", sa.Text, nullable=True),
    sa.Column("completed_by", sa.String(20), nullable=True),
    sa.Column("run_id", sa.String(64), nullable=True),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
    sa.Column("completed_at", sa.Float, nullable=True),
    sa.Column("expected_at", sa.Float, nullable=True),
    sa.Column("next_poll_at", sa.Float, nullable=True),
    sa.Column("handed_off_at", sa.Float, nullable=True),
    sa.Column("polls", sa.Integer, nullable=False, default=0),
    sa.Index("ix_wf_predictions_job_step", "job_id", "step"),
    sa.Index("ix_wf_predictions_state_poll", "state", "next_poll_at"),
    sa.Index("ix_wf_predictions_state_updated", "state", "updated_at"),
)
webhook_events = sa.Table(
    "wf_webhook_events",
    metadata,
    sa.Column("webhook_id", sa.String(200), primary_key=True),
    sa.Column("prediction_id", sa.String(120), nullable=True, index=True),
    sa.Column("intent_id", sa.String(40), nullable=True),
    sa.Column("status", sa.String(20), nullable=True),
    sa.Column("body", sa.Text, nullable=False),
    sa.Column("received_at", sa.Float, nullable=False),
)

waiting = sa.Table(
    "wf_retry_waiting",
    metadata,
    sa.Column("run_id", sa.String(64), primary_key=True),
    sa.Column("job_id", sa.String(80), nullable=False),
    sa.Column("workflow_id", sa.String(120), nullable=False),
    sa.Column("error_type", sa.String(40), nullable=False),
    sa.Column("quota_key", sa.String(300), nullable=True),
    sa.Column("next_check_at", sa.Float, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("checks", sa.Integer, nullable=False, default=0),
    sa.Index("ix_wf_retry_waiting_due", "next_check_at"),
    sa.Index("ix_wf_retry_waiting_key", "quota_key", "created_at"),
)

# Operating it (issue 14): counters folded in by the metrics sensor, read by /metrics.
metric_series = sa.Table(
    "wf_metrics",
    metadata,
    sa.Column("name", sa.String(120), primary_key=True),
    # Canonical JSON of the labels (sorted keys): one row per series.
    sa.Column("labels", sa.String(600), primary_key=True),
    sa.Column("value", sa.Float, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
)
metric_state = sa.Table(
    "wf_metrics_state",
    metadata,
    sa.Column("key", sa.String(120), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
)
# Runs already folded into the counters: a run is counted once however often it is seen.
metric_folded = sa.Table(
    "wf_metrics_folded",
    metadata,
    sa.Column("run_id", sa.String(64), primary_key=True),
    sa.Column("folded_at", sa.Float, nullable=False),
)
# Every job's last known state, kept by the metrics sensor: what operators filter on.
job_index = sa.Table(
    "wf_job_index",
    metadata,
    sa.Column("job_id", sa.String(80), primary_key=True),
    sa.Column("workflow_id", sa.String(120), nullable=False),
    sa.Column("user_id", sa.String(200), nullable=False),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("error_type", sa.String(40), nullable=True),
    sa.Column("failed_step", sa.String(120), nullable=True),
    sa.Column("attempt", sa.Integer, nullable=False),
    sa.Column("run_id", sa.String(64), nullable=True),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
    sa.Index("ix_wf_job_index_status_created", "status", "created_at"),
    sa.Index("ix_wf_job_index_created", "created_at"),
)
# Alert conditions and whether their start (and clearing) was delivered.
alert_state = sa.Table(
    "wf_alerts",
    metadata,
    sa.Column("key", sa.String(200), primary_key=True),
    sa.Column("active", sa.Boolean, nullable=False),
    sa.Column("started_at", sa.Float, nullable=False),
    sa.Column("cleared_at", sa.Float, nullable=True),
    sa.Column("summary", sa.Text, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
)
# Every version of a spec a job ran on: its digest and its content, written once.
spec_versions = sa.Table(
    "wf_spec_versions",
    metadata,
    sa.Column("digest", sa.String(64), primary_key=True),
    sa.Column("workflow_id", sa.String(120), nullable=False),
    sa.Column("body", sa.Text, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
)
# The version each job is pinned to (and what it was asked to do), while it is unfinished.
job_specs = sa.Table(
    "wf_job_specs",
    metadata,
    sa.Column("job_id", sa.String(80), primary_key=True),
    sa.Column("workflow_id", sa.String(120), nullable=False),
    sa.Column("digest", sa.String(64), nullable=False),
    sa.Column("user_id", sa.String(200), nullable=False),
    sa.Column("run_config", sa.Text, nullable=True),
    sa.Column("created_at", sa.Float, nullable=False),
    # Set once the owner check sees the job in a final state.
    sa.Column("finished_at", sa.Float, nullable=True),
    # When the owner check first found the job with no owner (cleared when it has one).
    sa.Column("ownerless_since", sa.Float, nullable=True),
    sa.Index("ix_wf_job_specs_open", "finished_at", "created_at"),
)
# What the owner check did about a job found without an owner (the admin history reads it).
owner_events = sa.Table(
    "wf_owner_events",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("job_id", sa.String(80), nullable=False),
    sa.Column("action", sa.String(20), nullable=False),  # repaired | failed | finished
    sa.Column("message", sa.Text, nullable=False),
    sa.Column("at", sa.Float, nullable=False),
    sa.Index("ix_wf_owner_events_job", "job_id"),
    sa.Index("ix_wf_owner_events_at", "at"),
)
