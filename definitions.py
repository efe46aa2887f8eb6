"""The composition root: the code location's one Definitions object. Nothing imports it.

Resources are chosen here, per deployment, from the environment (offline defaults:
no account, no network); assets, jobs and sensors come from their factories.
`workspace.yaml` and `dagster dev -m definitions` load `defs`.
"""

from __future__ import annotations

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
from sensors.owners import make_owners_sensor, owner_settings
from sensors.parked_steps import make_parked_steps_sensor
from sensors.retry_sensor import make_retry_sensor
from wf_assets.checkpoints import CheckpointIOManager
from wf_assets.factory import CHECKPOINT_IO_KEY, build_workflow_assets, build_workflow_job
from wf_core import settings
from wf_core.alerting import alert_settings
from wf_core.config import EngineSettings, resource_variable_set, secret_value
from wf_core.logging_json import install_json_logging
from wf_core.polling import poll_settings
from wf_core.retry_policy import RetrySettings, retry_settings_of
from wf_core.specs import WorkflowSpec, load_specs
from wf_store.spec_versions import with_retired
from wf_store.state_db import upgrade_at_start


def build_model_provider(config: EngineSettings | None = None) -> ModelProvider:
    """Replicate when REPLICATE_API_TOKEN is set, else the offline local provider."""
    config = config or EngineSettings.from_env()
    if resource_variable_set("REPLICATE_API_TOKEN"):
        extra: dict[str, Any] = {}
        if resource_variable_set("REPLICATE_API_BASE_URL"):
            extra["base_url"] = dg.EnvVar("REPLICATE_API_BASE_URL")
        return ReplicateModelProvider(
            api_token=dg.EnvVar("REPLICATE_API_TOKEN"),
            webhooks=settings.public_base_url(config) is not None,
            **extra,
        )
    return LocalModelProvider(
        latency_seconds=config.local_provider_latency,
        fault_file=config.local_provider_faults,
        call_log=config.local_provider_call_log,
        api_key=secret_value(config.local_provider_api_key),
    )


def build_media_storage(config: EngineSettings | None = None) -> MediaStorage:
    """Cloudinary when CLOUDINARY_URL is set, else a local folder (MEDIA_DIR)."""
    config = config or EngineSettings.from_env()
    if resource_variable_set("CLOUDINARY_URL"):
        return CloudinaryMediaStorage(
            cloudinary_url=dg.EnvVar("CLOUDINARY_URL"),
            upload_prefix=config.cloudinary_upload_prefix,
        )
    return LocalMediaStorage(
        media_dir=str(settings.media_dir(config)),
        base_url=config.media_base_url,
    )


def build_state_database(config: EngineSettings | None = None) -> StateDatabase:
    """The state database and the poller's limits, from the environment."""
    config = config or EngineSettings.from_env()
    poll = poll_settings(config)
    return StateDatabase(
        url=settings.state_db_url(config=config),
        public_base_url=settings.public_base_url(config),
        poll_interval_seconds=poll.interval,
        poll_max_per_second=poll.max_per_second,
        handoff_batch=poll.handoff_batch,
    )


def build_alert_channels(config: EngineSettings | None = None) -> AlertChannels:
    """The alert webhook and/or SMTP e-mail (ALERT_*); neither set: alerts are only logged."""
    config = config or EngineSettings.from_env()
    secret: dict[str, Any] = (
        {"smtp_password": dg.EnvVar("ALERT_SMTP_PASSWORD")}
        if resource_variable_set("ALERT_SMTP_PASSWORD")
        else {}
    )
    webhook = resource_variable_set("ALERT_WEBHOOK_URL")
    return AlertChannels(
        webhook_url=dg.EnvVar("ALERT_WEBHOOK_URL") if webhook else None,
        smtp_host=config.alert_smtp_host,
        smtp_port=config.alert_smtp_port,
        smtp_from=config.alert_smtp_from,
        smtp_to=config.alert_smtp_to,
        smtp_user=config.alert_smtp_user,
        **secret,
    )


def build_resources(config: EngineSettings | None = None) -> dict[str, Any]:
    """Resources chosen from the environment: offline defaults, no account needed."""
    config = config or EngineSettings.from_env()
    return {
        "model_provider": build_model_provider(config),
        "media_storage": build_media_storage(config),
        "predictions": build_state_database(config),
        CHECKPOINT_IO_KEY: CheckpointIOManager(base_url=settings.checkpoint_url(config)),
        "alert_channels": build_alert_channels(config),
    }


def build_definitions(
    specs: dict[str, WorkflowSpec],
    resources: dict[str, Any] | None = None,
    retry_settings: RetrySettings | None = None,
    config: EngineSettings | None = None,
) -> dg.Definitions:
    """Assets and a job per workflow, plus resources and sensors."""
    config = config or EngineSettings.from_env()
    assets = [asset for spec in specs.values() for asset in build_workflow_assets(spec)]
    jobs = [build_workflow_job(spec) for spec in specs.values()]
    resources = {"alert_channels": AlertChannels(), **(resources or build_resources(config))}
    channels = resources["alert_channels"]
    return dg.Definitions(
        assets=assets,
        jobs=jobs,
        sensors=[
            make_retry_sensor(specs, jobs, retry_settings or retry_settings_of(config)),
            make_parked_steps_sensor(specs, jobs),
            make_owners_sensor(specs, jobs, owner_settings(config)),
            make_credits_sensor(specs),
            make_callbacks_sensor(specs, settings=config),
            make_metrics_sensor(specs),
            make_alerts_sensor(alert_settings(config), running=channels.configured),
        ],
        resources=resources,
        # Runs launched by sensors too: one process per run, steps in it.
        executor=dg.in_process_executor,
    )


# Every setting is read and checked once, here: a bad value stops the load with its name.
CONFIG = EngineSettings.from_env()
if CONFIG.log_format == "json":
    install_json_logging()  # this process's own Python loggers as JSON lines (runs: dagster.yaml)
# The spec files' valid workflows (a bad file is logged and skipped), and any removed
# workflow whose open jobs still run on it. The shared code server reloads this module
# when a spec file changes (runtime.code_server). The state database is upgraded first
# (once per process; one that does not answer is upgraded on first use instead).
upgrade_at_start(settings.state_db_url(config=CONFIG))
defs = build_definitions(
    with_retired(load_specs(settings.specs_dir(CONFIG)), settings.state_db_url(config=CONFIG)),
    config=CONFIG,
)
