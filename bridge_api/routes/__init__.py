"""Thin Flask blueprints: parse the request, call the service, shape the answer."""
