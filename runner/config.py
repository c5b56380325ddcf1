"""Where local state lives and which store holds the job records; environment variables only."""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_CLOUD = "sandbox"


def home() -> Path:
    """$RUNNER_HOME, or ~/.runner: all local state (the file:// store, sandboxes, images)."""
    return Path(os.environ.get("RUNNER_HOME") or Path.home() / ".runner").expanduser().resolve()


def store_uri() -> str:
    """$RUNNER_STORE (a URI), or the file:// store under $RUNNER_HOME."""
    uri = os.environ.get("RUNNER_STORE", "").strip()
    return uri.rstrip("/") if uri else f"file://{home() / 'store'}"


def default_cloud() -> str:
    """$RUNNER_CLOUD, or the local default."""
    return os.environ.get("RUNNER_CLOUD", "").strip() or DEFAULT_CLOUD
