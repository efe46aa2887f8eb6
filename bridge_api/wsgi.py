"""WSGI entry point: `gunicorn -k gthread --threads 16 -b 0.0.0.0:5000 bridge_api.wsgi:app`.

Threads, because each SSE client holds one for as long as it listens.
"""

from bridge_api import create_app

app = create_app()
