"""One poller per watched job per process, shared by every watcher of that job.

A `JobFeed` reads the job from its row of the job read model (wf_jobs: runs, checkpoints,
cancel mark and the provider's progress in one query; a job without a row from Dagster's
GraphQL as before) and the new log lines of its unfinished runs, and appends what is
new to one ordered list of entries: each job event once (by its identity, see
`events.Delivered`), and the provider's progress level whenever it changes. Watchers
(`watch`) read that list from the start and send what their own `Delivered` lacks, so
every watcher of a job sees the same sequence, whatever it connected with, and the
number of watchers costs Dagster nothing: a job with a thousand watchers is polled as
often as a job with one.

The `StreamHub` of a process keeps the feeds (a feed starts with its first watcher and
stops with its last, or when the job ends) and counts the open streams against a cap
(`MAX_STREAMS`): past it a new stream is refused with 503 and `Retry-After`, so streams
never take what execute, status and health need.

A poll that fails (Dagster slow or restarting) is retried with a backoff; the watchers
keep their connection and get heartbeats meanwhile. A watcher waits on the feed with the
heartbeat as timeout, so a client that went away is noticed at the next heartbeat write
at the latest, and its slot is freed when the server closes the response.
"""

from __future__ import annotations

import logging
import select
import socket
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from bridge_api.dagster_client.snapshots import JobSnapshot
from bridge_api.jobs.read_model import predictions_of_record, read_row, snapshot_of
from bridge_api.stores.predictions import prediction_store
from bridge_api.streaming.events import Delivered, Event, format_event
from bridge_api.streaming.readers import JobEvents, ProviderProgress
from bridge_api.streaming.run_events import RunEventListener
from wf_core.job_state import ACTIVE
from wf_store.predictions import Prediction

if TYPE_CHECKING:
    from flask import Flask

    from wf_core.specs import WorkflowSpec

log = logging.getLogger(__name__)
BACKOFF_SECONDS = (0.5, 1.0, 2.0, 5.0)
# Woken by notifications, a feed still reads Dagster at most this often: a burst of a
# run's events is read in one poll.
NOTIFIED_SPACING_SECONDS = 0.25
# How long the row loop waits for a change before looking whether its feed stopped.
ROW_WAIT_SECONDS = 1.0
JOBS_CHANNEL = "wf_jobs"  # revision 0004's trigger: NOTIFY wf_jobs, '<job_id>'


class StreamsFull(Exception):
    """This process already serves as many streams as it may."""


@dataclass(frozen=True)
class Entry:
    """One item of a feed: a job event, or the provider's progress level (`level`)."""

    event: Event | None = None
    level: dict | None = None


class JobFeed:
    """A job's events, polled once for all of its watchers in this process."""

    def __init__(self, hub: StreamHub, spec: WorkflowSpec, job_id: str) -> None:
        self.hub = hub
        self.spec = spec
        self.job_id = job_id
        self.entries: list[Entry] = []
        self.ended = False
        self.watchers = 0
        self.polls = 0
        self.changed = threading.Condition()
        self.stopped = threading.Event()
        self.wake = threading.Event()  # a run of the job stored an event, or the feed stops
        # The job's row changed (a checkpoint, a status, the provider's progress): the row
        # loop reads it now, without the spacing that gathers a burst of run events.
        self.urgent = threading.Event()
        self.lock = threading.Lock()  # one of the two loops appends at a time
        self.seen: set = set()
        self.runs: frozenset[str] = frozenset()

    def start(self) -> None:
        """Poll in a thread of its own (a greenlet under gevent)."""
        name = f"feed-{self.job_id}"
        threading.Thread(target=self._run, name=name, daemon=True).start()

    def _run(self) -> None:
        app = self.hub.app
        with app.app_context():
            gateway = app.extensions["dagster"]
            idle = app.config["STREAM_POLL_SECONDS"]
            active_poll = min(idle, app.config["STREAM_ACTIVE_POLL_SECONDS"])
            self.events = JobEvents(gateway, self.spec)
            self.provider = ProviderProgress(self.spec, self.job_id)
            threading.Thread(target=self._rows, name=f"feed-row-{self.job_id}", daemon=True).start()
            failures = 0
            while not self.stopped.is_set() and not self.ended:
                try:
                    snapshot, rows = self._read()
                    # The runs' log lines: a GraphQL request each, made outside the lock so
                    # that a change of the job's row is never sent behind one.
                    self.events.read_logs(snapshot.runs)
                    with self.lock:
                        if rows is not None:  # from the row: read afresh after the logs
                            self._publish_row()
                        else:
                            self._publish(snapshot, rows)
                except Exception as exc:  # Dagster slow or away: keep the watchers, retry
                    delay = BACKOFF_SECONDS[min(failures, len(BACKOFF_SECONDS) - 1)]
                    failures += 1
                    log.warning("stream poll of job %s failed (%s); again in %ss", self.job_id,
                                type(exc).__name__, delay)  # fmt: skip
                    self._sleep(delay)
                    continue
                failures = 0
                if self.ended:
                    return
                # Poll fast while a run is queued or running, slowly while a retry waits;
                # when Dagster's notifications arrive, at their call (and slowly besides).
                busy = any(run.status in ACTIVE for run in snapshot.runs)
                if self.hub.notified():
                    spacing = min(active_poll, NOTIFIED_SPACING_SECONDS)
                    self._sleep(app.config["STREAM_NOTIFIED_POLL_SECONDS"], spacing)
                else:
                    self._sleep(active_poll if busy else idle)

    def _rows(self) -> None:
        """Each change of the job's row (its NOTIFY) sent at once: the row alone, no
        GraphQL; the runs' new log lines follow with the next poll."""
        with self.hub.app.app_context():
            while not self.stopped.is_set() and not self.ended:
                if not self.urgent.wait(ROW_WAIT_SECONDS):
                    continue
                self.urgent.clear()
                try:
                    with self.lock:
                        if not self.ended:
                            self._publish_row(final=False)
                except Exception as exc:  # the poll loop retries with its backoff
                    log.warning("stream row read of job %s failed (%s)", self.job_id,
                                type(exc).__name__)  # fmt: skip

    def _read(self) -> tuple[JobSnapshot, list[Prediction] | None]:
        """The job from its read-model row, else (a job from before it) from GraphQL."""
        row = read_row(self.job_id)
        if row is not None:
            record = row.job_record()
            return snapshot_of(record, self.spec), predictions_of_record(record)
        gateway = self.hub.app.extensions["dagster"]
        return gateway.snapshot(self.job_id, {self.spec.id: self.spec}), None

    def _publish_row(self, final: bool = True) -> None:
        """The job's row read now, published (a job without one is left to the poll).
        Not `final` (the row loop): a job that has ended is left to the poll loop, which
        reads its runs' last log lines before it ends the feed."""
        row = read_row(self.job_id)
        if row is not None:
            record = row.job_record()
            snapshot = snapshot_of(record, self.spec)
            self._publish(snapshot, predictions_of_record(record), final)

    def _publish(
        self, snapshot: JobSnapshot, rows: list[Prediction] | None, final: bool = True
    ) -> None:
        """Append what is new in the job to the entries (under `lock`)."""
        settings = self.hub.app.extensions["retry_settings"]
        collected, end = self.events.collect(snapshot, settings, logs=False)
        if end and not final:
            self.wake.set()
            return
        waiting = self.provider.poll(snapshot, rows)
        self.polls += 1
        self.hub.track(self, {run.run_id for run in snapshot.runs})
        new = sorted((e for e in collected if e.identity not in self.seen), key=_order)
        self.seen.update(e.identity for e in new)
        entries = [Entry(event=e) for e in new]
        if waiting is not None:  # after the run's own lines: the step has started
            entries.append(Entry(level=waiting))
        if end:
            self.hub.forget(self)  # a watcher arriving now starts a new feed
        with self.changed:
            self.entries.extend(entries)
            self.ended = self.ended or end
            self.changed.notify_all()

    def _sleep(self, seconds: float, spacing: float = 0.0) -> None:
        """Until `seconds` pass or the feed is woken (never sooner than `spacing`: a burst
        of events is read in one poll)."""
        if spacing and self.stopped.wait(spacing):
            return
        self.wake.wait(max(0.0, seconds - spacing))
        self.wake.clear()

    def read(self, position: int, timeout: float) -> tuple[list[Entry], bool]:
        """The entries from `position` on, waiting up to `timeout` for one; and whether
        the feed has ended (then the entries returned are its last)."""
        with self.changed:
            if position >= len(self.entries) and not self.ended:
                self.changed.wait(timeout)
            return self.entries[position:], self.ended


class JobOwners:
    """Each job's owner and workflow, which never change: read from Dagster once per
    process, however many watchers arrive at once (they wait for the one read)."""

    def __init__(self, size: int = 20_000) -> None:
        self.size = size
        self.known: OrderedDict[str, tuple[str | None, str | None]] = OrderedDict()
        self.pending: dict[str, threading.Event] = {}
        self.lock = threading.Lock()

    def get(self, job_id: str, load: Callable[[], tuple[str | None, str | None]]):
        """(owner, workflow id) of the job; `load` reads them (and raises for no job,
        which is not remembered)."""
        while True:
            with self.lock:
                if job_id in self.known:
                    self.known.move_to_end(job_id)
                    return self.known[job_id]
                waiting = self.pending.get(job_id)
                if waiting is None:
                    done = self.pending[job_id] = threading.Event()
                    break
            waiting.wait(30)  # another request reads it; then look again (or read it)
        try:
            found = load()
            with self.lock:
                self.known[job_id] = found
                while len(self.known) > self.size:
                    self.known.popitem(last=False)
            return found
        finally:
            with self.lock:
                del self.pending[job_id]
            done.set()


class StreamHub:
    """This process's feeds by job, and the count of its open streams."""

    def __init__(self, app: Flask, max_streams: int) -> None:
        self.app = app
        self.max_streams = max_streams
        self.open_streams = 0
        self.feeds: dict[str, JobFeed] = {}
        self.by_run: dict[str, JobFeed] = {}
        self.lock = threading.Lock()
        self.listener: RunEventListener | None = None
        self.rows_listener: RunEventListener | None = None
        self.owners = JobOwners()

    def acquire(self) -> Callable[[], None]:
        """Take a stream slot (StreamsFull past the cap); returns its release, idempotent."""
        with self.lock:
            if self.open_streams >= self.max_streams:
                raise StreamsFull()
            self.open_streams += 1
        released = threading.Event()

        def release() -> None:
            with self.lock:
                if not released.is_set():
                    released.set()
                    self.open_streams -= 1

        return release

    def join(self, spec: WorkflowSpec, job_id: str) -> tuple[JobFeed, int]:
        """The job's feed (started if no one watches the job yet), and how many of its
        entries were there before this watcher joined (none for a new feed)."""
        self._listen()
        with self.lock:
            feed = self.feeds.get(job_id)
            if feed is None or feed.spec.id != spec.id:
                feed = self.feeds[job_id] = JobFeed(self, spec, job_id)
                feed.watchers += 1
                feed.start()
                return feed, 0
            feed.watchers += 1
            with feed.changed:
                return feed, len(feed.entries)

    def unsubscribe(self, feed: JobFeed) -> None:
        """One watcher fewer; the last one stops the feed's poller."""
        with self.lock:
            feed.watchers -= 1
            if feed.watchers <= 0:
                feed.stopped.set()
                feed.urgent.set()
                feed.wake.set()
                self._drop(feed)

    def forget(self, feed: JobFeed) -> None:
        """A feed whose job ended: new watchers get a feed of their own."""
        with self.lock:
            self._drop(feed)

    def _drop(self, feed: JobFeed) -> None:
        if self.feeds.get(feed.job_id) is feed:
            del self.feeds[feed.job_id]
        for run_id in feed.runs:
            if self.by_run.get(run_id) is feed:
                del self.by_run[run_id]

    def track(self, feed: JobFeed, runs: set[str]) -> None:
        """The runs a feed watches, to wake it on their events."""
        with self.lock:
            if self.feeds.get(feed.job_id) is not feed:
                return
            for run_id in runs - feed.runs:
                self.by_run[run_id] = feed
            feed.runs = frozenset(runs)

    def wake(self, runs: Iterable[str]) -> None:
        """Wake the feeds of these runs (Dagster stored events for them)."""
        with self.lock:
            feeds = {self.by_run[r] for r in runs if r in self.by_run}
        for feed in feeds:
            feed.wake.set()

    def wake_jobs(self, job_ids: Iterable[str]) -> None:
        """Wake the feeds of these jobs at once (their rows changed)."""
        with self.lock:
            feeds = [self.feeds[j] for j in job_ids if j in self.feeds]
        for feed in feeds:
            feed.urgent.set()

    def notified(self) -> bool:
        """Whether Dagster's run event notifications are arriving now."""
        return self.listener is not None and self.listener.connected.is_set()

    def _listen(self) -> None:
        """Start this process's listener on first use (after gunicorn's fork), when the
        engine's storage is PostgreSQL."""
        if self.rows_listener is None:
            self._listen_rows()
        url = self.app.config.get("DAGSTER_PG_URL")
        if not url or self.listener is not None:
            return
        with self.lock:
            if self.listener is None:
                self.listener = RunEventListener(url, self.wake).start()

    def _listen_rows(self) -> None:
        """LISTEN wf_jobs on the state database when it is PostgreSQL (its trigger notifies
        each row change); on SQLite the feeds' polls read the rows instead."""
        try:
            with self.app.app_context():  # joined from a streaming response: no context
                store = prediction_store()
        except Exception:  # the state database is down: the feeds poll
            log.warning("job read model notifications unavailable; the feeds poll")
            return
        if store.engine.dialect.name != "postgresql":
            return
        url = store.engine.url.render_as_string(hide_password=False)
        with self.lock:
            if self.rows_listener is None:
                self.rows_listener = RunEventListener(
                    url, self.wake_jobs, channel=JOBS_CHANNEL, parse=str
                ).start()

    def stats(self) -> dict[str, Any]:
        """Open streams and feeds of this process."""
        with self.lock:
            return {"streams": self.open_streams, "feeds": len(self.feeds)}


def watch(
    hub: StreamHub,
    spec: WorkflowSpec,
    job_id: str,
    delivered: Delivered,
    heartbeat: float,
    gone: Callable[[], bool] = lambda: False,
    clock: Callable[[], float] = time.monotonic,
) -> Iterator[str]:
    """One watcher's SSE text: every event of the job it has not received, in the feed's
    order, the provider's latest progress, a heartbeat when quiet; until the job ends or,
    checked at each heartbeat, the client has gone (`gone`)."""
    yield "retry: 2000\n\n"
    feed, joined = hub.join(spec, job_id)
    try:
        position, last_write = 0, clock()
        while True:
            batch, ended = feed.read(position, max(0.0, heartbeat - (clock() - last_write)))
            # Of the provider's readings from before this watcher joined, only the newest
            # is sent (a level, not a history); every reading after it is.
            levels = [position + i for i, e in enumerate(batch) if e.level]
            newest_old = max((i for i in levels if i < joined), default=-1)
            for index, entry in enumerate(batch, start=position):
                if entry.event is not None and not delivered.has(entry.event.identity):
                    delivered.add(entry.event.identity)
                    yield format_event(delivered.encode(), entry.event.name, entry.event.data)
                    last_write = clock()
                elif entry.level is not None and (index >= joined or index == newest_old):
                    yield format_event(delivered.encode(), "progress", entry.level)
                    last_write = clock()
            position += len(batch)
            if ended:
                return
            if clock() - last_write >= heartbeat:
                if gone():  # a write to a closed socket may still succeed once
                    return
                yield ": heartbeat\n\n"
                last_write = clock()
    finally:
        hub.unsubscribe(feed)


def client_gone(environ: dict) -> Callable[[], bool]:
    """Whether the request's client has closed its connection: its socket reads as
    end-of-file (gunicorn and werkzeug put the socket in the WSGI environ). Without a
    socket, never: the next failed write ends the stream instead."""
    sock = environ.get("gunicorn.socket") or environ.get("werkzeug.socket")
    if sock is None or not hasattr(sock, "recv"):
        return lambda: False

    def gone() -> bool:
        try:
            readable, _, _ = select.select([sock], [], [], 0)
            return bool(readable) and sock.recv(1, socket.MSG_PEEK) == b""
        except (OSError, ValueError):  # reset, or already closed
            return True

    return gone


def _order(event: Event) -> tuple:
    return event.order
