"""The warm continuation worker: a completed prediction continues its job in ~0.3 s.

One long-lived process (`python -m sensors.continuations`, started beside the daemon)
that holds the code location and a DagsterInstance. It LISTENs on the state database
(wf_store/wakeups.py) and, woken in the transaction that records a completion,
1. continues the job of a completed prediction: the parked-steps sensor's own
   `continuation_request` (same job, tags, run config, asset selection), executed here
   with `dg.execute_job`: a real Dagster run whose steps materialize their asset
   partitions, without a sensor tick, a queue wait or a fork;
2. executes a run the run coordinator handed it (runtime/coordinator.py: a job's first
   run, launched at once when the queue's limits allow) as `dagster api execute_run`
   would, in this process.

What keeps every guarantee:
- one claimer per prediction: `take_for_handoff` is a compare-and-set from the state read,
  shared with the sensor; a launched run is taken under a PostgreSQL advisory lock and
  only while it is still STARTING;
- the queue's limits: a prediction is continued here only if its job has no run in
  progress and its user fewer than `runs_per_user`; otherwise it is left `completed`
  and the sensor hands it to the queue (the fallback path, as before);
- cancel: each step checks the cancel mark and its run's CANCELING status before it
  starts (wf_assets/step_guard.py); the launcher never signals this process;
- a SIGKILL of this process: each run carries its worker identity (`wf/worker`,
  `wf/launcher`), so the crash detector fails a run it left STARTED or STARTING as a
  retryable crash, and a prediction left `handed_off` is handed off again by the sensor
  after `handoff_stale_after`; at start the worker sweeps what it missed;
- code changes: the worker re-executes itself when a source file changed, as the
  zygote does, so a run never executes stale definitions.
"""

from __future__ import annotations

import importlib
import logging
import os
import select
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dagster as dg

from runtime.dagster_private import _execute_run_command_body, recon_job_from_origin
from runtime.instance import runs_per_user
from runtime.worker import worker_identity
from runtime.zygote import source_stamp, watched_roots
from sensors.parked_steps import continuation_request
from wf_core import settings
from wf_core import tags as t
from wf_core.clock import Clock
from wf_core.config import EngineSettings
from wf_core.specs import WorkflowSpec, continuation_problem, load_specs
from wf_store.predictions import COMPLETED, PredictionStore
from wf_store.spec_versions import SpecVersions, with_retired
from wf_store.wakeups import COMPLETED_CHANNEL, LAUNCH_CHANNEL, listen, received

log = logging.getLogger("wf.continuations")
IN_PROGRESS = [
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
    dg.DagsterRunStatus.CANCELING,
]
# A completion whose job or user is at the queue's limit is tried again this often, for
# this long; after that only the sensor (its next tick) takes it, to the queue.
RETRY_EVERY_SECONDS = 0.2
RETRY_FOR_SECONDS = 5.0
# What a lost NOTIFY waits at most: the worker sweeps completions and launches this often.
SWEEP_EVERY_SECONDS = 5.0
SWEEP_BATCH = 50


@dataclass
class Pending:
    """Work this worker was woken for and could not do yet (a limit was reached)."""

    since: float
    tried: float | None = None

    def due(self, now: float) -> bool:
        """Whether it is time for the (next) try."""
        return self.tried is None or now - self.tried >= RETRY_EVERY_SECONDS


@dataclass
class ContinuationWorker:
    """Continues completed predictions and executes handed-over runs, in this process."""

    instance: dg.DagsterInstance
    store: PredictionStore
    specs: dict[str, WorkflowSpec]
    per_user: int
    clock: Clock = time.time
    identity: str = field(default_factory=worker_identity)
    lock: Callable[[str], bool] = lambda _key: True
    unlock: Callable[[str], None] = lambda _key: None

    # -- admission (the queue's own limits) -------------------------------------------------

    def admitted(self, job_id: str, user: str) -> bool:
        """Whether a run of `job_id` for `user` may start now: no run of the job in progress
        or queued, and the user's runs in progress under the queue's per-user limit."""
        # A queued run of the job (a retry waiting for a slot) goes first.
        queued = [*IN_PROGRESS, dg.DagsterRunStatus.QUEUED]
        busy = dg.RunsFilter(tags={t.PARTITION: job_id}, statuses=queued)
        if self.instance.get_runs_count(busy) > 0:
            return False
        if self.per_user <= 0:
            return True
        mine = dg.RunsFilter(tags={t.USER: user}, statuses=IN_PROGRESS)
        return self.instance.get_runs_count(mine) < self.per_user

    # -- continuations ---------------------------------------------------------------------

    def continue_prediction(self, intent_id: str) -> str:
        """Continue one completed prediction: "done", "gone" (not ours to continue, or
        nothing to do) or "later" (a queue limit: try again, else the sensor queues it)."""
        row = self.store.get(intent_id)
        if row is None or row.state != COMPLETED:
            return "gone"
        current = self.specs.get(row.workflow_id)
        if current is None:
            return "gone"  # the sensor keeps it and reports it
        spec = SpecVersions(self.store).spec_for_job(row.job_id) or current
        steps = [s.name for s in spec.steps if s.name in spec.downstream_of({row.step})]
        if continuation_problem(spec, current, steps):
            return "gone"  # the sensor ends the job, with its reason
        parent = self.instance.get_run_by_id(row.run_id) if row.run_id else None
        if parent is None or parent.job_code_origin is None:
            return "gone"  # nothing to rebuild the job from here: the sensor's path
        request = continuation_request(spec, row, parent)
        if not self.admitted(row.job_id, request.tags[t.USER]):
            return "later"
        if not self.store.take_for_handoff(row, self.clock()):
            return "gone"  # the sensor or another worker took it first
        tags = {**request.tags, t.WARM: "continuation", t.LAUNCHER: self.identity}
        result = dg.execute_job(
            recon_job_from_origin(parent.job_code_origin),
            instance=self.instance,
            run_config=dict(request.run_config),
            tags=tags,
            asset_selection=request.asset_selection,
        )
        log.info(f"prediction {intent_id} continued by run {result.run_id}")
        return "done"

    # -- runs handed over by the coordinator ------------------------------------------------

    def execute_launched(self, run_id: str) -> bool:
        """Execute a run the coordinator launched for this worker, if no one else has;
        whether this worker executed it."""
        if not self.lock(run_id):
            return False
        try:
            run = self.instance.get_run_by_id(run_id)
            if run is None or run.status != dg.DagsterRunStatus.STARTING:
                return False
            launcher = run.tags.get(t.LAUNCHER)
            if launcher and launcher != self.identity and run.tags.get(t.WARM) == "taken":
                return False  # another worker took it (and died: the crash detector's)
            self.instance.add_run_tags(run_id, {t.WARM: "taken", t.LAUNCHER: self.identity})
            _execute_run_command_body(run_id, self.instance, lambda _event: None, False)
            return True
        finally:
            self.unlock(run_id)

    def launched_backlog(self) -> list[str]:
        """Runs handed to a warm worker that none took (a NOTIFY nobody heard)."""
        records = self.instance.get_run_records(
            filters=dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTING], tags={t.WARM: "launch"}),
            limit=SWEEP_BATCH,
        )
        return [r.dagster_run.run_id for r in records]

    def completed_backlog(self) -> list[str]:
        """Completed predictions nobody has taken yet, oldest first."""
        rows = self.store.ready_for_handoff(SWEEP_BATCH, float("inf"), self.clock())
        return [row.id for row in rows if row.state == COMPLETED]


@dataclass
class Inbox:
    """What the worker was woken for, in arrival order, with the tries of each."""

    launches: dict[str, Pending] = field(default_factory=dict)
    completions: dict[str, Pending] = field(default_factory=dict)

    def add(self, channel: str, payload: str, now: float) -> None:
        """One wake-up."""
        box = self.launches if channel == LAUNCH_CHANNEL else self.completions
        box.setdefault(payload, Pending(now))


def work_once(worker: ContinuationWorker, inbox: Inbox, now: float) -> None:
    """Do what is due in `inbox`: launched runs first (a job waits for its first create),
    then completions; a completion at a limit stays for a later try, for a while."""
    for run_id in list(inbox.launches):
        del inbox.launches[run_id]
        began, cpu = time.time(), time.process_time()
        try:
            taken = worker.execute_launched(run_id)
        except Exception:  # the run stays STARTING: a sweep, or the crash detector, has it
            log.exception(f"run {run_id}: not executed")
            continue
        _log_work(f"run {run_id}", "executed" if taken else "not ours", began, cpu)
    for intent_id, pending in list(inbox.completions.items()):
        if not pending.due(now):
            continue
        began, cpu = time.time(), time.process_time()
        pending.tried = now
        try:
            outcome = worker.continue_prediction(intent_id)
        except Exception:  # the state database or Dagster's storage did not answer
            log.exception(f"prediction {intent_id}: not continued; tried again shortly")
            outcome = "later"
        if outcome != "later" or now - pending.since > RETRY_FOR_SECONDS:
            del inbox.completions[intent_id]
        _log_work(f"prediction {intent_id}", outcome, began, cpu, began - pending.since)


def _log_work(what: str, outcome: str, began: float, cpu: float, late: float = 0.0) -> None:
    wall_ms, cpu_ms = (time.time() - began) * 1000, (time.process_time() - cpu) * 1000
    log.info(
        f"{what}: {outcome} in {wall_ms:.0f} ms ({cpu_ms:.0f} ms CPU, {late * 1000:.0f} ms late)"
    )


def serve() -> None:
    """The worker's loop: listen, sweep, work; re-execute itself when the code changed."""
    config = EngineSettings.from_env()
    url = settings.state_db_url(config=config)
    if not url.startswith(("postgresql", "postgres:")):
        log.error("the continuation worker needs a PostgreSQL state database; not started")
        sys.exit(2)
    specs = with_retired(load_specs(settings.specs_dir(config)), url)
    # The code location, loaded once (as the zygote does): every run rebuilt from its
    # origin finds it imported, with its definitions built.
    location = importlib.import_module(config.code_location_module)
    if hasattr(location, "defs"):
        location.defs.get_repository_def()
    conn = listen(url)
    worker = ContinuationWorker(
        instance=dg.DagsterInstance.get(),
        store=PredictionStore(url),
        specs=specs,
        per_user=runs_per_user(config.max_concurrent_runs),
        lock=lambda key: _advisory(conn, "pg_try_advisory_lock", key),
        unlock=lambda key: _unlock(conn, key),
    )
    roots = watched_roots(settings.REPO_ROOT)
    stamp = source_stamp(roots)
    stopping: list[bool] = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
    inbox, swept = Inbox(), 0.0
    log.info(f"continuation worker {worker.identity} listening")
    while not stopping:
        now = time.time()
        if now - swept >= SWEEP_EVERY_SECONDS:
            for run_id in worker.launched_backlog():
                inbox.add(LAUNCH_CHANNEL, run_id, now)
            for intent_id in worker.completed_backlog():
                inbox.add(COMPLETED_CHANNEL, intent_id, now)
            swept = now
        wait = RETRY_EVERY_SECONDS if inbox.completions else SWEEP_EVERY_SECONDS
        if not (inbox.launches or _due(inbox, now)):
            select.select([conn], [], [], wait)
        for channel, payload in received(conn):
            inbox.add(channel, payload, time.time())
        if (inbox.launches or inbox.completions) and source_stamp(roots) != stamp:
            log.info("the code location changed: restarting to load it afresh")
            os.execv(sys.executable, [sys.executable, "-m", "sensors.continuations"])
        try:
            work_once(worker, inbox, time.time())
        except Exception:  # one failed piece of work must not stop the worker
            log.exception("continuation worker: work failed; its fallback path takes over")


def _due(inbox: Inbox, now: float) -> bool:
    return any(p.due(now) for p in inbox.completions.values())


def _advisory(conn: Any, function: str, key: str) -> bool:
    with conn.cursor() as cursor:
        cursor.execute(f"SELECT {function}(hashtext(%s))", (key,))
        return bool(cursor.fetchone()[0])


def _unlock(conn: Any, key: str) -> None:
    _advisory(conn, "pg_advisory_unlock", key)


def main() -> None:
    """`python -m sensors.continuations`: run the worker until SIGTERM."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    sys.path.insert(0, str(Path.cwd()))
    serve()


if __name__ == "__main__":
    main()
