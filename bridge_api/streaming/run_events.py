"""Dagster's own notifications of new run events, to wake the stream feeds.

With PostgreSQL storage, dagster-postgres sends `NOTIFY run_events, '<run_id>_<event id>'`
for every event it stores (a step's log line, a checkpoint, a run's end). One connection
per bridge process listens on that channel (`RunEventListener`) and wakes the feeds that
watch those runs, so a feed reads Dagster when something happened instead of every
quarter second; its own poll becomes a slow safety net (`STREAM_NOTIFIED_POLL_SECONDS`)
for what no run event announces (a new run of the job, a provider's progress).

This connection needs a session (LISTEN does not survive a transaction pooler): point
`DAGSTER_PG_URL` at the server, or at a session-mode pool. Lost, it is reopened with a
backoff; meanwhile the feeds poll at their usual pace.
"""

from __future__ import annotations

import logging
import select
import threading
from collections.abc import Callable, Iterable

import psycopg2
import psycopg2.extensions

log = logging.getLogger(__name__)
CHANNEL = "run_events"  # dagster_postgres.event_log.event_log.CHANNEL_NAME
BACKOFF_SECONDS = (1.0, 2.0, 5.0, 10.0)


def run_of(payload: str) -> str:
    """The run id of a `run_events` payload (`<run_id>_<event id>`)."""
    return payload.rsplit("_", 1)[0]


class RunEventListener:
    """LISTEN on a channel (run_events by default) on its own connection; `on_runs` gets
    each batch of ids (`parse` of each payload). The job read model's `wf_jobs` channel,
    whose payload is a job id, is listened to with the same class."""

    def __init__(
        self,
        url: str,
        on_runs: Callable[[Iterable[str]], None],
        channel: str = CHANNEL,
        parse: Callable[[str], str] = run_of,
    ) -> None:
        self.url = url.replace("postgresql+psycopg2://", "postgresql://", 1)
        self.on_runs = on_runs
        self.channel = channel
        self.parse = parse
        self.connected = threading.Event()
        self.stopped = threading.Event()

    def start(self) -> RunEventListener:
        """Listen in a thread of its own (a greenlet under gevent)."""
        threading.Thread(target=self._run, name="run-event-listener", daemon=True).start()
        return self

    def stop(self) -> None:
        """End the thread at its next wake-up."""
        self.stopped.set()

    def _run(self) -> None:
        failures = 0
        while not self.stopped.is_set():
            try:
                self._listen()
                failures = 0
            except (psycopg2.Error, OSError) as exc:
                self.connected.clear()
                delay = BACKOFF_SECONDS[min(failures, len(BACKOFF_SECONDS) - 1)]
                failures += 1
                log.warning("run event listener lost (%s); again in %ss", type(exc).__name__, delay)
                self.stopped.wait(delay)

    def _listen(self) -> None:
        conn = psycopg2.connect(self.url, application_name="wf-bridge-run-events")
        try:
            conn.set_isolation_level(psycopg2.extensions.ISOLATION_LEVEL_AUTOCOMMIT)
            with conn.cursor() as cur:
                cur.execute(f"LISTEN {self.channel}")
            self.connected.set()
            while not self.stopped.is_set():
                readable, _, _ = select.select([conn], [], [], 1.0)
                if not readable:
                    continue
                conn.poll()
                runs = {self.parse(n.payload) for n in conn.notifies}
                conn.notifies.clear()
                if runs:
                    self.on_runs(runs)
        finally:
            self.connected.clear()
            conn.close()
