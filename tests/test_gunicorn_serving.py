"""The bridge under real gunicorn with its config file: shared rate limits and JSON errors."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from runtime.stack import free_port
from wf_core.settings import REPO_ROOT

CONFIG = "bridge_api/gunicorn_conf.py"
GUNICORN = str(Path(sys.executable).with_name("gunicorn"))
REDIS = ("127.0.0.1", 6379)
HEALTH_CHECK = b"GET /openapi.json HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
# No form at all: a 400, but the limit is counted before the form is read.
EXECUTE = (
    b"POST /workflows/execute HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
)


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RATELIMIT_", "GUNICORN"))}
    env.pop("WEB_CONCURRENCY", None)
    return {
        **env,
        "AUTH_MODE": "disabled",
        "DAGSTER_GRAPHQL_URL": f"http://127.0.0.1:{_closed_port()}/graphql",
        "MEDIA_DIR": str(tmp_path / "media"),
        **extra,
    }


class Gunicorn:
    """`gunicorn -c bridge_api/gunicorn_conf.py ... bridge_api.wsgi:app` on a free loopback port."""

    def __init__(self, tmp_path: Path, args: list[str], env: dict[str, str]) -> None:
        self.port = free_port()
        self.log = tmp_path / f"gunicorn-{self.port}.log"
        argv = [GUNICORN, "-c", CONFIG, "-b", f"127.0.0.1:{self.port}", *args]
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                [*argv, "bridge_api.wsgi:app"],
                cwd=REPO_ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def wait_ready(self, timeout: float = 180) -> None:
        """Until a worker answers; fails at once if gunicorn exits."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"gunicorn exited {self.proc.returncode}:\n{self.log.read_text()}")
            try:
                status, _, _ = raw_request(self.port, HEALTH_CHECK)
            except OSError:
                time.sleep(0.2)
                continue
            if status == 200:
                return
        pytest.fail(f"gunicorn never answered:\n{self.log.read_text()}")

    def stop(self) -> None:
        """SIGTERM to the whole group, SIGKILL if it lingers."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


def raw_request(port: int, data: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send raw bytes on a new connection; (status, headers, body) of the answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
        sock.sendall(data)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
            head, sep, body = b"".join(chunks).partition(b"\r\n\r\n")
            if sep and b"content-length:" in head.lower():
                length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
                if len(body) >= length:
                    break
    head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:] if ": " in line)
    return int(lines[0].split()[1]), {k.lower(): v for k, v in headers.items()}, body


def _accept_queue(port: int) -> int:
    """Connections waiting in the listening socket's accept queue (Linux /proc/net/tcp)."""
    local = f"0100007F:{port:04X}"
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[1] == local and fields[3] == "0A":  # 0A: LISTEN
            return int(fields[4].split(":")[1], 16)
    raise AssertionError(f"nothing listens on 127.0.0.1:{port}")


def _hold_a_worker(port: int) -> socket.socket:
    """An idle connection, accepted before this returns: it fills one worker's single slot."""
    held = socket.create_connection(("127.0.0.1", port), timeout=60)
    deadline = time.monotonic() + 120
    while _accept_queue(port):
        assert time.monotonic() < deadline, "gunicorn never accepted the connection"
        time.sleep(0.05)
    return held


@pytest.fixture(scope="module")
def bridge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gunicorn]:
    """One worker with in-memory limits: allowed."""
    tmp = tmp_path_factory.mktemp("gunicorn")
    server = Gunicorn(tmp, ["-w", "1"], _env(tmp))
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


def test_two_workers_with_in_memory_limits_refuse_to_start(tmp_path: Path) -> None:
    server = Gunicorn(tmp_path, ["-w", "2"], _env(tmp_path))
    try:
        code = server.proc.wait(180)
    finally:
        server.stop()
    log = server.log.read_text()
    assert code != 0, log
    assert "RATELIMIT_STORAGE_URI" in log and "memory://" in log, log
    assert "Booting worker" not in log


def _redis_up() -> bool:
    try:
        with socket.create_connection(REDIS, timeout=0.5):
            return True
    except OSError:
        return False


@pytest.mark.skipif(not _redis_up(), reason="no Redis on 127.0.0.1:6379")
def test_two_workers_share_one_limit_through_redis(tmp_path: Path) -> None:
    """15 executes, 5 answered by one worker and 10 by the other: 10 admitted in all."""
    env = _env(
        tmp_path,
        RATELIMIT_STORAGE_URI=f"redis://{REDIS[0]}:{REDIS[1]}/0",
        RATELIMIT_KEY_PREFIX=f"gunicorn-test-{uuid.uuid4().hex}",
        RATELIMIT_EXECUTE="10 per minute",
    )
    access = tmp_path / "access.log"
    # One connection per worker at a time, so that holding one worker's connection open
    # sends every other request to the other worker.
    args = ["-w", "2", "--worker-connections", "1", "--keep-alive", "600"]
    args += ["--access-logfile", str(access), "--access-logformat", "%(p)s %(U)s %(s)s"]
    server = Gunicorn(tmp_path, args, env)
    try:
        server.wait_ready()
        first = _hold_a_worker(server.port)
        codes = [raw_request(server.port, EXECUTE)[0] for _ in range(5)]  # the other worker
        second = _hold_a_worker(server.port)  # the worker that just answered is the free one
        first.close()
        codes += [raw_request(server.port, EXECUTE)[0] for _ in range(10)]  # the first worker
        second.close()
    finally:
        server.stop()
    assert sorted(codes) == [400] * 10 + [429] * 5, codes
    pids = {line.split()[0] for line in access.read_text().splitlines() if "/execute" in line}
    assert len(pids) == 2, "the requests did not reach both workers"


@pytest.mark.parametrize(
    "request_bytes,status,code",
    [
        (
            b"GET /workflows/list HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer "
            + b"a" * 10_240
            + b"\r\n\r\n",
            431,
            "headers_too_large",
        ),
        (
            b"GET /workflows/list HTTP/1.1\r\nHost: t\r\n"
            + b"".join(b"X-Pad-%d: 1\r\n" % n for n in range(200))
            + b"\r\n",
            431,
            "headers_too_large",
        ),
        (b"GET /" + b"a" * 5000 + b" HTTP/1.1\r\nHost: t\r\n\r\n", 414, "uri_too_long"),
        (b"NOT A REQUEST\r\n\r\n", 400, "bad_request"),
    ],
    ids=["long-header", "many-headers", "long-request-line", "garbage"],
)
def test_gunicorns_own_errors_are_json(
    bridge: Gunicorn, request_bytes: bytes, status: int, code: str
) -> None:
    answer, headers, body = raw_request(bridge.port, request_bytes)
    assert answer == status, body
    assert headers["content-type"] == "application/json"
    assert headers["x-content-type-options"] == "nosniff"
    error = json.loads(body)["error"]
    assert error["code"] == code and error["message"]


def test_the_app_still_answers_under_the_config(bridge: Gunicorn) -> None:
    status, headers, body = raw_request(
        bridge.port, b"GET /workflows/list HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
    )
    assert status == 200 and json.loads(body)["workflows"]
