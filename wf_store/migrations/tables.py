"""The tables created by Alembic migrations (wf_store/migrations/versions), not create_all.

Credits, idempotency keys and job callbacks. They live on the engine's state database
beside the older tables; `wf_store.migrations.upgrade` brings a database up to date.
"""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

# One row per (user, Idempotency-Key): claimed before the request does anything, holding
# the first answer once there is one. A refused request deletes its claim.
idempotency_keys = sa.Table(
    "wf_idempotency_keys",
    metadata,
    sa.Column("user_id", sa.String(200), primary_key=True),
    sa.Column("key", sa.String(255), primary_key=True),
    sa.Column("status", sa.Integer, nullable=True),  # null: the first request is in flight
    sa.Column("body", sa.Text, nullable=True),
    sa.Column("created_at", sa.Float, nullable=False),
    # What the first request asked for (a digest): a key reused with another is refused.
    sa.Column("request_digest", sa.String(64), nullable=True),
    sa.Index("ix_wf_idempotency_keys_created", "created_at"),
)

# What a user may spend (`balance`) and what is held for jobs in flight (`reserved`).
credit_accounts = sa.Table(
    "wf_credit_accounts",
    metadata,
    sa.Column("user_id", sa.String(200), primary_key=True),
    sa.Column("balance", sa.BigInteger, nullable=False),
    sa.Column("reserved", sa.BigInteger, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
    sa.CheckConstraint("balance >= 0", name="ck_wf_credit_accounts_balance"),
    sa.CheckConstraint("reserved >= 0", name="ck_wf_credit_accounts_reserved"),
)

# Append-only: every movement once, keyed by (job, step, kind). A grant's `job_id` is its
# own reference; a reserve's and a release's `step` is the hold (`#1`, `#2` after a retry).
credit_ledger = sa.Table(
    "wf_credit_ledger",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True),
    sa.Column("user_id", sa.String(200), nullable=False),
    sa.Column("job_id", sa.String(120), nullable=False),
    sa.Column("step", sa.String(120), nullable=False),
    sa.Column("kind", sa.String(10), nullable=False),
    sa.Column("amount", sa.BigInteger, nullable=False),
    sa.Column("reason", sa.Text, nullable=True),
    sa.Column("at", sa.Float, nullable=False),
    sa.UniqueConstraint("job_id", "step", "kind", name="uq_wf_credit_ledger_job_step_kind"),
    sa.CheckConstraint("amount > 0", name="ck_wf_credit_ledger_amount"),
    sa.Index("ix_wf_credit_ledger_user", "user_id", "id"),
)

# A job's hold: its shares per step, and whether the credits sensor still has to settle it.
credit_holds = sa.Table(
    "wf_credit_holds",
    metadata,
    sa.Column("job_id", sa.String(120), primary_key=True),
    sa.Column("user_id", sa.String(200), nullable=False),
    sa.Column("workflow_id", sa.String(120), nullable=False),
    sa.Column("shares", sa.Text, nullable=False),  # JSON {step: credits}
    sa.Column("hold", sa.Integer, nullable=False),
    sa.Column("open", sa.Boolean, nullable=False),
    sa.Column("next_check_at", sa.Float, nullable=False),
    sa.Index("ix_wf_credit_holds_open", "open", "next_check_at"),
)

# Job webhooks: one row per (job, event); its delivery attempts and when to try again.
callbacks = sa.Table(
    "wf_callbacks",
    metadata,
    sa.Column("job_id", sa.String(120), primary_key=True),
    sa.Column("user_id", sa.String(200), nullable=False),
    sa.Column("workflow_id", sa.String(120), nullable=False),
    sa.Column("url", sa.Text, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    # Set once the job is final and its event is queued; null while the job runs.
    sa.Column("event", sa.String(40), nullable=True),
    sa.Column("state", sa.String(20), nullable=False),  # watching|pending|delivered|gave_up
    sa.Column("next_check_at", sa.Float, nullable=False),
    sa.Index("ix_wf_callbacks_due", "state", "next_check_at"),
)
callback_deliveries = sa.Table(
    "wf_callback_deliveries",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True),
    sa.Column("job_id", sa.String(120), nullable=False),
    sa.Column("webhook_id", sa.String(120), nullable=False),
    sa.Column("attempt", sa.Integer, nullable=False),
    sa.Column("status_code", sa.Integer, nullable=True),
    sa.Column("error", sa.Text, nullable=True),
    sa.Column("at", sa.Float, nullable=False),
    sa.UniqueConstraint("job_id", "attempt", name="uq_wf_callback_deliveries_attempt"),
)
