"""The bridge's Dagster client: GraphQL over HTTP, its documents, job snapshots, its errors."""
