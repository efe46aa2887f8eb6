"""Credits (accounts, ledger, holds), idempotency keys and job callbacks.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from wf_store.migrations import tables

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

CREATED = (
    tables.idempotency_keys,
    tables.credit_accounts,
    tables.credit_ledger,
    tables.credit_holds,
    tables.callbacks,
    tables.callback_deliveries,
)


def upgrade() -> None:
    """Create the tables as revision 0001 defines them (their indexes and constraints too)."""
    bind = op.get_bind()
    for table in CREATED:
        table.create(bind, checkfirst=False)


def downgrade() -> None:
    """Drop them."""
    bind = op.get_bind()
    for table in reversed(CREATED):
        sa.Table(table.name, sa.MetaData()).drop(bind, checkfirst=True)
