"""Where things live by default: every path is overridable from the environment."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def dagster_home() -> Path:
    """The Dagster instance folder (DAGSTER_HOME, else `.dagster_home/` in the checkout)."""
    return Path(os.environ.get("DAGSTER_HOME") or REPO_ROOT / ".dagster_home").resolve()


def media_dir() -> Path:
    """Local media storage (MEDIA_DIR, else `.media/` in the checkout)."""
    return Path(os.environ.get("MEDIA_DIR") or REPO_ROOT / ".media").resolve()


def checkpoint_url() -> str:
    """Checkpoint store (CHECKPOINT_URL: a folder or fsspec URL, else under DAGSTER_HOME)."""
    return os.environ.get("CHECKPOINT_URL") or str(dagster_home() / "checkpoints")


def specs_dir() -> Path:
    """Where workflow spec files are read from (WORKFLOW_SPECS_DIR, else `workflow_specs/`)."""
    return Path(os.environ.get("WORKFLOW_SPECS_DIR") or REPO_ROOT / "workflow_specs").resolve()


def state_db_url(home: Path | None = None, env: Mapping[str, str] | None = None) -> str:
    """The engine's own tables (predictions, webhook deliveries): WF_STATE_DB_URL, else the
    PostgreSQL database of DAGSTER_PG_URL, else a SQLite file under DAGSTER_HOME (`home`).

    `env` is the environment to read (another process's); this process's by default.
    """
    env = os.environ if env is None else env
    return (
        env.get("WF_STATE_DB_URL")
        or env.get("DAGSTER_PG_URL")
        or f"sqlite:///{(home or dagster_home()) / 'wf_state.db'}"
    )


def public_base_url() -> str | None:
    """Where providers call us back (PUBLIC_BASE_URL); unset means polling only."""
    return (os.environ.get("PUBLIC_BASE_URL") or "").rstrip("/") or None
