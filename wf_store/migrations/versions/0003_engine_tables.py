"""Every other engine table, until now made by `create_all` when a store first ran.

Revision ID: 0003
Revises: 0002

Predictions and webhook deliveries, the retry queue, metrics, the job index, alerts,
spec versions, job pins, owner events and uploads. A database deployed before this
revision already has some or all of them (made by `create_all` with these very
definitions): a table that exists is kept, and only the indexes it lacks are added.
SQLite's old upgrade lock table (`wf_migration_lock`) goes.

Written out in full (not taken from schema.py): a migration is what the database was
given at that revision, whatever the tables look like later.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def _tables() -> list[sa.Table]:
    """The tables as this revision makes them (creation order)."""
    m = sa.MetaData()
    return [
        sa.Table(
            "wf_predictions",
            m,
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
            sa.Column("polls", sa.Integer, nullable=False),
            sa.Index("ix_wf_predictions_job_step", "job_id", "step"),
            sa.Index("ix_wf_predictions_state_poll", "state", "next_poll_at"),
            sa.Index("ix_wf_predictions_state_updated", "state", "updated_at"),
        ),
        sa.Table(
            "wf_webhook_events",
            m,
            sa.Column("webhook_id", sa.String(200), primary_key=True),
            sa.Column("prediction_id", sa.String(120), nullable=True),
            sa.Column("intent_id", sa.String(40), nullable=True),
            sa.Column("status", sa.String(20), nullable=True),
            sa.Column("body", sa.Text, nullable=False),
            sa.Column("received_at", sa.Float, nullable=False),
            sa.Index("ix_wf_webhook_events_prediction_id", "prediction_id"),
        ),
        sa.Table(
            "wf_retry_waiting",
            m,
            sa.Column("run_id", sa.String(64), primary_key=True),
            sa.Column("job_id", sa.String(80), nullable=False),
            sa.Column("workflow_id", sa.String(120), nullable=False),
            sa.Column("error_type", sa.String(40), nullable=False),
            sa.Column("quota_key", sa.String(300), nullable=True),
            sa.Column("next_check_at", sa.Float, nullable=False),
            sa.Column("created_at", sa.Float, nullable=False),
            sa.Column("checks", sa.Integer, nullable=False),
            sa.Index("ix_wf_retry_waiting_due", "next_check_at"),
            sa.Index("ix_wf_retry_waiting_key", "quota_key", "created_at"),
        ),
        sa.Table(
            "wf_metrics",
            m,
            sa.Column("name", sa.String(120), primary_key=True),
            sa.Column("labels", sa.String(600), primary_key=True),
            sa.Column("value", sa.Float, nullable=False),
            sa.Column("updated_at", sa.Float, nullable=False),
        ),
        sa.Table(
            "wf_metrics_state",
            m,
            sa.Column("key", sa.String(120), primary_key=True),
            sa.Column("value", sa.Text, nullable=False),
        ),
        sa.Table(
            "wf_metrics_folded",
            m,
            sa.Column("run_id", sa.String(64), primary_key=True),
            sa.Column("folded_at", sa.Float, nullable=False),
        ),
        sa.Table(
            "wf_job_index",
            m,
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
        ),
        sa.Table(
            "wf_alerts",
            m,
            sa.Column("key", sa.String(200), primary_key=True),
            sa.Column("active", sa.Boolean, nullable=False),
            sa.Column("started_at", sa.Float, nullable=False),
            sa.Column("cleared_at", sa.Float, nullable=True),
            sa.Column("summary", sa.Text, nullable=False),
            sa.Column("updated_at", sa.Float, nullable=False),
        ),
        sa.Table(
            "wf_spec_versions",
            m,
            sa.Column("digest", sa.String(64), primary_key=True),
            sa.Column("workflow_id", sa.String(120), nullable=False),
            sa.Column("body", sa.Text, nullable=False),
            sa.Column("created_at", sa.Float, nullable=False),
        ),
        sa.Table(
            "wf_job_specs",
            m,
            sa.Column("job_id", sa.String(80), primary_key=True),
            sa.Column("workflow_id", sa.String(120), nullable=False),
            sa.Column("digest", sa.String(64), nullable=False),
            sa.Column("user_id", sa.String(200), nullable=False),
            sa.Column("run_config", sa.Text, nullable=True),
            sa.Column("created_at", sa.Float, nullable=False),
            sa.Column("finished_at", sa.Float, nullable=True),
            sa.Column("ownerless_since", sa.Float, nullable=True),
            sa.Index("ix_wf_job_specs_open", "finished_at", "created_at"),
        ),
        sa.Table(
            "wf_owner_events",
            m,
            sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
            sa.Column("job_id", sa.String(80), nullable=False),
            sa.Column("action", sa.String(20), nullable=False),
            sa.Column("message", sa.Text, nullable=False),
            sa.Column("at", sa.Float, nullable=False),
            sa.Index("ix_wf_owner_events_job", "job_id"),
            sa.Index("ix_wf_owner_events_at", "at"),
        ),
        sa.Table(
            "wf_uploads",
            m,
            sa.Column("job_id", sa.String(64), primary_key=True),
            sa.Column("format", sa.String(8), nullable=False),
            sa.Column("data", sa.LargeBinary, nullable=False),
            sa.Column("created_at", sa.Float, nullable=False),
        ),
    ]


def upgrade() -> None:
    """Create each table that is missing, and each index an existing one lacks."""
    bind = op.get_bind()
    inspector = sa.inspect(bind)
    existing = set(inspector.get_table_names())
    for table in _tables():
        if table.name not in existing:
            table.create(bind)
            continue
        have = {index["name"] for index in inspector.get_indexes(table.name)}
        for index in table.indexes:
            if index.name not in have:
                index.create(bind)
    if "wf_migration_lock" in existing:
        op.drop_table("wf_migration_lock")


def downgrade() -> None:
    """Drop them (a database deployed before 0003 made them itself: they go too)."""
    for table in reversed(_tables()):
        op.drop_table(table.name)
