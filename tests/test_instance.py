"""dagster.yaml: SQLite by default, PostgreSQL on psycopg2, queued coordinator at 1 s."""

from __future__ import annotations

import dagster as dg
import pytest
import yaml

from runtime.instance import instance_config, postgres_storage, write_instance_yaml


def test_postgres_url_uses_the_psycopg2_scheme() -> None:
    storage = postgres_storage("postgresql://alice:p%40ss@db.internal:6543/dagster?sslmode=require")
    assert storage == {
        "postgres": {
            "postgres_db": {
                "username": "alice",
                "password": "p@ss",
                "hostname": "db.internal",
                "db_name": "dagster",
                "port": 6543,
                "scheme": "postgresql+psycopg2",
                "params": {"sslmode": "require"},
            }
        }
    }


def test_non_postgres_url_is_refused() -> None:
    with pytest.raises(ValueError, match="postgresql://"):
        postgres_storage("mysql://root@localhost/x")


def test_coordinator_and_monitoring(tmp_path) -> None:
    config = instance_config(tmp_path, None)
    assert config["storage"] == {"sqlite": {"base_dir": str(tmp_path / "storage")}}
    assert config["run_coordinator"]["config"]["dequeue_interval_seconds"] == 1
    assert config["run_monitoring"]["enabled"] is True


def test_written_yaml_loads_as_a_real_instance(tmp_path) -> None:
    path = write_instance_yaml(tmp_path / "home", pg_url="")
    assert yaml.safe_load(path.read_text())["storage"]["sqlite"]
    with dg.DagsterInstance.from_config(str(tmp_path / "home")) as instance:
        assert type(instance.run_coordinator).__name__ == "QueuedRunCoordinator"
        assert instance.run_coordinator.dequeue_interval_seconds == 1


def test_instance_fixture_really_uses_its_database(instance, request) -> None:
    backend = request.node.callspec.params["instance"]
    expected = {"sqlite": "SqliteRunStorage", "postgres": "PooledPostgresRunStorage"}[backend]
    assert type(instance.run_storage).__name__ == expected
    instance.add_dynamic_partitions("jobs", ["a"])
    assert instance.get_dynamic_partitions("jobs") == ["a"]


def _sessions(url: str) -> int:
    import psycopg2

    conn = psycopg2.connect(url)
    with conn.cursor() as cur:
        cur.execute("SELECT sessions FROM pg_stat_database WHERE datname = current_database()")
        (count,) = cur.fetchone()
    conn.close()
    return int(count)


def test_pooled_postgres_storage_keeps_its_connections_and_survives_a_fork(
    tmp_path, pg_url
) -> None:
    import os

    write_instance_yaml(tmp_path / "home", pg_url=pg_url)
    with dg.DagsterInstance.from_config(str(tmp_path / "home")) as instance:
        instance.get_runs(limit=1)
        before = _sessions(pg_url)
        for _ in range(50):
            instance.get_runs(limit=1)
            instance.get_dynamic_partitions("jobs")
        # dagster-postgres' own NullPool would have opened 100 connections here.
        assert _sessions(pg_url) - before <= 4
        pid = os.fork()
        if pid == 0:  # the child uses its own connections, not the parent's
            code = 0
            try:
                instance.add_dynamic_partitions("jobs", ["from-child"])
            except BaseException:
                code = 1
            os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        # The parent's kept connection still works after the child exited.
        assert "from-child" in instance.get_dynamic_partitions("jobs")
