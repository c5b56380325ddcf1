"""User settings: RUNNER_* environment variables over a small TOML file ($RUNNER_CONFIG, default
$RUNNER_HOME/config.toml). Keys: `store`, `cloud`, and [aws] region, instance_profile, subnets,
security_group, spot_fallback (RUNNER_AWS_REGION, RUNNER_AWS_INSTANCE_PROFILE, ...).
"""

from __future__ import annotations

import difflib
import os
from dataclasses import dataclass
from pathlib import Path

from runner import config
from runner.errors import SpecError

KNOWN = {
    "": ("store", "cloud"),
    "aws": ("region", "instance_profile", "subnets", "security_group", "spot_fallback"),
    "gcp": ("project", "zones", "service_account", "network", "subnetwork", "external_ip", "spot_fallback", "endpoint"),
}
TRUE, FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off", "")


def path() -> Path:
    """$RUNNER_CONFIG, or $RUNNER_HOME/config.toml."""
    return Path(os.environ.get("RUNNER_CONFIG") or config.home() / "config.toml").expanduser()


def load() -> dict:
    """The config file as a dict ({} when there is none); SpecError for bad TOML or an unknown key."""
    p = path()
    if not p.exists():
        return {}
    import tomllib

    try:
        data = tomllib.loads(p.read_text())
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise SpecError(f"{p}: cannot read the config file: {e}") from None
    for section, keys in KNOWN.items():
        table = data.get(section, {}) if section else {k: v for k, v in data.items() if not isinstance(v, dict)}
        for key in table if isinstance(table, dict) else ():
            if key not in keys:
                near = difflib.get_close_matches(key, keys, n=1)
                hint = f" (did you mean {near[0]!r}?)" if near else ""
                where = f"[{section}] " if section else ""
                raise SpecError(f"{p}: unknown key {where}{key!r}{hint}; known: {', '.join(keys)}")
    return data


def env_name(key: str, section: str = "") -> str:
    return "_".join(["RUNNER", *([section] if section else []), key]).upper()


def get(key: str, section: str = "", default=None):
    """RUNNER_<SECTION>_<KEY> if set and non-empty, else the config file's value, else `default`."""
    value = os.environ.get(env_name(key, section), "").strip()
    if value:
        return value
    data = load()
    table = data.get(section, {}) if section else data
    return table.get(key, default) if isinstance(table, dict) else default


def get_list(key: str, section: str = "") -> tuple[str, ...]:
    """A list setting: a TOML array, or a comma-separated string (as environment variables give it)."""
    value = get(key, section) or ()
    items = value.split(",") if isinstance(value, str) else [str(v) for v in value]
    return tuple(v.strip() for v in items if v.strip())


def get_bool(key: str, section: str = "", default: bool = False) -> bool:
    value = get(key, section)
    if value is None or isinstance(value, bool):
        return default if value is None else value
    if str(value).lower() in TRUE + FALSE:
        return str(value).lower() in TRUE
    raise SpecError(f"{env_name(key, section)}={value!r}: expected true or false")


@dataclass(frozen=True)
class AwsSettings:
    """Where and how to launch: flags over RUNNER_AWS_* over [aws] in the config file."""

    region: str
    instance_profile: str = ""
    subnets: tuple[str, ...] = ()
    security_group: str = ""
    spot_fallback: bool = False

    @classmethod
    def load(cls, region: str | None = None) -> AwsSettings:
        region = region or get("region", "aws") or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
        if not region:
            import boto3  # the AWS config file's region, as the aws CLI would use it

            region = boto3.session.Session().region_name
        return cls(
            region=str(region or ""), instance_profile=str(get("instance_profile", "aws") or ""),
            subnets=get_list("subnets", "aws"), security_group=str(get("security_group", "aws") or ""),
            spot_fallback=get_bool("spot_fallback", "aws"),
        )
