"""The OpenAPI document of the bridge's HTTP API (served at /openapi.json)."""
