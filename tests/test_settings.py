"""Settings declared once: README's table is rendered from them, every variable parses, a bad
value of any of them stops start-up (the code location load, `create_app`) naming it, and the
defaults are the ones the code had before."""

from __future__ import annotations

import os
import re
import runpy
import subprocess
import sys
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

import pytest
from pydantic import SecretStr
from pydantic.fields import FieldInfo

from bridge_api.app import config_from_env, create_app
from bridge_api.settings import BridgeSettings
from runtime import celery_config, instance
from scripts.config_table import (
    README,
    readme_table,
    render,
    type_parts,  # the same reading of types the table uses
)
from sensors.callbacks import MAX_ATTEMPTS
from sensors.owners import OwnerSettings, owner_settings_from_env
from wf_core import settings
from wf_core.alerting import AlertSettings, alert_settings_from_env
from wf_core.config import (
    RESOURCE_VARIABLES,
    EngineSettings,
    SettingsError,
    SharedSettings,
)
from wf_core.polling import PollSettings, poll_settings_from_env
from wf_core.retry_policy import RetrySettings, retry_settings_from_env
from wf_core.settings import REPO_ROOT

ENGINE = EngineSettings.model_fields
BRIDGE = BridgeSettings.model_fields
EVERY_VARIABLE = sorted(
    {n.upper() for n in ENGINE} | {n.upper() for n in BRIDGE} | set(RESOURCE_VARIABLES)
)
PRODUCT = ["wf_core", "wf_store", "resources", "wf_assets", "sensors", "runtime", "bridge_api"]
# Keys of a WSGI environ, not of the process environment.
WSGI_KEYS = {"PATH_INFO", "REQUEST_METHOD", "REMOTE_ADDR", "REMOTE_PORT"}


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No declared variable set: every setting at its default."""
    for name in EVERY_VARIABLE:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def _kind(field: FieldInfo) -> Any:
    return type_parts(field.annotation)[0][0]


def good_value(name: str, field: FieldInfo) -> tuple[str, Any]:
    """A valid value other than the default, as text, and as it is parsed."""
    kind = _kind(field)
    if get_origin(kind) is Literal:
        choice = next(v for v in get_args(kind) if v != field.default)
        return str(choice).upper(), choice  # choices compare case-insensitively
    if name == "provider_rate_limits":
        return "local=5/60", "local=5/60"
    if name in ("ratelimit_execute", "ratelimit_retry"):
        return "7 per second", "7 per second"
    if kind is int:
        return "3", 3
    if kind is float:
        return "0.5", 0.5
    return "some-value-1", "some-value-1"


def bad_values(name: str, field: FieldInfo) -> list[str]:
    """Values the field must refuse (none for free text)."""
    kind = _kind(field)
    if get_origin(kind) is Literal:
        return ["bogus"]
    if name == "provider_rate_limits":
        return ["replicate=many"]
    if name in ("ratelimit_execute", "ratelimit_retry"):
        return ["ten per fortnight"]
    if kind in (int, float):
        # Every number here is bounded below (a count, a port, seconds).
        return ["abc", "-5"] + (["nan"] if kind is float else [])
    return []


def _bad_cases(fields: dict[str, FieldInfo]) -> list[Any]:
    return [
        pytest.param(name.upper(), value, id=f"{name.upper()}={value}")
        for name, field in fields.items()
        for value in bad_values(name, field)
    ]


# --- README ---------------------------------------------------------------------------


def test_readme_configuration_table_is_the_rendered_settings() -> None:
    assert readme_table(README.read_text()) == render()


def test_the_table_names_every_variable_once_per_reader() -> None:
    table = render()
    for name in EVERY_VARIABLE:
        assert f"| `{name}` |" in table, name
    # LOG_FORMAT: one row for the engine (default text), one for the bridge (default json).
    assert table.count("| `LOG_FORMAT` |") == 2
    assert table.count("| `MAX_STREAMS` |") == 1


def test_every_variable_the_product_reads_is_declared() -> None:
    """A new os.environ read (or dg.EnvVar) without a setting fails here."""
    pattern = re.compile(
        r"""(?:environ\.get\(|environ\[|env\.get\(|getenv\(|EnvVar\(|setdefault\()\s*f?["']([A-Z][A-Z0-9_]+)"""
    )
    sources = [REPO_ROOT / "definitions.py"]
    sources += [p for d in PRODUCT for p in (REPO_ROOT / d).rglob("*.py")]
    read = {m for path in sources for m in pattern.findall(path.read_text())}
    assert read - WSGI_KEYS - set(EVERY_VARIABLE) == set()


# --- parsing ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cls", "name"),
    [(EngineSettings, n) for n in ENGINE]
    + [(BridgeSettings, n) for n in BRIDGE if n not in ENGINE],
)
def test_every_setting_parses_from_its_variable(cls, name: str, clean_env) -> None:
    field = cls.model_fields[name]
    text, parsed = good_value(name, field)
    config = cls.from_env({name.upper(): text})
    value = getattr(config, name)
    if isinstance(value, SecretStr):
        value = value.get_secret_value()
    assert value == parsed
    assert value != field.default
    # pydantic-settings reading the process environment agrees with `from_env`.
    clean_env.setenv(name.upper(), text)
    assert cls() == config == cls.from_env()


def test_an_empty_variable_is_unset(clean_env) -> None:
    assert EngineSettings.from_env({"HANDOFF_BATCH": "", "RUN_LAUNCHER": ""}) == EngineSettings()


def test_a_given_environment_is_read_alone(clean_env) -> None:
    """Another process's environment is not mixed with this one's."""
    clean_env.setenv("HANDOFF_BATCH", "9")
    clean_env.setenv("RUN_LAUNCHER", "celery")
    assert EngineSettings.from_env({"HANDOFF_BATCH": "3"}).handoff_batch == 3
    assert EngineSettings.from_env({}).run_launcher == "prewarmed"
    assert EngineSettings.from_env().handoff_batch == EngineSettings().handoff_batch == 9
    assert settings.state_db_url(Path("/h"), {}) == "sqlite:////h/wf_state.db"


# --- a bad value stops start-up, naming the variable -------------------------------------


def _load_code_location() -> None:
    """What `dagster` does with workspace.yaml: run definitions.py as the code location."""
    runpy.run_path(str(REPO_ROOT / "definitions.py"), run_name="code_location")


@pytest.mark.parametrize(("variable", "value"), _bad_cases(ENGINE))
def test_a_bad_value_stops_the_code_location_naming_it(
    variable: str, value: str, clean_env, tmp_path: Path
) -> None:
    clean_env.setenv("DAGSTER_HOME", str(tmp_path))
    clean_env.setenv(variable, value)
    with pytest.raises(SettingsError, match=rf"^Invalid setting {variable}: "):
        _load_code_location()


@pytest.mark.parametrize(("variable", "value"), _bad_cases(BRIDGE))
def test_a_bad_value_stops_the_bridge_naming_it(variable: str, value: str, clean_env) -> None:
    clean_env.setenv("AUTH_MODE", "disabled")
    clean_env.setenv(variable, value)
    with pytest.raises(SettingsError, match=rf"^Invalid setting {variable}: "):
        create_app({"PREDICTION_STORE": object()})


def test_the_loads_succeed_with_good_values(clean_env, tmp_path: Path) -> None:
    """The refusals above come from the bad value, not from the start path failing anyway."""
    clean_env.setenv("DAGSTER_HOME", str(tmp_path))
    _load_code_location()
    clean_env.setenv("AUTH_MODE", "disabled")
    clean_env.setenv("MAX_STREAMS", "7")
    clean_env.setenv("RATELIMIT_EXECUTE", "3 per second")
    app = create_app({"PREDICTION_STORE": object()})
    assert app.config["MAX_STREAMS"] == 7 and app.config["RATELIMIT_EXECUTE"] == "3 per second"


def test_dagster_refuses_to_load_the_code_location_with_a_bad_value(tmp_path: Path) -> None:
    env = {**os.environ, "DAGSTER_HOME": str(tmp_path), "POLL_INTERVAL_SECONDS": "-3"}
    result = subprocess.run(
        [str(Path(sys.executable).with_name("dagster")), "definitions", "validate"]
        + ["-w", "workspace.yaml"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert "Invalid setting POLL_INTERVAL_SECONDS: Input should be greater than 0" in output


def test_a_secret_is_never_shown_in_the_refusal() -> None:
    class WithSecret(SharedSettings):
        token: SecretStr = SecretStr("x")
        count: int = 1

    with pytest.raises(SettingsError) as refused:
        WithSecret.from_env({"TOKEN": ["not", "text"], "COUNT": "lots"})
    message = str(refused.value)
    assert "Invalid setting TOKEN" in message and "not" not in message
    assert "Invalid setting COUNT" in message and "'lots'" in message


# --- defaults are today's, through the real consumers ------------------------------------


def test_bridge_defaults_are_unchanged(clean_env) -> None:
    config = config_from_env({})
    home = settings.dagster_home()
    assert config == {
        "DAGSTER_GRAPHQL_URL": "http://127.0.0.1:3000/graphql",
        "MEDIA_DIR": str(settings.media_dir()),
        "UPLOAD_DIR": str(home / "uploads"),
        "MAX_UPLOAD_MB": 50.0,
        "SPECS_DIR": None,
        "RATELIMIT_EXECUTE": "10 per minute",
        "RATELIMIT_RETRY": "20 per minute",
        "RATELIMIT_STORAGE_URI": "memory://",
        "RATELIMIT_KEY_PREFIX": "",
        "STREAM_POLL_SECONDS": 1.0,
        "STREAM_ACTIVE_POLL_SECONDS": 0.25,
        "STREAM_HEARTBEAT_SECONDS": 15.0,
        "DAGSTER_PG_URL": None,
        "STREAM_NOTIFIED_POLL_SECONDS": 2.0,
        "MAX_STREAMS": 1000,
        "STREAM_RETRY_AFTER_SECONDS": 5,
        "REPLICATE_WEBHOOK_SECRET": None,
        "METRICS_TOKEN": None,
        "LOG_FORMAT": "json",
        "CREDITS": "off",
        "CALLBACK_SIGNING_SECRET": None,
        "CALLBACK_ALLOWED_HOSTS": "",
        "ALLOW_HTTP_CALLBACKS": "off",
        "WEB_DIST_DIR": None,
        "SUPABASE_ANON_KEY": None,
    }


def test_bridge_config_keeps_its_keys_and_the_auth_settings_as_text(clean_env) -> None:
    config = config_from_env(
        {"MAX_STREAMS": "12", "METRICS_TOKEN": "t" * 20, "JWKS_CACHE_SECONDS": "60"}
    )
    assert config["MAX_STREAMS"] == 12
    assert config["METRICS_TOKEN"] == "t" * 20
    assert config["JWKS_CACHE_SECONDS"] == "60"


def test_engine_defaults_are_unchanged(clean_env, tmp_path: Path) -> None:
    assert poll_settings_from_env() == PollSettings()
    assert alert_settings_from_env({}) == AlertSettings()
    assert retry_settings_from_env() == RetrySettings()
    assert owner_settings_from_env({}) == OwnerSettings()
    assert EngineSettings().callback_max_attempts == MAX_ATTEMPTS
    assert celery_config.monitoring_config({}) == {
        "max_resume_run_attempts": celery_config.DEFAULT_RESUME_ATTEMPTS,
        "poll_interval_seconds": celery_config.DEFAULT_MONITOR_INTERVAL_SECONDS,
    }
    assert celery_config.queues({}) == [celery_config.DEFAULT_QUEUE]
    assert not celery_config.celery_enabled({})
    config = instance.instance_config(tmp_path, None)
    coordinator = config["run_coordinator"]["config"]
    assert coordinator["max_concurrent_runs"] == instance.MAX_CONCURRENT_RUNS == 6
    assert instance.runs_per_user(6) == 5
    assert config["run_launcher"]["class"] == "PrewarmedRunLauncher"
    assert config["compute_logs"]["class"] == "NoOpComputeLogManager"
    assert "python_logs" not in config
    assert settings.state_db_url(tmp_path, {}) == f"sqlite:///{tmp_path / 'wf_state.db'}"
    assert settings.checkpoint_url() == str(settings.dagster_home() / "checkpoints")
    assert settings.public_base_url() is None


def test_engine_settings_reach_their_consumers(clean_env, tmp_path: Path) -> None:
    env = {
        "POLL_INTERVAL_SECONDS": "12",
        "MAX_CONCURRENT_RUNS": "9",
        "MAX_RUNS_PER_USER": "0",
        "CELERY_RESUME_ATTEMPTS": "4",
        "RETRY_BACKOFF_CAP": "99",
        "OWNER_CHECK_BATCH": "7",
        "PUBLIC_BASE_URL": "https://example.test/",
    }
    for name, value in env.items():
        clean_env.setenv(name, value)
    assert poll_settings_from_env().interval == 12.0
    coordinator = instance.instance_config(tmp_path, None)["run_coordinator"]["config"]
    assert coordinator["max_concurrent_runs"] == 9
    assert instance.runs_per_user(9) == 0
    assert celery_config.monitoring_config()["max_resume_run_attempts"] == 4
    assert retry_settings_from_env().backoff_cap == 99.0
    assert owner_settings_from_env().batch == 7
    assert settings.public_base_url() == "https://example.test"
    # Another process's environment, given as a mapping, is read as given.
    assert settings.state_db_url(tmp_path, {"WF_STATE_DB_URL": "sqlite:///x.db"}) == (
        "sqlite:///x.db"
    )


def test_continuation_worker_reaches_the_coordinator_and_the_stack(
    clean_env, tmp_path: Path
) -> None:
    """CONTINUATION_WORKER (on by default) picks the run coordinator that hands runs to the
    warm worker, on PostgreSQL with the prewarmed launcher only; off, Dagster's queue."""
    pg = "postgresql://postgres@127.0.0.1:5432/x"
    assert EngineSettings.from_env({}).continuation_worker == "on"
    warm = instance.instance_config(tmp_path, pg)["run_coordinator"]
    assert (warm["module"], warm["class"]) == ("runtime.coordinator", "WarmRunCoordinator")
    assert instance.instance_config(tmp_path, None)["run_coordinator"]["class"] == (
        "QueuedRunCoordinator"
    )
    assert instance.warm_worker_enabled(pg, {})
    assert not instance.warm_worker_enabled(None, {})
    assert not instance.warm_worker_enabled(pg, {"RUN_LAUNCHER": "celery"})
    clean_env.setenv("CONTINUATION_WORKER", "OFF")
    assert not instance.warm_worker_enabled(pg)
    off = instance.instance_config(tmp_path, pg)["run_coordinator"]
    assert off["class"] == "QueuedRunCoordinator"
