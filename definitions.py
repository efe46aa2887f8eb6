"""The composition root: the code location's one Definitions object. Nothing imports it.

Resources are chosen here, per deployment, from the environment (offline defaults:
no account, no network); assets, jobs and sensors come from their factories.
`workspace.yaml` and `dagster dev -m definitions` load `defs`.
"""

from __future__ import annotations

import os
from typing import Any

import dagster as dg

from resources.alert_channels import AlertChannels
from resources.cloudinary_storage import CloudinaryMediaStorage
from resources.local_media import LocalMediaStorage
from resources.local_provider import LocalModelProvider
from resources.media_storage import MediaStorage
from resources.model_provider import ModelProvider
from resources.replicate_provider import ReplicateModelProvider
from resources.state_database import StateDatabase
from sensors.alerts import make_alerts_sensor
from sensors.callbacks import make_callbacks_sensor
from sensors.credits import make_credits_sensor
from sensors.metrics_sensor import make_metrics_sensor
from sensors.owners import make_owners_sensor, owner_settings_from_env
from sensors.parked_steps import make_parked_steps_sensor
from sensors.retry_sensor import make_retry_sensor
from wf_assets.checkpoints import CheckpointIOManager
from wf_assets.factory import CHECKPOINT_IO_KEY, build_workflow_assets, build_workflow_job
from wf_core import settings
from wf_core.alerting import alert_settings_from_env
from wf_core.logging_json import install_json_logging
from wf_core.polling import poll_settings_from_env
from wf_core.retry_policy import RetrySettings, retry_settings_from_env
from wf_core.specs import WorkflowSpec, load_specs
from wf_store.spec_versions import with_retired
from wf_store.state_db import upgrade_at_start


def build_model_provider() -> ModelProvider:
    """Replicate when REPLICATE_API_TOKEN is set, else the offline local provider."""
    if os.environ.get("REPLICATE_API_TOKEN"):
        extra: dict[str, Any] = {}
        if os.environ.get("REPLICATE_API_BASE_URL"):
            extra["base_url"] = dg.EnvVar("REPLICATE_API_BASE_URL")
        return ReplicateModelProvider(
            api_token=dg.EnvVar("REPLICATE_API_TOKEN"),
            webhooks=settings.public_base_url() is not None,
            **extra,
        )
    return LocalModelProvider(
        latency_seconds=float(os.environ.get("LOCAL_PROVIDER_LATENCY", "0") or 0),
        fault_file=os.environ.get("LOCAL_PROVIDER_FAULTS") or None,
        call_log=os.environ.get("LOCAL_PROVIDER_CALL_LOG") or None,
        api_key=os.environ.get("LOCAL_PROVIDER_API_KEY") or None,
    )


def build_media_storage() -> MediaStorage:
    """Cloudinary when CLOUDINARY_URL is set, else a local folder (MEDIA_DIR)."""
    if os.environ.get("CLOUDINARY_URL"):
        return CloudinaryMediaStorage(
            cloudinary_url=dg.EnvVar("CLOUDINARY_URL"),
            upload_prefix=os.environ.get("CLOUDINARY_UPLOAD_PREFIX") or None,
        )
    return LocalMediaStorage(
        media_dir=str(settings.media_dir()),
        base_url=os.environ.get("MEDIA_BASE_URL", "/media"),
    )


def build_state_database() -> StateDatabase:
    """The state database and the poller's limits, from the environment."""
    poll = poll_settings_from_env()
    return StateDatabase(
        url=settings.state_db_url(),
        public_base_url=settings.public_base_url(),
        poll_interval_seconds=poll.interval,
        poll_max_per_second=poll.max_per_second,
        handoff_batch=poll.handoff_batch,
    )


def build_alert_channels() -> AlertChannels:
    """The alert webhook and/or SMTP e-mail (ALERT_*); neither set: alerts are only logged."""
    env = os.environ
    secret: dict[str, Any] = (
        {"smtp_password": dg.EnvVar("ALERT_SMTP_PASSWORD")}
        if env.get("ALERT_SMTP_PASSWORD")
        else {}
    )
    return AlertChannels(
        webhook_url=dg.EnvVar("ALERT_WEBHOOK_URL") if env.get("ALERT_WEBHOOK_URL") else None,
        smtp_host=env.get("ALERT_SMTP_HOST") or None,
        smtp_port=int(env.get("ALERT_SMTP_PORT") or 25),
        smtp_from=env.get("ALERT_SMTP_FROM") or "alerts@localhost",
        smtp_to=env.get("ALERT_SMTP_TO") or None,
        smtp_user=env.get("ALERT_SMTP_USER") or None,
        **secret,
    )


def build_resources() -> dict[str, Any]:
    """Resources chosen from the environment: offline defaults, no account needed."""
    return {
        "model_provider": build_model_provider(),
        "media_storage": build_media_storage(),
        "predictions": build_state_database(),
        CHECKPOINT_IO_KEY: CheckpointIOManager(base_url=settings.checkpoint_url()),
        "alert_channels": build_alert_channels(),
    }


def build_definitions(
    specs: dict[str, WorkflowSpec],
    resources: dict[str, Any] | None = None,
    retry_settings: RetrySettings | None = None,
) -> dg.Definitions:
    """Assets and a job per workflow, plus resources and sensors."""
    assets = [asset for spec in specs.values() for asset in build_workflow_assets(spec)]
    jobs = [build_workflow_job(spec) for spec in specs.values()]
    resources = {"alert_channels": AlertChannels(), **(resources or build_resources())}
    channels = resources["alert_channels"]
    return dg.Definitions(
        assets=assets,
        jobs=jobs,
        sensors=[
            make_retry_sensor(specs, jobs, retry_settings or retry_settings_from_env()),
            make_parked_steps_sensor(specs, jobs),
            make_owners_sensor(specs, jobs, owner_settings_from_env()),
            make_credits_sensor(specs),
            make_callbacks_sensor(specs),
            make_metrics_sensor(specs),
            make_alerts_sensor(alert_settings_from_env(), running=channels.configured),
        ],
        resources=resources,
        # Runs launched by sensors too: one process per run, steps in it.
        executor=dg.in_process_executor,
    )


if (os.environ.get("LOG_FORMAT") or "").lower() == "json":
    install_json_logging()  # this process's own Python loggers as JSON lines (runs: dagster.yaml)
# The spec files' valid workflows (a bad file is logged and skipped), and any removed
# workflow whose open jobs still run on it. The shared code server reloads this module
# when a spec file changes (runtime.code_server). The state database is upgraded first
# (once per process; one that does not answer is upgraded on first use instead).
upgrade_at_start(settings.state_db_url())
defs = build_definitions(with_retired(load_specs(), settings.state_db_url()))
