"""gunicorn settings for the bridge.

From the checkout: `gunicorn -c bridge_api/gunicorn_conf.py -b 0.0.0.0:5000 bridge_api.wsgi:app`.

gevent workers: each connection is a greenlet, so an SSE client costs a little memory
instead of one of a fixed number of threads, and a thousand open streams leave execute,
status and health answering (each process also caps its streams, MAX_STREAMS, with a 503
and Retry-After past it); JSON for the errors gunicorn answers itself; and no start with
several workers that would each count the rate limits alone (in-memory
RATELIMIT_STORAGE_URI). Command-line flags override these values; WEB_CONCURRENCY sets
the number of workers. `-k bridge_api.gunicorn_worker.JsonErrorThreadWorker --threads N`
gives the threaded worker back (a stream then holds a thread: keep MAX_STREAMS below N).

gevent is patched here, first, in the master: importing anything of the bridge (this
file's own import below, the worker class) imports the app, and with it modules that keep
their own reference to `ssl.SSLContext` (jwt.jwks_client, which fetches Supabase's JWKS
over HTTPS; redis). Patched only in the worker, after the fork, those references stay
blocking, and gevent warns ("Monkey-patching ssl after ssl has already been imported").
The threaded worker is never patched.
"""

import os
import sys

from gunicorn.config import Config

GEVENT_WORKER = "bridge_api.gunicorn_worker.JsonErrorGeventWorker"


def chosen_worker_class(argv: list[str]) -> str:
    """The worker class this start uses: `-k` on the command line, else in GUNICORN_CMD_ARGS,
    else ours (the order in which gunicorn applies them; it has parsed both already)."""
    settings = Config()
    parser = settings.parser()
    for args in (argv, settings.get_cmd_args_from_env()):
        chosen = parser.parse_known_args(args)[0].worker_class
        if chosen:
            return chosen
    return GEVENT_WORKER


# Every gevent worker class names gevent: "gevent", "gevent_pywsgi", ours, gunicorn's.
if "gevent" in chosen_worker_class(sys.argv[1:]).lower():
    from gevent import monkey

    monkey.patch_all()

from bridge_api.http.limits import check_limit_storage, storage_uri_from_env  # noqa: E402
from bridge_api.settings import BridgeSettings  # noqa: E402

# Checked here too: a bad WEB_CONCURRENCY or MAX_STREAMS stops gunicorn naming the variable.
_settings = BridgeSettings.from_env()
workers = _settings.web_concurrency
worker_class = GEVENT_WORKER
# Connections a worker serves at once: the stream cap plus room for every other route.
worker_connections = _settings.max_streams + 200
threads = 32  # used by the threaded worker only


def on_starting(server) -> None:
    """Refuse in-memory rate limits across workers (gunicorn prints the error, exits 1)."""
    check_limit_storage(server.cfg.workers, storage_uri_from_env(os.environ))
