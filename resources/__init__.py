"""Outside capabilities injected as Dagster resources: model providers and media storage."""
