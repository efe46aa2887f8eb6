"""The job read model: `wf_jobs`, one row per job, and its change notification.

Revision ID: 0004
Revises: 0003

Every transition a writer records updates the job's row (wf_core.job_record projects
it); on PostgreSQL a trigger sends `NOTIFY wf_jobs, '<job_id>'` in the same transaction
as each change, so readers wake on commit. Old jobs get their rows from the rebuild
(`python -m runtime.rebuild_read_model`).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

NOTIFY_FUNCTION = """
CREATE OR REPLACE FUNCTION wf_jobs_notify() RETURNS trigger AS $$
BEGIN
  PERFORM pg_notify('wf_jobs', NEW.job_id);
  RETURN NULL;
END;
$$ LANGUAGE plpgsql
"""
NOTIFY_TRIGGER = """
CREATE TRIGGER wf_jobs_changed AFTER INSERT OR UPDATE ON wf_jobs
FOR EACH ROW EXECUTE FUNCTION wf_jobs_notify()
"""


def upgrade() -> None:
    """Create `wf_jobs` (and, on PostgreSQL, its NOTIFY trigger)."""
    op.create_table(
        "wf_jobs",
        sa.Column("job_id", sa.String(80), primary_key=True),
        sa.Column("workflow_id", sa.String(120), nullable=False),
        sa.Column("user_id", sa.String(200), nullable=False),
        sa.Column("spec_version", sa.String(80), nullable=True),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("current_step", sa.String(120), nullable=True),
        sa.Column("failed_step", sa.String(120), nullable=True),
        sa.Column("error_type", sa.String(40), nullable=True),
        sa.Column("error_message", sa.Text, nullable=True),
        sa.Column("retry_at", sa.Float, nullable=True),
        sa.Column("attempt", sa.Integer, nullable=False),
        sa.Column("run_id", sa.String(64), nullable=True),
        sa.Column("first_run_id", sa.String(64), nullable=True),
        sa.Column("provider_status", sa.String(20), nullable=True),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
        sa.Column("version", sa.BigInteger, nullable=False),
        sa.Column("record", sa.Text, nullable=False),
    )
    op.create_index("ix_wf_jobs_user_created", "wf_jobs", ["user_id", "created_at", "job_id"])
    op.create_index("ix_wf_jobs_status_created", "wf_jobs", ["status", "created_at"])
    op.create_index("ix_wf_jobs_created", "wf_jobs", ["created_at", "job_id"])
    op.create_index("ix_wf_jobs_first_run", "wf_jobs", ["first_run_id"])
    if op.get_bind().dialect.name == "postgresql":
        op.execute(NOTIFY_FUNCTION)
        op.execute(NOTIFY_TRIGGER)


def downgrade() -> None:
    """Drop `wf_jobs` (its trigger goes with it)."""
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS wf_jobs_notify() CASCADE")
    op.drop_table("wf_jobs")
