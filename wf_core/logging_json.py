"""Structured logs: one JSON object per line, with the job's context, and no secret ever.

`log_context(job_id=..., run_id=..., user=..., workflow=..., step=..., attempt=...)` binds
fields for everything logged inside it (a contextvar, so threads and greenlets keep
their own); `extra={...}` adds fields to one line. `Redactor` scrubs bearer tokens, JWTs,
`access_token=` query values, Authorization headers, provider keys, URL credentials and
the literal values of the secret settings from every message before it is written.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import IO, Any

CONTEXT_FIELDS = ("job_id", "run_id", "user", "workflow", "step", "attempt")
SECRET_SETTINGS = (
    "REPLICATE_API_TOKEN",
    "SUPABASE_JWT_SECRET",
    "SUPABASE_ANON_KEY",
    "METRICS_TOKEN",
    "CLOUDINARY_URL",
    "REPLICATE_WEBHOOK_SECRET",
    "CALLBACK_SIGNING_SECRET",
    "ALERT_SMTP_PASSWORD",
    "ALERT_WEBHOOK_URL",
    "DAGSTER_PG_URL",
    "WF_STATE_DB_URL",
)
REDACTED = "[REDACTED]"
PATTERNS = (
    # `Authorization: Bearer x`, `'Authorization': 'x'`, `authorization=x`
    re.compile(r"(?i)(authorization['\"]?\s*[:=]\s*['\"]?)(?:bearer\s+|basic\s+)?[^\s'\",}]+"),
    re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]+"),
    re.compile(r"(?i)((?:access_token|token|api_key|apikey|secret|password)=)[^&\s'\"]+"),
    re.compile(r"()eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*"),  # a JWT
    re.compile(r"()\br8_[A-Za-z0-9]{8,}"),  # a Replicate API token
    re.compile(r"()\bwhsec_[A-Za-z0-9+/=]+"),  # a webhook signing secret
    re.compile(r"([a-z][a-z0-9+.-]*://[^:/@\s]+:)[^@\s]+(?=@)"),  # user:password@ in a URL
)
_context: ContextVar[Mapping[str, Any] | None] = ContextVar("wf_log_context", default=None)


@contextmanager
def log_context(**fields: Any) -> Iterator[None]:
    """Bind these fields (None ones left out) to every line logged inside the block."""
    bound = {**(_context.get() or {}), **{k: v for k, v in fields.items() if v is not None}}
    token = _context.set(bound)
    try:
        yield
    finally:
        _context.reset(token)


class Redactor:
    """Scrubs secrets out of text: known patterns and the secret settings' values."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        # Short values would redact ordinary words; real secrets are long.
        self.literals = sorted(
            {env[name] for name in SECRET_SETTINGS if len(env.get(name) or "") >= 8},
            key=len,
            reverse=True,
        )

    def __call__(self, text: str) -> str:
        """`text` with every secret replaced by [REDACTED]."""
        for literal in self.literals:
            text = text.replace(literal, REDACTED)
        for pattern in PATTERNS:
            text = pattern.sub(lambda m: m.group(1) + REDACTED, text)
        return text


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message, context, exception."""

    def __init__(self, redactor: Redactor | None = None) -> None:
        super().__init__()
        self.redact = redactor or Redactor()

    def format(self, record: logging.LogRecord) -> str:
        """The record as one redacted JSON line."""
        body: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": self.redact(record.getMessage()),
        }
        meta = getattr(record, "dagster_meta", None)
        if isinstance(meta, Mapping):
            body.update(_from_dagster(meta))
            body["msg"] = self.redact(str(meta.get("orig_message") or body["msg"]))
        body.update(_context.get() or {})
        for name in (*CONTEXT_FIELDS, "path", "method", "status", "sensor"):
            value = getattr(record, name, None)
            if value is not None:
                body[name] = value
        if record.exc_info:
            body["exc"] = self.redact(self.formatException(record.exc_info))
        return self.redact(json.dumps(body, default=str))


def _from_dagster(meta: Mapping[str, Any]) -> dict[str, Any]:
    """A Dagster log record's run, step and our job tags (what a run's loggers are given)."""
    tags = meta.get("job_tags") or {}
    step = meta.get("step_key")
    event = meta.get("dagster_event")
    fields = {
        "run_id": meta.get("run_id"),
        # Our op names are `<job>__<step>`.
        "step": step.rsplit("__", 1)[-1] if isinstance(step, str) else None,
        "job_id": tags.get("wf/job_id"),
        "workflow": tags.get("wf/workflow"),
        "user": tags.get("wf/user"),
        "attempt": int(tags["wf/attempt"]) if str(tags.get("wf/attempt", "")).isdigit() else None,
        "event": getattr(event, "event_type_value", None),
    }
    return {k: v for k, v in fields.items() if v is not None}


def json_handler(
    stream: IO[str] | None = None, redactor: Redactor | None = None
) -> logging.Handler:
    """A stream handler (stderr by default) writing redacted JSON lines."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter(redactor))
    handler.set_name("wf-json")
    return handler


def install_json_logging(level: int = logging.INFO) -> logging.Handler:
    """JSON lines on stderr for the root logger, once per process; the handler."""
    root = logging.getLogger()
    for handler in root.handlers:
        if handler.get_name() == "wf-json":
            return handler
    handler = json_handler()
    root.addHandler(handler)
    if root.level > level or root.level == logging.NOTSET:
        root.setLevel(level)
    return handler


def dagster_python_logs() -> dict[str, Any]:
    """dagster.yaml's `python_logs`: every run's log records (steps' `context.log`, Dagster's
    events) also go out as JSON lines on stderr, with run id, step and the run's job tags."""
    return {
        "dagster_handler_config": {
            "handlers": {
                "wfJson": {
                    "class": "logging.StreamHandler",
                    # Dagster's step start/success/failure events are DEBUG records.
                    "level": "DEBUG",
                    "stream": "ext://sys.stderr",
                    "formatter": "wfJson",
                }
            },
            "formatters": {"wfJson": {"()": "wf_core.logging_json.JsonFormatter"}},
        }
    }
