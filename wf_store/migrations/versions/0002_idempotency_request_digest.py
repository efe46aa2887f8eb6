"""Idempotency keys remember the request they were first used with.

Revision ID: 0002
Revises: 0001

A key reused with another request (another workflow, other options, another file) is
refused with 422 `idempotency_key_reused` instead of replaying the first job. Rows
claimed before this revision have no digest and replay as before.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add `request_digest` (nullable: older claims have none)."""
    with op.batch_alter_table("wf_idempotency_keys") as batch:
        batch.add_column(sa.Column("request_digest", sa.String(64), nullable=True))


def downgrade() -> None:
    """Drop `request_digest`."""
    with op.batch_alter_table("wf_idempotency_keys") as batch:
        batch.drop_column("request_digest")
