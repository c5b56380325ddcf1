"""The registry of backends: a name -> 'module:Class', imported only when that backend is used."""

from __future__ import annotations

import importlib

from runner.errors import SpecError

PROVIDERS = {
    "sandbox": "runner.providers.sandbox:SandboxProvider",
    "local": "runner.providers.local:LocalProvider",
    "aws": "runner.providers.aws:AwsProvider",
    "gcp": "runner.providers.gcp:GcpProvider",
}


def get_provider(name: str):
    """An instance of the named backend; SpecError if it is unknown."""
    try:
        module, cls = PROVIDERS[name].split(":")
    except KeyError:
        raise SpecError(f"unknown cloud {name!r}; available: {', '.join(PROVIDERS)}") from None
    return getattr(importlib.import_module(module), cls)()
