"""gunicorn settings for the bridge.

From the checkout: `gunicorn -c bridge_api/gunicorn_conf.py -b 0.0.0.0:5000 bridge_api.wsgi:app`.

Threads, because each SSE client holds one for as long as it listens; JSON for the errors
gunicorn answers itself; and no start with several workers that would each count the rate
limits alone (in-memory RATELIMIT_STORAGE_URI). Command-line flags override these values;
WEB_CONCURRENCY sets the number of workers.
"""

import os

from bridge_api.limits import check_limit_storage, storage_uri_from_env

workers = int(os.environ.get("WEB_CONCURRENCY") or 2)
worker_class = "bridge_api.gunicorn_worker.JsonErrorThreadWorker"
threads = 32


def on_starting(server) -> None:
    """Refuse in-memory rate limits across workers (gunicorn prints the error, exits 1)."""
    check_limit_storage(server.cfg.workers, storage_uri_from_env(os.environ))
