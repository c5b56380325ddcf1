"""Where local state lives and which store holds the job records (environment, then runner.settings)."""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_CLOUD = "local"  # a real VM on this machine: no cloud account needed


def home() -> Path:
    """$RUNNER_HOME, or ~/.runner: all local state (the file:// store, sandboxes, images)."""
    return Path(os.environ.get("RUNNER_HOME") or Path.home() / ".runner").expanduser().resolve()


def store_uri() -> str:
    """$RUNNER_STORE (a URI), the config file's `store`, or the file:// store under $RUNNER_HOME."""
    from runner import settings

    uri = str(settings.get("store") or "").strip()
    return uri.rstrip("/") if uri else f"file://{home() / 'store'}"


def default_cloud() -> str:
    """$RUNNER_CLOUD, the config file's `cloud`, or the local default."""
    from runner import settings

    return str(settings.get("cloud") or "").strip() or DEFAULT_CLOUD
