"""gevent is patched before anything imports `ssl`: the production config starts without
gevent's MonkeyPatchWarning, and the threaded worker is never patched."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.test_gunicorn_serving import Gunicorn, _closed_port, raw_request
from wf_core.settings import REPO_ROOT

CONFIG = REPO_ROOT / "bridge_api" / "gunicorn_conf.py"
THREAD_WORKER = "bridge_api.gunicorn_worker.JsonErrorThreadWorker"
HEALTHZ = b"GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
# What gevent prints when it patches `ssl` after a module took its own SSLContext.
PATCHED_LATE = ("MonkeyPatchWarning", "Monkey-patching ssl after ssl has already been imported")


def _production_env(tmp_path: Path) -> dict[str, str]:
    """As the README's production command: Supabase's JWKS over HTTPS (fetched only on a
    token, so a closed port is enough to start)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GUNICORN")}
    env.pop("WEB_CONCURRENCY", None)
    env.pop("RATELIMIT_STORAGE_URI", None)
    return {
        **env,
        "AUTH_MODE": "supabase",
        "SUPABASE_URL": f"https://127.0.0.1:{_closed_port()}",
        "DAGSTER_GRAPHQL_URL": f"http://127.0.0.1:{_closed_port()}/graphql",
        "MEDIA_DIR": str(tmp_path / "media"),
    }


def _serve_once(tmp_path: Path, args: list[str]) -> str:
    """Start gunicorn with the config, wait for any answer on /healthz, stop it; its output."""
    # Its own control socket: the default path is shared by every gunicorn of this user.
    args = [*args, "--control-socket", str(tmp_path / "ctl.sock")]
    server = Gunicorn(tmp_path, args, _production_env(tmp_path))
    try:
        deadline = time.monotonic() + 60
        status = None
        while status is None and time.monotonic() < deadline:
            if server.proc.poll() is not None:
                pytest.fail(f"gunicorn exited {server.proc.returncode}:\n{server.log.read_text()}")
            try:
                status = raw_request(server.port, HEALTHZ)[0]
            except OSError:
                time.sleep(0.2)
        assert status is not None, f"gunicorn never answered:\n{server.log.read_text()}"
    finally:
        if server.proc.poll() is None:
            server.proc.terminate()  # the master only; it stops its workers
            try:
                server.proc.wait(60)
            except subprocess.TimeoutExpired:
                server.proc.kill()
                server.proc.wait()
    return server.log.read_text()


@pytest.mark.parametrize("args", [[], ["-k", THREAD_WORKER]], ids=["gevent", "threads"])
def test_the_production_config_starts_without_a_late_ssl_patch(
    tmp_path: Path, args: list[str]
) -> None:
    log = _serve_once(tmp_path, ["-w", "1", *args])
    assert "Booting worker" in log, log
    for warning in PATCHED_LATE:
        assert warning not in log, log


def _patched_by_config(argv: list[str], cmd_args: str | None = None) -> dict[str, object]:
    """Read the config as gunicorn would, started with `argv`; what gevent then patched."""
    probe = (
        "import json, runpy, sys\n"
        f"sys.argv = {['gunicorn', *argv]!r}\n"
        f"runpy.run_path({str(CONFIG)!r})\n"
        "from gevent import monkey\n"
        "print(json.dumps({'ssl': monkey.is_module_patched('ssl'),"
        " 'socket': monkey.is_module_patched('socket')}))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "GUNICORN_CMD_ARGS"}
    if cmd_args is not None:
        env["GUNICORN_CMD_ARGS"] = cmd_args
    done = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize(
    "argv,cmd_args,patched",
    [
        (["bridge_api.wsgi:app"], None, True),
        (["-k", "gevent", "bridge_api.wsgi:app"], None, True),
        (["-k", THREAD_WORKER, "--threads", "8", "bridge_api.wsgi:app"], None, False),
        ([f"--worker-class={THREAD_WORKER}", "bridge_api.wsgi:app"], None, False),
        (["bridge_api.wsgi:app"], "-k gthread", False),
        (["-k", "bridge_api.gunicorn_worker.JsonErrorGeventWorker"], "-k gthread", True),
    ],
    ids=["default", "gevent", "threads", "threads-long", "threads-env", "command-line-wins"],
)
def test_only_a_gevent_worker_class_patches(
    argv: list[str], cmd_args: str | None, patched: bool
) -> None:
    assert _patched_by_config(argv, cmd_args) == {"ssl": patched, "socket": patched}
