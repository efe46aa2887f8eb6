"""The OpenAPI 3 document of the bridge's routes."""

from __future__ import annotations


def openapi_document() -> dict:
    """The document served at /openapi.json."""
    return {
        "openapi": "3.0.3",
        "info": {"title": "Media workflows bridge", "version": "1.0"},
        "paths": {},
    }
