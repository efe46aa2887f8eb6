"""Credits (accounts, ledger, holds), idempotency keys and job callbacks.

Revision ID: 0001
Revises:

Written out in full (not taken from tables.py): a migration is what the database was
given at that revision, whatever the tables look like later.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer, "sqlite")


def upgrade() -> None:
    """Create the six tables with their keys, constraints and indexes."""
    op.create_table(
        "wf_idempotency_keys",
        sa.Column("user_id", sa.String(200), primary_key=True),
        sa.Column("key", sa.String(255), primary_key=True),
        sa.Column("status", sa.Integer, nullable=True),
        sa.Column("body", sa.Text, nullable=True),
        sa.Column("created_at", sa.Float, nullable=False),
    )
    op.create_index("ix_wf_idempotency_keys_created", "wf_idempotency_keys", ["created_at"])
    op.create_table(
        "wf_credit_accounts",
        sa.Column("user_id", sa.String(200), primary_key=True),
        sa.Column("balance", sa.BigInteger, nullable=False),
        sa.Column("reserved", sa.BigInteger, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
        sa.CheckConstraint("balance >= 0", name="ck_wf_credit_accounts_balance"),
        sa.CheckConstraint("reserved >= 0", name="ck_wf_credit_accounts_reserved"),
    )
    op.create_table(
        "wf_credit_ledger",
        sa.Column("id", BIG_ID, primary_key=True),
        sa.Column("user_id", sa.String(200), nullable=False),
        sa.Column("job_id", sa.String(120), nullable=False),
        sa.Column("step", sa.String(120), nullable=False),
        sa.Column("kind", sa.String(10), nullable=False),
        sa.Column("amount", sa.BigInteger, nullable=False),
        sa.Column("reason", sa.Text, nullable=True),
        sa.Column("at", sa.Float, nullable=False),
        sa.UniqueConstraint("job_id", "step", "kind", name="uq_wf_credit_ledger_job_step_kind"),
        sa.CheckConstraint("amount > 0", name="ck_wf_credit_ledger_amount"),
    )
    op.create_index("ix_wf_credit_ledger_user", "wf_credit_ledger", ["user_id", "id"])
    op.create_table(
        "wf_credit_holds",
        sa.Column("job_id", sa.String(120), primary_key=True),
        sa.Column("user_id", sa.String(200), nullable=False),
        sa.Column("workflow_id", sa.String(120), nullable=False),
        sa.Column("shares", sa.Text, nullable=False),
        sa.Column("hold", sa.Integer, nullable=False),
        sa.Column("open", sa.Boolean, nullable=False),
        sa.Column("next_check_at", sa.Float, nullable=False),
    )
    op.create_index("ix_wf_credit_holds_open", "wf_credit_holds", ["open", "next_check_at"])
    op.create_table(
        "wf_callbacks",
        sa.Column("job_id", sa.String(120), primary_key=True),
        sa.Column("user_id", sa.String(200), nullable=False),
        sa.Column("workflow_id", sa.String(120), nullable=False),
        sa.Column("url", sa.Text, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("event", sa.String(40), nullable=True),
        sa.Column("state", sa.String(20), nullable=False),
        sa.Column("next_check_at", sa.Float, nullable=False),
    )
    op.create_index("ix_wf_callbacks_due", "wf_callbacks", ["state", "next_check_at"])
    op.create_table(
        "wf_callback_deliveries",
        sa.Column("id", BIG_ID, primary_key=True),
        sa.Column("job_id", sa.String(120), nullable=False),
        sa.Column("webhook_id", sa.String(120), nullable=False),
        sa.Column("attempt", sa.Integer, nullable=False),
        sa.Column("status_code", sa.Integer, nullable=True),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("at", sa.Float, nullable=False),
        sa.UniqueConstraint("job_id", "attempt", name="uq_wf_callback_deliveries_attempt"),
    )


def downgrade() -> None:
    """Drop them."""
    for table in (
        "wf_callback_deliveries",
        "wf_callbacks",
        "wf_credit_holds",
        "wf_credit_ledger",
        "wf_credit_accounts",
        "wf_idempotency_keys",
    ):
        op.drop_table(table)
