"""The pure core: specs, errors, registries, job state, retry policy. No Dagster, Flask, httpx."""
