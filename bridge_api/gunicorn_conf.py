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
"""

import os

from bridge_api.limits import check_limit_storage, storage_uri_from_env

workers = int(os.environ.get("WEB_CONCURRENCY") or 2)
worker_class = "bridge_api.gunicorn_worker.JsonErrorGeventWorker"
# Connections a worker serves at once: the stream cap plus room for every other route.
worker_connections = int(os.environ.get("MAX_STREAMS") or 1000) + 200
threads = 32  # used by the threaded worker only


def on_starting(server) -> None:
    """Refuse in-memory rate limits across workers (gunicorn prints the error, exits 1)."""
    check_limit_storage(server.cfg.workers, storage_uri_from_env(os.environ))
