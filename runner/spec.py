"""The job spec: jobs/<name>/job.yaml, validated by a frozen pydantic model; CLI flags override it."""

from __future__ import annotations

import difflib
import re
from pathlib import Path, PurePosixPath
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

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


def _outputs_field(v: Any) -> Any:
    """outputs: a list of paths or a mapping path -> URI (~: the job's outputs/)."""
    if isinstance(v, list):
        v = {path: None for path in v}
    if isinstance(v, dict):
        return {_relative_path(str(p), "an output's path"): (None if u is None else _uri_or_store_path(str(u))) for p, u in v.items()}
    return v


def _no_control(value: str, what: str) -> str:
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise ValueError(f"{value!r}: {what} cannot hold a control character (tab, newline, ...)")
    return value


class ItemsSpec(BaseModel):
    """What a fan-out job runs its command over: the objects below a prefix, or the lines of a manifest file."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    over: str | None = Field(None, description="a URI prefix (or store-relative path) whose objects are the items")
    manifest: str | None = Field(None, description="a file in the job folder, one item (a URI or any string) per line")
    match: str = Field("*", min_length=1, description="glob on each item's name (a URI's basename, or the line)")
    per_vm: int = Field(0, ge=0, le=4096, description="items at once on each VM; 0 = one per vCPU")
    fetch: bool = Field(True, description="pull each item's object before its command runs")
    retries: int = Field(0, ge=0, le=10, description="runs of a failed item again, on its VM, before it counts as failed "
                         "(the job's own `retries` counts preemptions)")

    @field_validator("over")
    @classmethod
    def _over(cls, v: str | None) -> str | None:
        return None if v is None else _uri_or_store_path(_no_control(v, "a prefix"))

    @field_validator("manifest")
    @classmethod
    def _manifest(cls, v: str | None) -> str | None:
        return None if v is None else _relative_path(_no_control(v, "a manifest path"), "the manifest")

    @field_validator("match")
    @classmethod
    def _match(cls, v: str) -> str:
        return _no_control(v, "a glob")

    @model_validator(mode="after")
    def _one_source(self) -> ItemsSpec:
        if (self.over is None) == (self.manifest is None):
            raise ValueError("give exactly one of `over:` (a prefix to list) and `manifest:` (a file of items in the job folder)")
        return self


class ReduceSpec(BaseModel):
    """The step run once, after every item succeeded, over every item's result."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    command: str = Field(min_length=1, description="shell command run in the work dir; items/<name>/ holds each result")
    outputs: dict[str, str | None] = Field(default_factory=dict, description="path -> URI (~: the job's outputs/)")

    @field_validator("outputs", mode="before")
    @classmethod
    def _outputs(cls, v: Any) -> Any:
        return _outputs_field(v)


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
    disk_type: str | None = Field(None, description="the root disk's type (GCP: pd-balanced, pd-ssd, hyperdisk-balanced...; AWS: gp3)")
    disk_throughput: int | None = Field(None, ge=1, le=10000, description="the root disk's provisioned MB/s (AWS gp3, GCP hyperdisk)")
    disk_iops: int | None = Field(None, ge=1, le=160000, description="the root disk's provisioned IOPS (AWS gp3, GCP hyperdisk)")
    local_ssds: int | None = Field(None, ge=0, le=24, description="GCP local SSDs (375 GB each) for the scratch, where the type takes them")
    max_runtime: int = Field(2 * 3600, description="seconds; accepts 90s, 30m, 2h, 1h30m")
    max_cost: float | None = Field(None, gt=0, description="USD; becomes a runtime limit from the hourly price")
    retries: int = Field(0, ge=0, le=10, description="relaunches after a spot preemption")
    retry_on_demand: bool = Field(False, description="make the last relaunch on-demand")
    image: str | None = None
    cloud: Literal["sandbox", "local", "aws", "gcp"] | None = None
    cancel_on_interrupt: bool | None = Field(None, description="cancel the job when a runner waiting on it is interrupted (default: on in CI)")
    items: ItemsSpec | None = Field(None, description="run the command once per item, over many VMs")
    vms: int | None = Field(None, ge=1, le=1000, description="VMs a fan-out runs on (default 1); capped at the items")
    reduce: ReduceSpec | None = Field(None, description="run once after every item succeeded")
    nodes: int | None = Field(None, ge=2, le=64, description="VMs of a Ray cluster the command runs on (a head and nodes-1 workers)")

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not NAME_RE.match(v):
            raise ValueError(f"{v!r} is not a job name: use 1-40 lowercase letters, digits and '-', starting with a letter, "
                             "not ending in '-', without '--' (shards' ids use it)")
        return v

    @field_validator("inputs")
    @classmethod
    def _inputs(cls, v: dict[str, str]) -> dict[str, str]:
        return {_uri_or_store_path(uri): _relative_path(path, "an input's path") for uri, path in v.items()}

    @field_validator("outputs", mode="before")
    @classmethod
    def _outputs(cls, v: Any) -> Any:
        return _outputs_field(v)

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

    @model_validator(mode="after")
    def _fanout(self) -> JobSpec:
        if self.items is None:
            for field in ("vms", "reduce"):
                if getattr(self, field) is not None:
                    raise ValueError(f"{field!r} needs 'items' (what to run the command over): add items: {{over: PREFIX}} "
                                     "or items: {manifest: FILE}")
        if self.nodes is not None and self.items is not None:
            raise ValueError(f"'nodes' ({self.nodes}, a Ray cluster) and 'items' (a fan-out) cannot be used together: "
                             "drop one (a Ray job spreads its own work over its nodes)")
        return self


FIELDS = tuple(JobSpec.model_fields)
NESTED = {"items": tuple(ItemsSpec.model_fields), "reduce": tuple(ReduceSpec.model_fields)}


def _describe(err: dict, source: str) -> str:
    field = ".".join(str(p) for p in err["loc"]) or "(top level)"
    if not err["loc"] and err["type"] == "value_error":  # a rule across fields names them itself
        return f"{source}: {err['msg'].removeprefix('Value error, ')}"
    if err["type"] == "extra_forbidden":
        key = str(err["loc"][-1])
        allowed = NESTED.get(str(err["loc"][0]), FIELDS) if len(err["loc"]) == 2 else FIELDS
        near = difflib.get_close_matches(key, allowed, n=1)
        hint = f" (did you mean {near[0]!r}?)" if near else ""
        name = f"{err['loc'][0]}.{key}" if len(err["loc"]) == 2 else key
        return f"{source}: unknown field {name!r}{hint}; allowed: {', '.join(allowed)}"
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
