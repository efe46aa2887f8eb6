"""Where things live by default: every path is overridable from the environment
(declared with the other settings in `wf_core.config`)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from wf_core.config import EngineSettings, SharedSettings

REPO_ROOT = Path(__file__).resolve().parents[1]


def dagster_home(config: SharedSettings | None = None) -> Path:
    """The Dagster instance folder (DAGSTER_HOME, else `.dagster_home/` in the checkout)."""
    config = config or SharedSettings.from_env()
    return Path(config.dagster_home or REPO_ROOT / ".dagster_home").resolve()


def media_dir(config: SharedSettings | None = None) -> Path:
    """Local media storage (MEDIA_DIR, else `.media/` in the checkout)."""
    config = config or SharedSettings.from_env()
    return Path(config.media_dir or REPO_ROOT / ".media").resolve()


def checkpoint_url(config: EngineSettings | None = None) -> str:
    """Checkpoint store (CHECKPOINT_URL: a folder or fsspec URL, else under DAGSTER_HOME)."""
    config = config or EngineSettings.from_env()
    return config.checkpoint_url or str(dagster_home(config) / "checkpoints")


def specs_dir(config: SharedSettings | None = None) -> Path:
    """Where workflow spec files are read from (WORKFLOW_SPECS_DIR, else `workflow_specs/`)."""
    config = config or SharedSettings.from_env()
    return Path(config.workflow_specs_dir or REPO_ROOT / "workflow_specs").resolve()


def state_db_url(
    home: Path | None = None,
    env: Mapping[str, str] | None = None,
    config: SharedSettings | None = None,
) -> str:
    """The engine's own tables (predictions, webhook deliveries): WF_STATE_DB_URL, else the
    PostgreSQL database of DAGSTER_PG_URL, else a SQLite file under DAGSTER_HOME (`home`).

    `env` is the environment to read (another process's); this process's by default.
    """
    config = config or SharedSettings.from_env(env)
    return (
        config.wf_state_db_url
        or config.dagster_pg_url
        or f"sqlite:///{(home or dagster_home()) / 'wf_state.db'}"
    )


def public_base_url(config: EngineSettings | None = None) -> str | None:
    """Where providers call us back (PUBLIC_BASE_URL); unset means polling only."""
    config = config or EngineSettings.from_env()
    return (config.public_base_url or "").rstrip("/") or None
