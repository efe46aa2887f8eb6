"""Sensors that watch workflow runs (the retry sensor lives here)."""
