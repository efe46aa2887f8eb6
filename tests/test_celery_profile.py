"""The celery profile (RUN_LAUNCHER=celery): dagster.yaml, refusals, priorities, liveness."""

from __future__ import annotations

import dagster as dg
import pytest
from dagster._core.launcher import WorkerStatus

from runtime.celery_config import ProfileError, broker_priority, launcher_config
from runtime.celery_launcher import WorkerLiveness, WorkflowCeleryRunLauncher
from runtime.celery_worker import worker_argv
from runtime.instance import instance_config, write_instance_yaml
from tests.fakes.clock import FakeClock

REDIS = "redis://127.0.0.1:6379/15"


@pytest.fixture
def celery_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUN_LAUNCHER", "celery")
    monkeypatch.setenv("CELERY_BROKER_URL", REDIS)
    monkeypatch.delenv("CELERY_RESULT_BACKEND", raising=False)
    monkeypatch.delenv("WF_STATE_DB_URL", raising=False)


def test_default_profile_is_unchanged(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RUN_LAUNCHER", raising=False)
    config = instance_config(tmp_path, None)
    assert config["run_launcher"]["class"] == "PrewarmedRunLauncher"
    assert "max_resume_run_attempts" not in config["run_monitoring"]


def test_celery_profile_refuses_sqlite(tmp_path, celery_env) -> None:
    with pytest.raises(ProfileError, match="DAGSTER_PG_URL"):
        instance_config(tmp_path, None)


def test_celery_profile_refuses_a_missing_or_odd_broker(tmp_path, celery_env, monkeypatch) -> None:
    pg = "postgresql://postgres@127.0.0.1:5432/test"
    monkeypatch.setenv("DAGSTER_PG_URL", pg)
    monkeypatch.delenv("CELERY_BROKER_URL")
    with pytest.raises(ProfileError, match="CELERY_BROKER_URL"):
        instance_config(tmp_path, pg)
    monkeypatch.setenv("CELERY_BROKER_URL", "sqs://queue")
    with pytest.raises(ProfileError, match="redis:// or amqp://"):
        instance_config(tmp_path, pg)


def test_celery_profile_config(tmp_path, celery_env, monkeypatch) -> None:
    pg = "postgresql://postgres@127.0.0.1:5432/test"
    monkeypatch.setenv("DAGSTER_PG_URL", pg)
    monkeypatch.setenv("CELERY_RESUME_ATTEMPTS", "3")
    config = instance_config(tmp_path, pg)
    launcher = config["run_launcher"]
    assert launcher["module"] == "runtime.celery_launcher"
    assert launcher["config"]["broker"] == REDIS
    # Task states must be readable by the daemon: never rpc://.
    assert launcher["config"]["backend"] == REDIS
    assert launcher["config"]["config_source"]["result_extended"] is True
    assert config["run_monitoring"]["max_resume_run_attempts"] == 3
    assert config["run_monitoring"]["enabled"] is True


def test_rabbitmq_results_go_to_postgres(celery_env, monkeypatch) -> None:
    monkeypatch.setenv("CELERY_BROKER_URL", "amqp://guest:guest@127.0.0.1:5672//")
    monkeypatch.setenv("DAGSTER_PG_URL", "postgresql://u:p@db:5432/dagster")
    backend = launcher_config()["config"]["backend"]
    assert backend == "db+postgresql+psycopg2://u:p@db:5432/dagster"


def test_the_launcher_loads_from_dagster_yaml(tmp_path, celery_env, monkeypatch, pg_url) -> None:
    monkeypatch.setenv("DAGSTER_PG_URL", pg_url)
    write_instance_yaml(tmp_path, pg_url)
    with dg.DagsterInstance.from_config(str(tmp_path)) as instance:
        launcher = instance.run_launcher
        assert isinstance(launcher, WorkflowCeleryRunLauncher)
        assert launcher.supports_resume_run
        run = instance.create_run_for_job(dg.GraphDefinition("noop").to_job())
        # A run with no task yet is unknown; one whose task is queued reads as healthy.
        assert launcher.check_run_worker_health(run).status == WorkerStatus.UNKNOWN
        queued = run.with_tags({"dagster-celery/task_id": "never-sent"})
        assert launcher.check_run_worker_health(queued).status == WorkerStatus.RUNNING


@pytest.mark.parametrize("broker", [REDIS, "amqp://guest@localhost//"])
def test_continuations_go_first_at_the_broker(broker: str) -> None:
    continuation, new, low = (broker_priority(p, broker) for p in (10, 0, -10))
    if broker.startswith("redis"):  # Redis lists are read lowest number first
        assert continuation < new < low
    else:
        assert continuation > new > low
    assert all(0 <= p <= 9 for p in (continuation, new, low))


def test_liveness_needs_silence_before_calling_a_worker_dead() -> None:
    clock = FakeClock()
    answering = {"wf@a", "wf@b"}
    liveness = WorkerLiveness(lambda: set(answering), clock, interval=5, silence=12)
    assert liveness.alive("wf@a") is True
    assert liveness.alive("wf@zz") is None  # we have not listened long enough
    answering.discard("wf@b")
    for _ in range(2):
        clock.advance(5)
        assert liveness.alive("wf@b") is True  # unheard for 10 s only
    clock.advance(5)
    assert liveness.alive("wf@b") is False
    assert liveness.alive("wf@a") is True
    assert liveness.alive("wf@zz") is False


def test_worker_command_names_the_host_and_concurrency() -> None:
    argv = worker_argv(4, ["dagster"], "wf")
    assert "--concurrency=4" in argv and "--hostname=wf@%h" in argv
    assert argv[argv.index("-A") + 1] == "runtime.celery_app"
