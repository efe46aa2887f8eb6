"""Uploaded inputs in the engine's database, for run workers on other hosts than the bridge.

With the celery profile (RUN_LAUNCHER=celery, or UPLOAD_STORE=db) the bridge keeps a job's
checked upload here instead of on its own disk, and names it in the run config as
`wf-upload:<job_id>.<format>`; the upload step of any worker reads it back over the
network. One row per job; `runtime.archive` or an operator may delete old rows.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from wf_core.config import SharedSettings
from wf_store.schema import uploads

SCHEME = "wf-upload:"
SOURCE = re.compile(r"^wf-upload:(?P<job>[0-9A-Za-z_-]{1,64})\.(?P<fmt>[a-z0-9]{1,8})$")


def uploads_in_db(env: Mapping[str, str] | None = None) -> bool:
    """Whether uploads go to the database: UPLOAD_STORE=db, or the celery profile."""
    config = SharedSettings.from_env(env)
    if config.upload_store:
        return config.upload_store == "db"
    return config.run_launcher == "celery"


def is_upload_source(source: str) -> bool:
    """Whether a run config `source` names an upload kept in the database."""
    return source.startswith(SCHEME)


class UploadStore:
    """`wf_uploads`: put a job's upload once, read it from any host."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def put(self, job_id: str, data: bytes, fmt: str) -> str:
        """Keep `data` as the job's upload; the `source` to put in its run config."""
        source = f"{SCHEME}{job_id}.{fmt}"
        if not SOURCE.match(source):
            raise ValueError(f"invalid upload key {job_id!r}.{fmt!r}")
        with self.engine.begin() as conn:
            conn.execute(
                uploads.insert().values(
                    job_id=job_id, format=fmt, data=data, created_at=time.time()
                )
            )
        return source

    def get(self, source: str) -> bytes | None:
        """The bytes a `wf-upload:` source names, or None if there are none."""
        match = SOURCE.match(source)
        if not match:
            raise ValueError(f"not an upload source: {source!r}")
        with self.engine.connect() as conn:
            row = conn.execute(
                sa.select(uploads.c.data).where(
                    uploads.c.job_id == match["job"], uploads.c.format == match["fmt"]
                )
            ).first()
        return bytes(row[0]) if row else None

    def delete(self, job_id: str) -> None:
        """Forget a job's upload (a launch that failed, or an archived job)."""
        with self.engine.begin() as conn:
            conn.execute(uploads.delete().where(uploads.c.job_id == job_id))

    def close(self) -> None:
        """Release the connection pool."""
        self.engine.dispose()
