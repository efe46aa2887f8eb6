"""Every table of the engine's state database, in one metadata.

Alembic owns them all: `wf_store/migrations/versions` creates and changes them, and
`wf_store.migrations.upgrade` brings a database to the newest revision. Nothing calls
`create_all`; a test checks that a fresh database upgraded to head equals this metadata.
"""

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
# The job read model: one row per job, written with every transition Dagster or the
# prediction store records (wf_core.job_record projects it; runtime/read_model.py writes
# Dagster's side). `record` holds what the execution document is made of; the other
# columns are what lists and filters read. On PostgreSQL a trigger NOTIFYs `wf_jobs` with
# the job id on every change (revision 0004).
jobs = sa.Table(
    "wf_jobs",
    metadata,
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
    sa.Index("ix_wf_jobs_user_created", "user_id", "created_at", "job_id"),
    sa.Index("ix_wf_jobs_status_created", "status", "created_at"),
    sa.Index("ix_wf_jobs_created", "created_at", "job_id"),
    sa.Index("ix_wf_jobs_first_run", "first_run_id"),
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

# Uploaded inputs kept in the database (celery profile, UPLOAD_STORE=db): one row per job.
uploads = sa.Table(
    "wf_uploads",
    metadata,
    sa.Column("job_id", sa.String(64), primary_key=True),
    sa.Column("format", sa.String(8), nullable=False),
    sa.Column("data", sa.LargeBinary, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
)

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
