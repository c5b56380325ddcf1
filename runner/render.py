"""The one Jinja environment, every value shell-quoted: the bootstrap, the startup script, items.sh (and runner.cluster.script's node script)."""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from importlib import resources

import jinja2

from runner.errors import SpecError
from runner.spec import URI_RE, JobSpec
from runner.store import join

TEMPLATES = resources.files("runner.templates")  # the top-level templates/ folder, installed into the package
USER_DATA_LIMIT = 16 * 1024  # EC2's cap on user-data; GCE's metadata value cap is larger
LOG_INTERVAL = 5  # seconds between log pushes while the job runs



def _load(name: str) -> str:
    """A template's source without its comment lines past the header: they document the template, not the VM's copy."""
    lines = (TEMPLATES / name).read_text().splitlines(keepends=True)
    end = next((i for i, line in enumerate(lines) if not line.startswith("#")), len(lines))
    return "".join(lines[:end] + [line for line in lines[end:] if not line.lstrip().startswith("# ")])


_env = jinja2.Environment(
    loader=jinja2.FunctionLoader(_load),
    undefined=jinja2.StrictUndefined,
    autoescape=False,
    keep_trailing_newline=True,
    comment_start_string="<#",  # bash's ${#array[@]} must not open a Jinja comment
    comment_end_string="#>",
)
_env.filters["q"] = lambda v: shlex.quote(str(v))


def resolve(uri: str, store: str) -> str:
    """A full URI stays; a store-relative path is put under the store root."""
    return uri if URI_RE.match(uri) else join(store, uri)


def job_uri(store: str, job_id: str) -> str:
    return join(store, "jobs", job_id)


def output_uris(spec: JobSpec, store: str, job_id: str) -> dict[str, str]:
    """Each output path -> where it is uploaded (default: the job's outputs/ folder)."""
    return outputs_at(spec.outputs, store, job_id)


def outputs_at(outputs: Mapping[str, str | None], store: str, job_id: str) -> dict[str, str]:
    """Each path of `outputs` (path -> URI, or None for the job's outputs/ folder) -> where it is uploaded."""
    default = join(job_uri(store, job_id), "outputs")
    return {path: resolve(uri, store) if uri else join(default, path) for path, uri in outputs.items()}


def render_startup(
    spec: JobSpec, job_id: str, store: str, cloud: str, s3_endpoint: str = "", interruption: str = "", metadata_url: str = "",
    attempt: int = 1, log_interval: int = LOG_INTERVAL,
) -> str:
    """The startup script for one job (the bootstrap fetches it from jobs/<id>/startup.sh); `store` is the store as the VM sees it.

    `interruption` (aws, gcp or empty) says which metadata server's spot notice to watch, at `metadata_url`.
    `attempt` is 1 for the first launch, N for the (N-1)th relaunch: its logs go to logs/<attempt>/.
    """
    if not (isinstance(attempt, int) and 1 <= attempt <= 9999):
        raise SpecError(f"attempt {attempt!r} is not a launch attempt: it counts launches from 1 (at most 9999)")
    if not (isinstance(log_interval, int) and log_interval >= 1):
        raise SpecError(f"log interval {log_interval!r} is not a whole number of seconds of at least 1")
    script = _env.get_template("startup.sh.j2").render(
        job_id=job_id,
        job_uri=job_uri(store, job_id),
        cloud=cloud,
        max_runtime=spec.max_runtime,
        log_interval=log_interval,
        attempt=attempt,
        s3_endpoint=s3_endpoint,
        interruption=interruption,
        metadata_url=metadata_url,
        command=spec.command,
        env=spec.env,
        secrets=spec.secrets,
        inputs=[{"uri": resolve(uri, store), "path": path} for uri, path in spec.inputs.items()],
        outputs=[{"path": p, "uri": u} for p, u in output_uris(spec, store, job_id).items()],
    )
    return script


def render_bootstrap(job_id: str, store: str, cloud: str, max_runtime: int, s3_endpoint: str = "",
                     shards: range | None = None, metadata_url: str = "") -> str:
    """The user-data: schedules the failsafe power-off, fetches the job's startup.sh from the store and runs it.

    `store` is the store as the VM sees it; the launcher uploads the startup script to jobs/<id>/startup.sh first.
    With `shards` (a range of shard numbers of the fan-out job `job_id`), one bootstrap for every VM of a batch:
    each finds its shard number at boot from `metadata_url` (EC2: `shards.start` + its launch index; GCE: its name).
    """
    batch = _batch(job_id, store, cloud, shards, metadata_url) if shards is not None else None
    what = f"shards {shards.start}..{shards.stop - 1} of fan-out job {job_id}" if shards is not None else f"job {job_id}"
    script = _env.get_template("bootstrap.sh.j2").render(
        job_id=job_id, job_uri=job_uri(store, job_id), cloud=cloud, max_runtime=max_runtime, s3_endpoint=s3_endpoint,
        batch=batch, what=what,
    )
    size = len(script.encode())
    if size > USER_DATA_LIMIT:
        raise SpecError(f"the user-data for {job_id} is {size} bytes, over EC2's 16 KiB limit: use a shorter store URI")
    return script


def _batch(parent_id: str, store: str, cloud: str, shards: range, metadata_url: str) -> dict:
    """What a batch bootstrap needs to name its shard's folder: `<name>--s` + k + `-<ts>-<rand>` under jobs/."""
    from runner.fanout import ids

    if cloud not in ("aws", "gcp"):
        raise SpecError(f"a batch bootstrap is for aws or gcp, where a VM can tell its shard at boot, not {cloud!r}")
    if not (isinstance(shards, range) and shards.step == 1 and len(shards) and 0 <= shards.start and shards.stop - 1 <= ids.MAX_SHARD):
        raise SpecError(f"shards {shards!r} of {parent_id}: a batch is a non-empty range of shard numbers from 0 to {ids.MAX_SHARD}")
    if not metadata_url:
        raise SpecError(f"a batch bootstrap for {parent_id} needs the metadata server's address, where each VM learns its shard")
    first = ids.shard_id(parent_id, shards.start)  # checks the parent's id too
    prefix = first[:first.index(f"--s{shards.start}-") + 3]
    suffix = first[len(prefix) + len(str(shards.start)):]
    return {"jobs_uri": join(store, "jobs"), "prefix": prefix, "suffix": suffix, "name_suffix": suffix.lower(),
            "first": shards.start, "last": shards.stop - 1, "metadata_url": metadata_url}


def render_items(
    command: str, parent_id: str, store: str, per_vm: int = 0, fetch: bool = True,
    reduce_command: str = "", reduce_outputs: Mapping[str, str | None] | None = None, item_retries: int = 0,
) -> str:
    """The item runner (.runner/items.sh) every shard of a fan-out job runs; `store` is the store as the VM sees it.

    `per_vm` items run at once on each VM (0: one per vCPU); a failed item runs again up to `item_retries` times;
    a reduce's outputs default to the parent's outputs/.
    """
    if not (isinstance(per_vm, int) and not isinstance(per_vm, bool) and per_vm >= 0):
        raise SpecError(f"per_vm {per_vm!r} is not a number of items at once: use a whole number, 0 for one per vCPU")
    if not command.strip():
        raise SpecError(f"fan-out job {parent_id} has no command to run per item")
    outputs = [{"path": p, "uri": u} for p, u in outputs_at(reduce_outputs or {}, store, parent_id).items()]
    return _env.get_template("items.sh.j2").render(
        parent_id=parent_id,
        parent_uri=job_uri(store, parent_id),
        per_vm=per_vm,
        item_retries=item_retries,
        fetch=1 if fetch else 0,
        command=command,
        reduce_command=reduce_command,
        outputs=outputs,
    )
