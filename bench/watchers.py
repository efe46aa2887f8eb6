"""K people watching: SSE streams at K = 10, 100, 1,000 against a status reader.

A real stack on PostgreSQL (dagster-webserver, dagster-daemon; the offline provider
taking L seconds a step), the bridge under gunicorn exactly as the README's production
command runs it (`gunicorn -c bridge_api/gunicorn_conf.py`: gevent workers, two of
them), and between the bridge and dagster-webserver a counting TCP relay of the bench's
own (every `POST /graphql` the bridge sends). For each K, J fresh jobs are executed
through the bridge, K SSE clients open at once (client i watches job i mod J) and read
until their stream ends, while one more client reads `GET /workflows/execution/<id>`
every 0.2 s. Printed per K:
- streams answered 200, streams that ended with `complete`, and whether every stream
  of a job received every event of the job (the same events, names and data, provider
  progress levels aside: a late joiner receives only the newest). Watchers served by
  one bridge process share its feed and get the same sequence; two processes poll on
  their own, so a late-showing checkpoint may come before or after a progress line;
- the status reader's p50/p95/max latency (target: p95 <= 30 ms at K = 1,000; issue 23:
  the bridge answers it from the job read model, one row, no GraphQL);
- checkpoint recorded -> SSE `checkpoint` event at the client, p50/p95/max (target: p95
  <= 250 ms): "recorded" is the step materialization's timestamp in Dagster's event log
  (the run worker's clock, this machine), "at the client" the time the watcher parsed
  the event; only watchers connected before the checkpoint was recorded count (a later
  one is sent the history on connecting);
- dagster-webserver requests/s from the bridge (target: flat in K: the streams of a job
  share one poller per bridge process).

Run: `.venv/bin/python bench/watchers.py [--watchers 10,100,1000] [--jobs 4] [--latency 8]`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from inflight import fresh_database  # noqa: E402

from runtime.stack import DagsterStack, free_port  # noqa: E402
from wf_core.settings import REPO_ROOT  # noqa: E402

SAMPLE = REPO_ROOT / "samples" / "sample.jpg"
GUNICORN = str(Path(sys.executable).with_name("gunicorn"))
WORKFLOW_ID = "img-edit-to-video"


class CountingRelay:
    """A TCP relay to dagster-webserver counting the GraphQL requests that pass."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.port = free_port()
        self.requests = 0
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()

    def start(self) -> CountingRelay:
        threading.Thread(target=self._run, daemon=True).start()
        self.ready.wait(10)
        return self

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.server = self.loop.run_until_complete(
            asyncio.start_server(self._serve, "127.0.0.1", self.port, backlog=512)
        )
        self.ready.set()
        self.loop.run_forever()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:
            writer.close()
            return

        async def pipe(src, dst, count: bool) -> None:
            tail = b""
            try:
                while data := await src.read(65536):
                    if count:
                        self.requests += (tail + data).count(b"POST /graphql")
                        tail = data[-16:]
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                dst.close()

        await asyncio.gather(pipe(reader, up_writer, True), pipe(up_reader, writer, False))


@contextmanager
def bridge(env: dict[str, str], tmp: Path) -> Iterator[int]:
    """The bridge under gunicorn with the repository's config file; yields its port."""
    port = free_port()
    log = open(tmp / "gunicorn.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [
            GUNICORN,
            "-c",
            "bridge_api/gunicorn_conf.py",
            "-b",
            f"127.0.0.1:{port}",
            "bridge_api.wsgi:app",
        ],  # fmt: skip
        cwd=REPO_ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.time() + 120
        while time.time() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/openapi.json", timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.3)
        else:
            raise RuntimeError((tmp / "gunicorn.log").read_text()[-3000:])
        yield port
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
        kept = Path(tempfile.gettempdir()) / "watchers-gunicorn.log"
        kept.write_bytes((tmp / "gunicorn.log").read_bytes())
        print(f"bridge log kept at {kept}", file=sys.stderr)


def execute(port: int) -> str:
    """One job through the bridge; its id."""
    with SAMPLE.open("rb") as photo:
        answer = httpx.post(
            f"http://127.0.0.1:{port}/workflows/execute",
            data={"workflow_id": WORKFLOW_ID},
            files={"file": ("photo.jpg", photo, "image/jpeg")},
            timeout=60,
        )
    if answer.status_code != 202:
        raise RuntimeError(f"execute answered {answer.status_code}: {answer.text}")
    return answer.json()["job_id"]


async def watch(port: int, job_id: str, deadline: float, arrivals: list | None = None):
    """One SSE client (HTTP/1.0: the body ends when the stream does): (status, events);
    each `checkpoint` event's (job, step, connected at, parsed at) goes to `arrivals`."""
    connected = time.time()
    reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=2**20)
    writer.write(f"GET /jobs/{job_id}/stream HTTP/1.0\r\nHost: bench\r\n\r\n".encode())
    await writer.drain()
    events: list[tuple] = []
    try:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), deadline - time.time())
        status = int(head.split()[1])
        fields: dict[str, str] = {}
        while time.time() < deadline:
            line = await asyncio.wait_for(reader.readline(), max(0.1, deadline - time.time()))
            if not line:
                break
            text = line.decode().rstrip("\r\n")
            if text:
                if ": " in text and not text.startswith(":"):
                    key, value = text.split(": ", 1)
                    fields[key] = value
                continue
            if "event" in fields:
                events.append((fields.get("id"), fields["event"], fields.get("data")))
                if fields["event"] == "checkpoint" and arrivals is not None:
                    step = json.loads(fields.get("data") or "{}").get("step_name")
                    arrivals.append((job_id, step, connected, time.time()))
            fields = {}
    except (TimeoutError, asyncio.IncompleteReadError, ConnectionError):
        status = status if "status" in locals() else 0
    finally:
        writer.close()
    return status, events


async def read_status(port: int, job_id: str, stop: asyncio.Event) -> list[float]:
    """GET /workflows/execution/<id> every 0.2 s until `stop`; latencies in ms."""
    latencies = []
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
        while not stop.is_set():
            started = time.perf_counter()
            try:
                answer = await client.get(f"/workflows/execution/{job_id}")
            except (httpx.ReadError, httpx.RemoteProtocolError):
                # A kept-alive connection the server closed while we waited: once more,
                # timed from the first attempt.
                answer = await client.get(f"/workflows/execution/{job_id}")
            latencies.append((time.perf_counter() - started) * 1000)
            if answer.status_code != 200:
                raise RuntimeError(f"status read answered {answer.status_code}")
            try:
                await asyncio.wait_for(stop.wait(), 0.2)
            except TimeoutError:
                pass
    return latencies


def _job_events(events: list[tuple]) -> list[tuple]:
    """A stream's job events as a sorted list of (name, data): provider progress levels
    left out (they carry the id of the event before them, unchanged)."""
    out, last_id = [], None
    for event_id, name, data in events:
        if name == "progress" and event_id == last_id and "provider" in json.loads(data):
            continue
        out.append((name, data))
        last_id = event_id
    return sorted(out)


def checkpoint_delays(stack: DagsterStack, arrivals: list[tuple]) -> list[float]:
    """Checkpoint recorded (its materialization's event-log time) -> parsed by a watcher
    connected before it was recorded, in ms."""
    recorded: dict[tuple[str, str], float] = {}
    for job_id, step in {(job_id, step) for job_id, step, _, _ in arrivals}:
        key = dg.AssetKey([WORKFLOW_ID, step])
        found = stack.instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=key, asset_partitions=[job_id]), limit=1
        ).records
        if found:
            recorded[(job_id, step)] = found[0].event_log_entry.timestamp
    return sorted(
        (parsed - recorded[(job_id, step)]) * 1000
        for job_id, step, connected, parsed in arrivals
        if (job_id, step) in recorded and connected < recorded[(job_id, step)]
    )


async def one_round(
    port: int, relay: CountingRelay, jobs: list[str], k: int, timeout: float, stack: DagsterStack
):
    """K watchers on `jobs`, and the status reader, until every stream ended."""
    deadline = time.time() + timeout
    stop = asyncio.Event()
    reader = asyncio.create_task(read_status(port, jobs[0], stop))
    before, started = relay.requests, time.time()
    arrivals: list[tuple] = []
    results = await asyncio.gather(
        *(watch(port, jobs[i % len(jobs)], deadline, arrivals) for i in range(k))
    )
    elapsed = time.time() - started
    graphql = relay.requests - before
    stop.set()
    latencies = await reader
    by_job: dict[str, list[list[tuple]]] = {}
    for i, (status, events) in enumerate(results):
        if status == 200:
            by_job.setdefault(jobs[i % len(jobs)], []).append(_job_events(events))
    same = all(all(s == streams[0] for s in streams) for streams in by_job.values())
    complete = sum(1 for status, events in results if events and events[-1][1] == "complete")
    latencies.sort()
    delays = checkpoint_delays(stack, arrivals)
    return {
        "watchers": k,
        "jobs": len(jobs),
        "streams_200": sum(1 for status, _ in results if status == 200),
        "streams_refused_503": sum(1 for status, _ in results if status == 503),
        "streams_complete": complete,
        "every_event_per_job": same,
        "events_per_stream": round(statistics.mean(len(e) for _, e in results), 1),
        "seconds": round(elapsed, 1),
        "status_get_ms_p50": round(statistics.median(latencies), 1),
        "status_get_ms_p95": round(latencies[int(0.95 * (len(latencies) - 1))], 1),
        "status_get_ms_max": round(latencies[-1], 1),
        "status_gets": len(latencies),
        "checkpoint_to_sse_ms_p50": round(statistics.median(delays), 1) if delays else None,
        "checkpoint_to_sse_ms_p95": round(delays[int(0.95 * (len(delays) - 1))], 1)
        if delays
        else None,
        "checkpoint_to_sse_ms_max": round(delays[-1], 1) if delays else None,
        "checkpoint_events_timed": len(delays),
        "webserver_req_per_s": round(graphql / elapsed, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--watchers", default="10,100,1000")
    parser.add_argument("--jobs", type=int, default=4, help="jobs watched per round")
    parser.add_argument("--latency", type=float, default=8.0, help="provider seconds per step")
    parser.add_argument("--timeout", type=float, default=300.0, help="per round")
    args = parser.parse_args()
    rounds = [int(k) for k in args.watchers.split(",")]
    with tempfile.TemporaryDirectory(prefix="watchers-") as tmp_name, fresh_database() as pg:
        tmp = Path(tmp_name)
        env = {
            **os.environ,
            "DAGSTER_PG_URL": pg,
            "MEDIA_DIR": str(tmp / "media"),
            "LOCAL_PROVIDER_LATENCY": str(args.latency),
        }
        env.pop("DAGSTER_HOME", None)
        env.pop("REPLICATE_API_TOKEN", None)
        with DagsterStack(tmp / "home", env=env, timeout=180) as stack:
            relay = CountingRelay(int(stack.graphql_url.split(":")[2].split("/")[0])).start()
            bridge_env = {
                **stack.env,
                "AUTH_MODE": "disabled",
                "DAGSTER_GRAPHQL_URL": f"http://127.0.0.1:{relay.port}/graphql",
                "UPLOAD_DIR": str(tmp / "uploads"),
                "WF_STATE_DB_URL": stack.state_db_url,
                "MAX_STREAMS": str(max(rounds) + 100),
                "RATELIMIT_STORAGE_URI": "redis://127.0.0.1:6379",
                "RATELIMIT_KEY_PREFIX": f"watchers-{uuid.uuid4().hex[:8]}",
                "RATELIMIT_EXECUTE": "100000 per minute",
                "WEB_CONCURRENCY": "2",
            }
            figures = []
            with bridge(bridge_env, tmp) as port:
                for k in rounds:
                    jobs = [execute(port) for _ in range(args.jobs)]
                    figure = asyncio.run(one_round(port, relay, jobs, k, args.timeout, stack))
                    print(json.dumps(figure), flush=True)
                    figures.append(figure)
    top = figures[-1]
    print(
        json.dumps(
            {
                "status_get_target_p95_le_30ms_at_max_k": top["status_get_ms_p95"] <= 30,
                "checkpoint_to_sse_target_p95_le_250ms": all(
                    (f["checkpoint_to_sse_ms_p95"] or 0) <= 250 for f in figures
                ),
                "webserver_req_per_s_by_k": {
                    f["watchers"]: f["webserver_req_per_s"] for f in figures
                },
                "every_stream_every_event": all(
                    f["every_event_per_job"] and f["streams_complete"] == f["watchers"]
                    for f in figures
                ),
            }
        )
    )


if __name__ == "__main__":
    main()
