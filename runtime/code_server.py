"""One code server that the webserver and the daemon share, reloaded when a spec changes.

Each Dagster process that loads the code location by itself (`python_module` in
workspace.yaml) keeps its own copy of the definitions: a spec file added while the
stack runs reached the webserver after a reload from the UI, but not the daemon's
sensors (dagster#12581). Here one `dagster code-server start` serves the location to
both (workspace `grpc_server`), and this wrapper watches `workflow_specs/`: when a
file is added, changed or removed it asks the server to reload its code (ReloadCode,
which starts a fresh interpreter behind the same port, dagster#27446). The webserver
and the daemon each poll the server's id every second and refresh their copy when it
changes, so both see the new definitions within about two seconds. Run workers
(runtime.zygote) re-import when a watched file changes.

    python -m runtime.code_server --port 4266 [--host 127.0.0.1]
"""

from __future__ import annotations

import argparse
import logging
import signal
import subprocess
import sys
import time
from pathlib import Path

from wf_core.config import EngineSettings
from wf_core.settings import REPO_ROOT, specs_dir

LOCATION_NAME = "workflows"
WATCH_SECONDS = 0.5
RELOAD_TIMEOUT = 180

_log = logging.getLogger("wf.code_server")


def spec_stamp(directory: Path) -> tuple:
    """The spec folder's files, sizes and modification times (a change means reload)."""
    found = []
    for path in sorted(directory.glob("*.yaml")):
        try:
            stat = path.stat()
        except FileNotFoundError:
            continue  # removed while listing: the next look sees it gone
        found.append((path.name, stat.st_size, stat.st_mtime_ns))
    return tuple(found)


def server_argv(host: str, port: int) -> list[str]:
    """`dagster code-server start` for the workflows location on host:port."""
    dagster = str(Path(sys.executable).with_name("dagster"))
    return [
        *(dagster, "code-server", "start", "-m", "definitions"),
        *("-d", str(REPO_ROOT), "--location-name", LOCATION_NAME),
        *("-h", host, "-p", str(port), "--startup-timeout", str(RELOAD_TIMEOUT)),
    ]


def reload(host: str, port: int) -> bool:
    """Ask the running server to load the code location afresh; whether it did."""
    from runtime.dagster_private import DagsterGrpcClient  # the server's own client

    try:
        reply = DagsterGrpcClient(host=host, port=port).reload_code(timeout=RELOAD_TIMEOUT)
    except Exception:
        _log.exception("code server reload failed; trying again on the next change check")
        return False
    if getattr(reply, "serialized_error", ""):
        _log.error("code server reload reported an error: %s", reply.serialized_error[:2000])
    return True


def serve(host: str, port: int, directory: Path) -> int:
    """Run the code server; reload it on each spec change; its exit code."""
    child = subprocess.Popen(server_argv(host, port), cwd=REPO_ROOT)

    def forward(signum: int, _frame: object) -> None:
        child.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    stamp = spec_stamp(directory)
    while child.poll() is None:
        time.sleep(WATCH_SECONDS)
        now = spec_stamp(directory)
        if now != stamp and child.poll() is None:
            _log.info("workflow specs changed: reloading the code location")
            if reload(host, port):
                stamp = now
    return child.returncode


def main() -> None:
    """`python -m runtime.code_server --port P [--host H]`."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=EngineSettings.from_env().code_server_port)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    sys.exit(serve(args.host, args.port, specs_dir()))


if __name__ == "__main__":
    main()
