"""The warm parent of run workers: imports Dagster and the code location once, then forks.

Dagster's default launcher starts every run in a freshly spawned interpreter that
imports Dagster and the code location again (about 1.2 s of CPU here, the largest
part of a short job's overhead). This process pays that once: it reads one JSON
request per line on stdin (`{"run_id": ..., "instance_ref": ...}`), forks, and the
child executes the run exactly as `dagster api execute_run` does.

If a source file of the code location changed since this process imported it, it
re-executes itself first, so a run never executes stale definitions.
"""

from __future__ import annotations

import importlib
import json
import os
import signal
import sys
from pathlib import Path

WATCHED_SUFFIXES = (".py", ".yaml", ".yml")
# What a run worker imports lazily on its way to the first step.
# (Dagster's own are runtime.dagster_private.PRELOAD_MODULES: private modules.)
PRELOAD = (
    "PIL.Image",
    "PIL.PngImagePlugin",
    "PIL.JpegImagePlugin",
    "imageio_ffmpeg",
    "httpx",
)


def watched_roots(working_directory: Path) -> list[Path]:
    """The code location's packages and the spec folder."""
    from wf_core.settings import specs_dir

    packages = [p for p in working_directory.iterdir() if (p / "__init__.py").is_file()]
    return [*packages, specs_dir()]


def source_stamp(roots: list[Path]) -> tuple:
    """Modification times of the code location's sources (a change means reload)."""
    stamps = []
    for root in roots:
        for path in sorted(root.rglob("*")):
            if path.suffix in WATCHED_SUFFIXES and path.is_file():
                stamps.append((str(path), path.stat().st_mtime_ns))
    return tuple(stamps)


def _run_child(request: dict) -> None:
    """In the forked child: execute one run, then exit without returning to the loop."""
    # Private Dagster API, pinned with the Dagster family: the body of
    # `dagster api execute_run`, so events, status and cancellation behave alike.
    from dagster import DagsterInstance, deserialize_value

    from runtime.dagster_private import (
        InstanceRef,
        _execute_run_command_body,
        capture_interrupts,
    )

    code = 1
    try:
        os.setsid()
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        with capture_interrupts():
            ref = deserialize_value(request["instance_ref"], InstanceRef)
            with DagsterInstance.from_ref(ref) as instance:
                code = _execute_run_command_body(request["run_id"], instance, lambda _: None, False)
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def _reap() -> None:
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def serve(module: str, working_directory: str, first: str | None = None) -> None:
    """Import `module` from `working_directory`, then fork a run worker per request."""
    os.chdir(working_directory)
    sys.path.insert(0, working_directory)
    import dagster  # noqa: F401  (the expensive imports, paid once)

    from runtime.dagster_private import PRELOAD_MODULES

    for name in (*PRELOAD_MODULES, *PRELOAD):
        importlib.import_module(name)
    definitions = importlib.import_module(module)
    if hasattr(definitions, "defs"):
        definitions.defs.get_repository_def()  # cached on the object the child will load
    roots = watched_roots(Path(working_directory))
    stamp = source_stamp(roots)
    signal.signal(signal.SIGCHLD, lambda *_: _reap())
    if first and os.fork() == 0:
        sys.stdin.close()
        _run_child(json.loads(first))
    for line in sys.stdin:
        if not line.strip():
            continue
        request = json.loads(line)
        if source_stamp(roots) != stamp:
            # Reload: this same process becomes a fresh zygote and runs the request first.
            os.execv(
                sys.executable,
                [sys.executable, "-m", "runtime.zygote", module, working_directory, line.strip()],
            )
        if os.fork() == 0:
            sys.stdin.close()
            _run_child(request)


def main() -> None:
    """`python -m runtime.zygote MODULE WORKING_DIRECTORY [FIRST_REQUEST]`."""
    first = sys.argv[3] if len(sys.argv) > 3 else None
    serve(sys.argv[1], sys.argv[2], first)


if __name__ == "__main__":
    main()
