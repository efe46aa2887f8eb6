"""A provider-wide quota outage: N jobs wait on one open breaker. What does a tick cost?

The retry sensor's own code on a PostgreSQL instance (pooled connections), ticked by
hand on a fake clock, as the daemon would every 5 s. The N waiting jobs are synthetic:
their failed runs are written straight into the instance with the tags a quota failure
leaves (`img-edit-to-video`'s video step, on its last model, so no fallback). Runs the
sensor asks for are not executed: each request is answered with a run record of the
outcome (the probe fails while the quota is out; later requests succeed), which is all
the sensor reads. Prints:
- the intake tick (it tags and queues all N failures at once);
- tick durations while the breaker is open (p50, p95, max): the figure that must stay
  far below Dagster's 60 s sensor timeout whatever N;
- after the quota returns: ticks and seconds of fake time until every job was retried,
  and the largest number of retries asked for in one tick (the release rate).
That every released job then completes, each step once, is what
tests/test_thundering_herd.py runs for real (50 jobs).

Run: `.venv/bin/python bench/outage.py --jobs 5000`.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
import uuid
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
from inflight import fresh_database

from resources.local_provider import LocalModelProvider
from resources.state_database import StateDatabase
from runtime.instance import write_instance_yaml
from sensors.retry_sensor import make_retry_sensor
from wf_core import tags as t
from wf_core.job_ids import new_job_id
from wf_core.retry_policy import RetrySettings
from wf_core.specs import load_specs
from wf_store.retry_queue import RetryQueue

WORKFLOW_ID = "img-edit-to-video"
TICK_SECONDS = 5.0
PROVIDER, MODEL = "replicate", "kling/v1.6"


class Clock:
    """Fake epoch time, moved by the bench."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def failed_run(spec, job_id: str, attempt: int, at: float, extra: dict | None = None):
    """A run record as a quota failure of the video step leaves it."""
    tags = {
        **t.job_tags(spec.id, job_id, "user-1", "bench", attempt=attempt),
        t.ERROR_TYPE: "quota_exceeded",
        t.RETRYABLE: "true",
        t.FAILED_STEP: "video_generation",
        t.FAILED_AT: datetime.fromtimestamp(at, UTC).isoformat(),
        t.PROVIDER: PROVIDER,
        t.MODEL: MODEL,
        t.ERROR_MESSAGE: "Monthly spend limit reached",
        **(extra or {}),
    }
    return dg.DagsterRun(
        job_name=spec.job_name,
        run_id=str(uuid.uuid4()),
        status=dg.DagsterRunStatus.FAILURE,
        tags=tags,
    )


def answer(instance, spec, request: dg.RunRequest, quota_back: bool, now: float) -> None:
    """Stand in for the run the sensor asked for: failed on quota, or succeeded."""
    attempt = int(request.tags[t.ATTEMPT])
    job_id = request.tags[t.JOB_ID]
    extra = {k: v for k, v in request.tags.items() if k.startswith("wf/")}
    if quota_back:
        run = dg.DagsterRun(
            job_name=spec.job_name,
            run_id=str(uuid.uuid4()),
            status=dg.DagsterRunStatus.SUCCESS,
            tags={**t.job_tags(spec.id, job_id, "user-1", "bench", attempt=attempt), **extra},
        )
    else:
        run = failed_run(spec, job_id, attempt, now, extra)
    instance.add_run(run)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=5000)
    parser.add_argument("--open-ticks", type=int, default=30, help="ticks timed while open")
    args = parser.parse_args()
    spec = load_specs()[WORKFLOW_ID]
    clock = Clock()
    # A long cooldown: no probe while the open-breaker ticks are timed.
    settings = replace(RetrySettings(), quota_cooldown=600.0, quota_cooldown_cap=600.0)
    with tempfile.TemporaryDirectory() as tmp, fresh_database() as pg_url:
        home = Path(tmp) / "home"
        write_instance_yaml(home, pg_url=pg_url)
        predictions = StateDatabase(url=pg_url)
        queue = RetryQueue(predictions.store())
        with dg.DagsterInstance.from_config(str(home)) as instance:
            started = time.perf_counter()
            for _ in range(args.jobs):
                instance.add_run(failed_run(spec, new_job_id(), 1, clock.now))
            print(f"wrote {args.jobs} failed runs in {time.perf_counter() - started:.0f}s")
            sensor = make_retry_sensor({spec.id: spec}, [], settings, clock)
            cursor = None

            def tick() -> tuple[float, list[dg.RunRequest]]:
                nonlocal cursor
                context = dg.build_sensor_context(
                    instance=instance,
                    cursor=cursor,
                    resources={
                        "model_provider": LocalModelProvider(),
                        "predictions": predictions,
                    },
                )
                begun = time.perf_counter()
                result = sensor(context)
                spent = time.perf_counter() - begun
                cursor = result.cursor
                clock.now += TICK_SECONDS
                return spent, list(result.run_requests or [])

            intake, requests = tick()
            assert requests == [], "a job went while the breaker opened"
            open_ticks = []
            for _ in range(args.open_ticks):
                spent, requests = tick()
                assert requests == [], "a job went while the breaker was open"
                open_ticks.append(spent)
            waiting = queue.count()
            # The quota returns: the cooldown ends, the probe goes and succeeds.
            clock.now += settings.quota_cooldown
            release_ticks, biggest, retried, release_times = 0, 0, set(), []
            release_started = clock.now
            while len(retried) < args.jobs and release_ticks < 10 * args.jobs:
                spent, requests = tick()
                release_ticks += 1
                biggest = max(biggest, len(requests))
                for request in requests:
                    answer(instance, spec, request, quota_back=True, now=clock.now)
                    retried.add(request.tags[t.JOB_ID])
                release_times.append(spent)
            released_in = clock.now - release_started
            ordered = sorted(open_ticks)
            print(
                json.dumps(
                    {
                        "waiting_jobs": args.jobs,
                        "queued": waiting,
                        "intake_tick_s": round(intake, 2),
                        "open_tick_p50_s": round(statistics.median(ordered), 3),
                        "open_tick_p95_s": round(ordered[int(0.95 * (len(ordered) - 1))], 3),
                        "open_tick_max_s": round(ordered[-1], 3),
                        "jobs_retried_after_quota_returns": len(retried),
                        "release_ticks": release_ticks,
                        "release_fake_seconds": released_in,
                        "max_retries_per_tick": biggest,
                        "release_tick_p95_s": round(
                            sorted(release_times)[int(0.95 * (len(release_times) - 1))], 3
                        ),
                    },
                    indent=2,
                )
            )


if __name__ == "__main__":
    main()
