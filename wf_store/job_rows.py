"""The job read model (`wf_jobs`): one row per job, written with each transition, read by
the bridge for status, lists, admin filters and streams.

Every write is a read-modify-write of one row under its row lock (`SELECT ... FOR UPDATE`
on PostgreSQL; SQLite's write lock serializes writers): the stored `JobRecord` is folded
with the change (wf_core.job_record) and the row's columns are projected again, its
`version` incremented. Two statements per transition, plus the NOTIFY that revision
0004's trigger sends on PostgreSQL in the same transaction. On SQLite readers poll the
versions (`versions`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError

from wf_core import tags as t
from wf_core.job_record import JobRecord, project
from wf_core.retry_policy import RetrySettings, retry_settings_from_env
from wf_core.specs import WorkflowSpec, load_specs, spec_from_snapshot
from wf_store.schema import job_specs, jobs, spec_versions

log = logging.getLogger(__name__)
# (job id, workflow id, spec digest or None) -> the spec the job runs on, or None.
SpecLookup = Callable[[str, str, str | None], WorkflowSpec | None]
Change = Callable[[JobRecord], JobRecord]


@dataclass(frozen=True)
class JobRow:
    """One row of `wf_jobs`."""

    job_id: str
    workflow_id: str
    user_id: str
    spec_version: str | None
    status: str
    current_step: str | None
    failed_step: str | None
    error_type: str | None
    error_message: str | None
    retry_at: float | None
    attempt: int
    run_id: str | None
    first_run_id: str | None
    provider_status: str | None
    created_at: float
    updated_at: float
    version: int
    record: str

    def job_record(self) -> JobRecord:
        """The stored record (runs, checkpoints, cancel marks, predictions)."""
        return JobRecord.from_json(self.job_id, self.record)


@dataclass(frozen=True)
class JobFilter:
    """Which jobs an operator means (every field optional)."""

    status: str | None = None
    error_type: str | None = None
    workflow_id: str | None = None
    user_id: str | None = None
    since: float | None = None
    until: float | None = None


class JobRows:
    """Writes (folds) and reads of `wf_jobs`."""

    def __init__(
        self, engine: Engine, specs: SpecLookup | None = None, settings: RetrySettings | None = None
    ) -> None:
        self.engine = engine
        self.specs = specs or (lambda _job, _workflow, _digest: None)
        self.settings = settings or RetrySettings()

    # -- writes ---------------------------------------------------------------------------

    def apply(self, job_id: str, change: Change, create: bool = True) -> int | None:
        """Fold `change` into the job's row in a transaction of its own; the new version
        (None when nothing changed, or no row and not `create`)."""
        for _ in range(2):
            try:
                with self.engine.begin() as conn:
                    return self.apply_in(conn, job_id, change, create)
            except IntegrityError:
                continue  # another writer inserted the row first: fold into theirs
        return None

    def apply_in(
        self, conn: Connection, job_id: str, change: Change, create: bool = True
    ) -> int | None:
        """Fold `change` into the job's row inside the caller's transaction."""
        query = sa.select(jobs.c.record, jobs.c.version).where(jobs.c.job_id == job_id)
        if conn.dialect.name == "postgresql":
            query = query.with_for_update()
        found = conn.execute(query).first()
        if found is None and not create:
            return None
        old = JobRecord.from_json(job_id, found.record if found else None)
        new = change(old)
        if found is not None and new == old:
            return None
        columns = self.columns(new)
        if found is None:
            conn.execute(jobs.insert().values(**columns, version=1))
            return 1
        version = int(found.version) + 1
        conn.execute(
            jobs.update().where(jobs.c.job_id == job_id).values(**columns, version=version)
        )
        return version

    def columns(self, record: JobRecord) -> dict[str, Any]:
        """The row's columns for `record` (its spec looked up by the first run's tags)."""
        first = record.first_run()
        spec = None
        if first is not None:
            workflow = first.tags.get(t.WORKFLOW, "")
            try:
                spec = self.specs(record.job_id, workflow, first.tags.get(t.SPEC_VERSION))
            except Exception:  # a spec that cannot be read leaves the status for later
                log.exception("job %s: its spec could not be read", record.job_id)
        return project(record, spec, self.settings)

    def replace(self, record: JobRecord) -> int:
        """Write the row of `record` whole (the rebuild), unless it already holds exactly
        that; its version."""
        columns = self.columns(record)
        with self.engine.begin() as conn:
            query = sa.select(jobs).where(jobs.c.job_id == record.job_id)
            found = conn.execute(query).mappings().first()
            if found is None:
                conn.execute(jobs.insert().values(**columns, version=1))
                return 1
            if all(found[name] == value for name, value in columns.items()):
                return int(found["version"])  # already what the event log says
            version = int(found["version"]) + 1
            conn.execute(
                jobs.update()
                .where(jobs.c.job_id == record.job_id)
                .values(**columns, version=version)
            )
            return version

    def delete(self, job_id: str) -> None:
        """Forget a job's row (a job that never started)."""
        with self.engine.begin() as conn:
            conn.execute(jobs.delete().where(jobs.c.job_id == job_id))

    # -- reads ----------------------------------------------------------------------------

    def get(self, job_id: str) -> JobRow | None:
        """One job's row, or None."""
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(jobs).where(jobs.c.job_id == job_id)).mappings().first()
        return JobRow(**row) if row else None

    def get_many(self, job_ids: Iterable[str]) -> dict[str, JobRow]:
        """The rows of these jobs, by id."""
        ids = list(job_ids)
        if not ids:
            return {}
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(jobs).where(jobs.c.job_id.in_(ids))).mappings()
            return {row["job_id"]: JobRow(**row) for row in rows}

    def user_page(self, user_id: str, limit: int, cursor: str | None) -> list[JobRow] | None:
        """The user's jobs, newest first, after the job whose first run is `cursor` (None
        when that run is no job's first run)."""
        before = None
        if cursor:
            with self.engine.connect() as conn:
                found = conn.execute(
                    sa.select(jobs.c.created_at, jobs.c.job_id).where(
                        jobs.c.first_run_id == cursor, jobs.c.user_id == user_id
                    )
                ).first()
            if found is None:
                return None
            before = (float(found.created_at), str(found.job_id))
        return self.find(JobFilter(user_id=user_id), limit, before)

    def versions(self, job_ids: Iterable[str]) -> dict[str, int]:
        """The current version of each of these jobs' rows (a poll for changes)."""
        ids = list(job_ids)
        if not ids:
            return {}
        query = sa.select(jobs.c.job_id, jobs.c.version).where(jobs.c.job_id.in_(ids))
        with self.engine.connect() as conn:
            return {job_id: int(version) for job_id, version in conn.execute(query)}

    def find(
        self, where: JobFilter, limit: int = 100, before: tuple[float, str] | None = None
    ) -> list[JobRow]:
        """Matching jobs, newest first; `before` is the (created_at, job_id) to page after."""
        c = jobs.c
        conditions = []
        for column, value in (
            (c.status, where.status),
            (c.error_type, where.error_type),
            (c.workflow_id, where.workflow_id),
            (c.user_id, where.user_id),
        ):
            if value is not None:
                conditions.append(column == value)
        if where.since is not None:
            conditions.append(c.created_at >= where.since)
        if where.until is not None:
            conditions.append(c.created_at < where.until)
        if before is not None:
            # A row-value comparison: an index on (..., created_at, job_id) serves it.
            conditions.append(sa.tuple_(c.created_at, c.job_id) < sa.tuple_(*before))
        query = (
            sa.select(jobs)
            .where(*conditions)
            .order_by(c.created_at.desc(), c.job_id.desc())
            .limit(limit)
        )
        with self.engine.connect() as conn:
            return [JobRow(**row) for row in conn.execute(query).mappings()]


def prediction_change(row: Mapping[str, Any]) -> Change:
    """The fold of one changed prediction row."""
    return lambda record: record.with_prediction(row)


def project_predictions(conn: Connection, table: sa.Table, condition: Any) -> None:
    """Fold the prediction rows matching `condition` (just written in `conn`'s transaction)
    into their jobs' rows, in the same transaction; jobs without a row are left to the
    rebuild (a prediction never creates one)."""
    rows = conn.execute(sa.select(table).where(condition)).mappings().all()
    if not rows:
        return
    store = JobRows(conn.engine, stored_specs(conn.engine), default_settings())
    for row in rows:
        store.apply_in(conn, str(row["job_id"]), prediction_change(dict(row)), create=False)


_settings: list[RetrySettings] = []
_specs: dict[tuple[str, str], WorkflowSpec] = {}
_files: dict[str, WorkflowSpec] = {}


def default_settings() -> RetrySettings:
    """This process's retry settings (from its environment, read once)."""
    if not _settings:
        _settings.append(retry_settings_from_env())
    return _settings[0]


def stored_specs(engine: Engine) -> SpecLookup:
    """The spec a job runs on: the version its runs name (`wf/spec_version`), else its pin,
    else its workflow's current file; versions never change, so they are cached."""
    url = engine.url.render_as_string(hide_password=False)

    def lookup(job_id: str, workflow_id: str, digest: str | None) -> WorkflowSpec | None:
        if digest is not None and (url, digest) in _specs:
            return _specs[(url, digest)]  # the usual case: no statement at all
        with engine.connect() as conn:
            if digest is None:
                digest = conn.execute(
                    sa.select(job_specs.c.digest).where(job_specs.c.job_id == job_id)
                ).scalar()
            if digest is not None and (url, digest) not in _specs:
                body = conn.execute(
                    sa.select(spec_versions.c.body).where(spec_versions.c.digest == digest)
                ).scalar()
                if body is not None:
                    _specs[(url, digest)] = spec_from_snapshot(json.loads(body))
        if digest is not None and (url, digest) in _specs:
            return _specs[(url, digest)]
        if not _files:
            _files.update(load_specs())
        return _files.get(workflow_id)

    return lookup
