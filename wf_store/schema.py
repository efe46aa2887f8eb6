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
