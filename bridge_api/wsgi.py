"""WSGI entry point, served by gunicorn with its config file (threads, JSON errors, limits):

gunicorn -c bridge_api/gunicorn_conf.py -b 0.0.0.0:5000 bridge_api.wsgi:app
"""

from bridge_api import create_app

app = create_app()
