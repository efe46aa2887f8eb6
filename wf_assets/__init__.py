"""Workflow specs turned into Dagster assets: one asset per step, partitioned by job id."""
