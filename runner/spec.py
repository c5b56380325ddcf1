"""The job spec: jobs/<name>/job.yaml, validated by a frozen pydantic model; CLI flags override it."""

from __future__ import annotations

import difflib
import re
from pathlib import Path, PurePosixPath
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from runner.errors import SpecError
from runner.job_yaml import read_job_yaml
from runner.jobs import NAME_RE

CLOUDS = ("sandbox", "local", "aws", "gcp")
ENV_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*\Z")
DURATION_RE = re.compile(r"^(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?\Z")
URI_RE = re.compile(r"^(file|s3|gs)://")


def parse_duration(value: Any) -> int:
    """90 | '90s' | '30m' | '2h' | '1h30m' -> seconds."""
    if isinstance(value, bool):
        raise ValueError("is not a duration")
    if isinstance(value, int):
        seconds = value
    else:
        m = DURATION_RE.match(str(value))
        if not m or not any(m.groups()):
            raise ValueError(f"{value!r} is not a duration; use e.g. 90s, 30m, 2h or 1h30m")
        h, mi, s = (int(g or 0) for g in m.groups())
        seconds = h * 3600 + mi * 60 + s
    if not 1 <= seconds <= 7 * 24 * 3600:
        raise ValueError(f"{value!r} is out of range: max_runtime must be between 1s and 168h")
    return seconds


def _relative_path(value: str, what: str) -> str:
    p = PurePosixPath(value)
    if not value or p.is_absolute() or ".." in p.parts:
        raise ValueError(f"{value!r}: {what} must be a relative path inside the job's work dir, without '..'")
    return value


def _uri_or_store_path(value: str) -> str:
    """A full URI, or a path relative to the store root (no scheme, no leading '/', no '..')."""
    if URI_RE.match(value):
        return value
    if "://" in value:
        raise ValueError(f"{value!r}: unknown scheme; use file://, s3://, gs:// or a path relative to the store")
    return _relative_path(value, "a store-relative URI")


class JobSpec(BaseModel):
    """One batch job: what to run, on what, with which data."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(description="lowercase letters, digits and '-'; starts with a letter")
    command: str = Field(min_length=1, description="shell command run in the job's work dir")
    inputs: dict[str, str] = Field(default_factory=dict, description="URI or prefix/ -> path in the work dir")
    outputs: dict[str, str | None] = Field(default_factory=dict, description="path -> URI (~: the job's outputs/)")
    env: dict[str, str] = Field(default_factory=dict)
    secrets: dict[str, str] = Field(default_factory=dict, description="ENV -> aws-ssm:/name or gcp-sm:projects/P/secrets/S")
    instance_type: str | None = None
    spot: bool = False
    spot_fallback: bool | None = Field(None, description="on-demand if no zone has spot capacity (default: config)")
    region: str | None = None
    zone: str | None = None
    disk_gb: int = Field(50, ge=8, le=16384)
    max_runtime: int = Field(2 * 3600, description="seconds; accepts 90s, 30m, 2h, 1h30m")
    max_cost: float | None = Field(None, gt=0, description="USD; becomes a runtime limit from the hourly price")
    retries: int = Field(0, ge=0, le=10, description="relaunches after a spot preemption")
    retry_on_demand: bool = Field(False, description="make the last relaunch on-demand")
    image: str | None = None
    cloud: Literal["sandbox", "local", "aws", "gcp"] | None = None
    cancel_on_interrupt: bool | None = Field(None, description="cancel the job when a runner waiting on it is interrupted (default: on in CI)")

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not NAME_RE.match(v):
            raise ValueError(f"{v!r} is not a job name: use 1-40 lowercase letters, digits and '-', starting with a letter")
        return v

    @field_validator("inputs")
    @classmethod
    def _inputs(cls, v: dict[str, str]) -> dict[str, str]:
        return {_uri_or_store_path(uri): _relative_path(path, "an input's path") for uri, path in v.items()}

    @field_validator("outputs", mode="before")
    @classmethod
    def _outputs(cls, v: Any) -> Any:
        if isinstance(v, list):
            v = {path: None for path in v}
        if isinstance(v, dict):
            return {_relative_path(str(p), "an output's path"): (None if u is None else _uri_or_store_path(str(u))) for p, u in v.items()}
        return v

    @field_validator("env", mode="before")
    @classmethod
    def _env(cls, v: Any) -> Any:
        if not isinstance(v, dict):
            return v
        out = {}
        for k, val in v.items():
            if not ENV_RE.match(str(k)) or str(k).startswith("RUNNER_"):
                raise ValueError(f"{k!r} is not a usable variable name (letters, digits, '_'; RUNNER_* is reserved)")
            if isinstance(val, bool) or val is None:
                raise ValueError(f"{k}={val!r}: quote the value to make it a string")
            out[str(k)] = str(val) if isinstance(val, (int, float)) else val
        return out

    @field_validator("secrets")
    @classmethod
    def _secrets(cls, v: dict[str, str]) -> dict[str, str]:
        for name, ref in v.items():
            if not ENV_RE.match(name) or name.startswith("RUNNER_"):
                raise ValueError(f"{name!r} is not a usable variable name (letters, digits, '_'; RUNNER_* is reserved)")
            if not re.match(r"^(aws-ssm:/\S+|gcp-sm:projects/[^/\s]+/secrets/[^/\s]+(/versions/[^/\s]+)?)\Z", ref):
                raise ValueError(
                    f"{name}={ref!r} is not a secret reference: use aws-ssm:/parameter/name (SSM Parameter Store) "
                    "or gcp-sm:projects/P/secrets/S (Secret Manager); the value is fetched on the VM, never sent in user-data"
                )
        return v

    @field_validator("max_runtime", mode="before")
    @classmethod
    def _max_runtime(cls, v: Any) -> int:
        return parse_duration(v)


FIELDS = tuple(JobSpec.model_fields)


def _describe(err: dict, source: str) -> str:
    field = ".".join(str(p) for p in err["loc"]) or "(top level)"
    if err["type"] == "extra_forbidden":
        key = str(err["loc"][-1])
        near = difflib.get_close_matches(key, FIELDS, n=1)
        hint = f" (did you mean {near[0]!r}?)" if near else ""
        return f"{source}: unknown field {key!r}{hint}; allowed: {', '.join(FIELDS)}"
    if err["type"] == "missing":
        return f"{source}: field {field!r} is required"
    msg = err["msg"].removeprefix("Value error, ")
    if "input" in err and repr(err["input"])[:60] not in msg:
        msg = f"{err['input']!r}: {msg}"
    return f"{source}: field {field!r}: {msg}"


def validate(data: dict, source: str, overrides: dict | None = None) -> JobSpec:
    """Build a JobSpec from `data` with `overrides` (from flags) on top; SpecError names every bad value."""
    overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
    merged = {**data, **overrides}
    if "env" in overrides:
        merged["env"] = {**(data.get("env") or {}), **overrides["env"]}
    try:
        return JobSpec(**merged)
    except ValidationError as e:
        lines = [_describe(err, "command line" if err["loc"] and err["loc"][0] in overrides else source) for err in e.errors()]
        raise SpecError("invalid job spec:\n  " + "\n  ".join(lines)) from None


def load_job(job_dir: str | Path, overrides: dict | None = None) -> tuple[JobSpec, Path]:
    """Read JOB_DIR/job.yaml, apply the overrides, validate; nothing is created anywhere."""
    job_dir = Path(job_dir)
    path = job_dir / "job.yaml"
    if not path.is_file():
        hint = f"; {job_dir} is a file, give its folder" if job_dir.is_file() else ""
        raise SpecError(f"{path}: no such file: a job is a folder with a job.yaml (name, command){hint}")
    data = read_job_yaml(path)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise SpecError(f"{path}: the top level must be a mapping of fields (name: ..., command: ...), not {type(data).__name__}")
    return validate(data, str(path), overrides), job_dir.resolve()


def parse_env(pairs: tuple[str, ...] | list[str]) -> dict[str, str]:
    """['K=V', ...] from --env flags -> dict."""
    env = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise SpecError(f"--env {pair!r}: expected KEY=VALUE")
        env[key] = value
    return env
