"""The frontend's API (../shared/API.md): a Flask app over Dagster's GraphQL API."""

from bridge_api.app import create_app

__all__ = ["create_app"]
