"""Alert rules as plain data: which conditions hold now, and what to say when one starts
or clears.

The alerts sensor gathers facts (recent run outcomes, steps that have waited long, open
breakers, retry queue samples), these functions turn them into the conditions that hold
(`Firing`, keyed), and `transitions` compares them with the ones already announced: one
message when a key starts holding, one when it stops, nothing while it stays.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from wf_core.config import EngineSettings

MEDIA_PROVIDERS = frozenset({"local_media", "cloudinary"})
# Jobs named in one message; the rest are counted.
JOBS_SHOWN = 10


@dataclass(frozen=True)
class AlertSettings:
    """Thresholds and windows (ALERT_* in the environment)."""

    failure_rate: float = 0.2
    failure_window: float = 900.0
    failure_min_runs: int = 5
    stuck_after: float = 600.0
    storage_window: float = 900.0
    breaker_open_after: float = 900.0
    queue_growth: int = 20
    queue_window: float = 900.0
    # A condition clears only once it has not held for this long: no start/clear flapping.
    clear_after: float = 300.0
    # A job found without an owner keeps its alert up this long after the last one.
    ownerless_window: float = 900.0
    # How often the alerts sensor evaluates these rules.
    check_interval: float = 30.0
    ui_url: str = "http://127.0.0.1:3000"


def alert_settings(config: EngineSettings) -> AlertSettings:
    """AlertSettings from ALERT_* variables and DAGSTER_UI_URL; defaults for the unset."""
    return AlertSettings(
        failure_rate=config.alert_failure_rate,
        failure_window=config.alert_failure_window_seconds,
        failure_min_runs=config.alert_failure_min_runs,
        stuck_after=config.alert_stuck_step_seconds,
        storage_window=config.alert_storage_window_seconds,
        breaker_open_after=config.alert_breaker_open_seconds,
        queue_growth=config.alert_retry_queue_growth,
        queue_window=config.alert_retry_queue_window_seconds,
        clear_after=config.alert_clear_after_seconds,
        ownerless_window=config.alert_ownerless_window_seconds,
        check_interval=config.alert_check_interval_seconds,
        ui_url=config.dagster_ui_url.rstrip("/"),
    )


def alert_settings_from_env(env: Mapping[str, str] | None = None) -> AlertSettings:
    """`alert_settings` of `env` (this process's environment by default)."""
    return alert_settings(EngineSettings.from_env(env))


@dataclass(frozen=True)
class RunOutcome:
    """A run that finished inside the window."""

    workflow: str
    job_id: str
    run_id: str
    failed: bool
    provider: str = ""
    error_message: str = ""
    at: float = 0.0


@dataclass(frozen=True)
class StuckStep:
    """A step running, or waiting on its provider, since `since`."""

    job_id: str
    run_id: str | None
    step: str
    since: float
    waiting_on: str = "running"


@dataclass(frozen=True)
class Firing:
    """A condition that holds now."""

    key: str
    title: str
    detail: str
    jobs: tuple[tuple[str, str | None], ...] = field(default=())


@dataclass(frozen=True)
class Message:
    """One notification: a condition started or cleared."""

    key: str
    kind: str
    subject: str
    text: str


def failure_rate(outcomes: Iterable[RunOutcome], now: float, s: AlertSettings) -> list[Firing]:
    """Per workflow: failed runs over finished runs above `failure_rate` (enough runs)."""
    by_workflow: dict[str, list[RunOutcome]] = {}
    for outcome in outcomes:
        if now - outcome.at > s.failure_window:
            continue
        by_workflow.setdefault(outcome.workflow, []).append(outcome)
    firing = []
    for workflow, runs in sorted(by_workflow.items()):
        failed = [r for r in runs if r.failed]
        rate = len(failed) / len(runs)
        if len(runs) >= s.failure_min_runs and rate > s.failure_rate:
            firing.append(
                Firing(
                    f"failure_rate:{workflow}",
                    f"{workflow}: {rate:.0%} of runs failed",
                    f"{len(failed)} of {len(runs)} runs failed in the last "
                    f"{s.failure_window / 60:g} min (threshold {s.failure_rate:.0%})",
                    tuple((r.job_id, r.run_id) for r in failed),
                )
            )
    return firing


def storage_failures(outcomes: Iterable[RunOutcome], now: float, s: AlertSettings) -> list[Firing]:
    """Any checkpoint or media save that failed inside the window."""
    failed = [
        r
        for r in outcomes
        if r.failed
        and now - r.at <= s.storage_window
        and (r.provider in MEDIA_PROVIDERS or "checkpoint" in r.error_message.lower())
    ]
    if not failed:
        return []
    return [
        Firing(
            "storage_failures",
            "Checkpoint or media saves are failing",
            f"{len(failed)} runs failed saving a checkpoint or media in the last "
            f"{s.storage_window / 60:g} min",
            tuple((r.job_id, r.run_id) for r in failed),
        )
    ]


def stuck_steps(stuck: Iterable[StuckStep], now: float, s: AlertSettings) -> list[Firing]:
    """Steps running or waiting longer than `stuck_after`."""
    late = sorted((x for x in stuck if now - x.since > s.stuck_after), key=lambda x: x.since)
    if not late:
        return []
    oldest = late[0]
    return [
        Firing(
            "stuck_steps",
            f"{len(late)} steps running or waiting over {s.stuck_after / 60:g} min",
            f"the oldest, {oldest.step} of job {oldest.job_id}, has been {oldest.waiting_on} "
            f"for {(now - oldest.since) / 60:.0f} min",
            tuple((x.job_id, x.run_id) for x in late),
        )
    ]


def open_breakers(opened: Mapping[str, float], now: float, s: AlertSettings) -> list[Firing]:
    """One per quota breaker (provider/model) open longer than `breaker_open_after`."""
    return [
        Firing(
            f"breaker_open:{key}",
            f"Quota breaker {key} open for {(now - at) / 60:.0f} min",
            f"jobs using {key} wait for its quota; a probe job goes through after each cooldown",
        )
        for key, at in sorted(opened.items())
        if now - at > s.breaker_open_after
    ]


def queue_growing(samples: list[tuple[float, int]], now: float, s: AlertSettings) -> list[Firing]:
    """The retry queue grew by `queue_growth` or more over the window."""
    recent = [(at, n) for at, n in samples if now - at <= s.queue_window]
    if len(recent) < 2:
        return []
    first, last = recent[0][1], recent[-1][1]
    if last - first < s.queue_growth:
        return []
    return [
        Firing(
            "retry_queue_growing",
            f"Retry queue grew from {first} to {last}",
            f"{last - first} more failed runs waiting for a retry in the last "
            f"{s.queue_window / 60:g} min",
        )
    ]


def ownerless_jobs(
    found: Iterable[tuple[str, str, float]], now: float, s: AlertSettings
) -> list[Firing]:
    """Jobs the owner check found without an owner (job id, action, when) in the window."""
    recent = sorted((x for x in found if now - x[2] <= s.ownerless_window), key=lambda x: x[2])
    if not recent:
        return []
    failed = sum(1 for _, action, _ in recent if action == "failed")
    return [
        Firing(
            "jobs_without_owner",
            f"{len(recent)} jobs found without an owner",
            f"{len(recent) - failed} handed back to a run, {failed} failed, in the last "
            f"{s.ownerless_window / 60:g} min; the latest is job {recent[-1][0]}",
            tuple((job_id, None) for job_id, _, _ in recent),
        )
    ]


@dataclass(frozen=True)
class Announced:
    """A condition announced as started: its title, and when it last held."""

    title: str
    last_held: float


def transitions(
    announced: Mapping[str, Announced], firing: Iterable[Firing], now: float, s: AlertSettings
) -> list[Message]:
    """Messages for conditions that started (not in `announced`) and for announced ones
    that have not held for `clear_after` seconds."""
    current = {f.key: f for f in firing}
    messages = [_started(f, s) for key, f in sorted(current.items()) if key not in announced]
    for key, seen in sorted(announced.items()):
        if key not in current and now - seen.last_held >= s.clear_after:
            text = f"RESOLVED: {seen.title}"
            messages.append(Message(key, "cleared", text, text))
    return messages


def _started(f: Firing, s: AlertSettings) -> Message:
    lines = [f"ALERT: {f.title}", f.detail]
    for job_id, run_id in f.jobs[:JOBS_SHOWN]:
        link = f"{s.ui_url}/runs/{run_id}" if run_id else f"{s.ui_url}/runs"
        lines.append(f"- job {job_id}: {link}")
    if len(f.jobs) > JOBS_SHOWN:
        lines.append(f"... and {len(f.jobs) - JOBS_SHOWN} more jobs")
    return Message(f.key, "started", f"ALERT: {f.title}", "\n".join(lines))
