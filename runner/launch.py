"""Launch: load the spec, pack the code, render the script, start the VM, record it in the store."""

from __future__ import annotations

import getpass
import os
import socket
import sys
from dataclasses import asdict, dataclass, replace
from functools import lru_cache
from pathlib import Path

from runner import config, cost, input_check, jobs
from runner import pack as packing
from runner.cluster.ids import network_tag
from runner.errors import RunnerError, SpecError
from runner.providers import PROVIDERS, get_provider
from runner.providers.base import Instance, LaunchRequest
from runner.render import output_uris, render_bootstrap, render_startup, resolve
from runner.spec import JobSpec, load_job, validate
from runner.store import Store, climbs, open_store

CODE_LIMIT = packing.CODE_LIMIT


@dataclass
class Plan:
    """What a launch will do; `--dry-run` prints it and stops here."""

    spec: JobSpec
    job_dir: Path
    job_id: str
    cloud: str
    store: Store
    request: LaunchRequest
    usd_per_hour: float | None = None

    def summary(self) -> dict:
        r = self.request
        summary = {
            "job_id": self.job_id, "state": "DRY_RUN", "cloud": self.cloud, "store": self.store.uri(),
            "instance_type": r.instance_type, "spot": r.spot, "disk_gb": r.disk_gb,
            "max_runtime_s": r.max_runtime, "image": r.image, "user_data_bytes": len(r.user_data.encode()),
            "usd_per_hour": self.usd_per_hour,
        }
        with packing.packed(self.job_dir) as code:  # packed as a launch would, then deleted
            summary.update(code_bytes=code.size, code_files=code.files, code_skipped=list(code.skipped))
        quote = getattr(get_provider(self.cloud), "quote", None)  # a cloud adds its prices and zones
        return {**summary, **quote(r)} if quote else summary


def mounts(spec: JobSpec, store: str, cloud: str) -> tuple[str, ...]:
    """The store-relative paths of the spec's inputs, sorted (a prefix keeps its '/'): all of the store a local VM sees."""
    root, found = store.rstrip("/") + "/", []
    for uri in spec.inputs:
        full = resolve(uri, store)
        if full.startswith(root) and not climbs(full[len(root):].rstrip("/")):
            found.append(full[len(root):])
        elif cloud == "local" and full.startswith("file://"):
            raise SpecError(
                f"input {uri!r} is outside the store ({store}), and a local VM sees only the store's paths it reads: "
                "copy it into the store and name it by its store path (e.g. data/...), or run it with --cloud sandbox"
            )
    return tuple(sorted(found))


def request_for(spec: JobSpec, job_id: str, cloud: str, store: Store, attempt: int = 1) -> LaunchRequest:
    """The launch request for one attempt, rendered from the spec alone (never from what the store holds)."""
    provider = get_provider(cloud)
    vm_store, endpoint = provider.store_for_vm(store.uri()), os.environ.get("RUNNER_S3_ENDPOINT", "")
    script = render_startup(spec, job_id, vm_store, cloud, s3_endpoint=endpoint, interruption=provider.interruption,
                            metadata_url=provider.metadata_url, attempt=attempt)
    user_data = render_bootstrap(job_id, vm_store, cloud, spec.max_runtime, s3_endpoint=endpoint)
    return replace(sized(spec, job_id, provider), user_data=user_data, script=script, attempt=attempt,
                   mounts=mounts(spec, store.uri(), cloud), network_tag=network_tag(job_id))


def ship_script(store: Store, request: LaunchRequest) -> None:
    """The startup script and the user-data that fetches it, into the job's folder (the VM reads the first)."""
    store.put_bytes(jobs.job_key(request.job_id, "startup.sh"), request.script.encode())
    store.put_bytes(jobs.job_key(request.job_id, "user-data"), request.user_data.encode())


def sized(spec: JobSpec, job_id: str, provider) -> LaunchRequest:
    """The request's machine, market, place and disks, without a script yet (what check_request and prices need).

    The disk fields size a cloud's disks: a local VM refuses them (its drives come with its type), the sandbox,
    which runs any job.yaml on this host, ignores them with a note.
    """
    req = LaunchRequest(
        job_id=job_id, user_data="", instance_type=spec.instance_type or provider.default_instance_type,
        spot=spec.spot, disk_gb=spec.disk_gb, max_runtime=spec.max_runtime, image=spec.image,
        region=spec.region, zone=spec.zone, tags={"runner-job": job_id}, spot_fallback=spec.spot_fallback,
        disk_type=spec.disk_type, disk_throughput=spec.disk_throughput, disk_iops=spec.disk_iops, local_ssds=spec.local_ssds,
    )
    given = req.disk_fields()
    if given and provider.name == "local":
        if "local_ssds" in given:
            raise SpecError(f"local_ssds {given['local_ssds']} is for GCP: a local VM gets emulated NVMe drives from its type, "
                            "local-<vCPUs>x<GiB>-nvme<N> (e.g. --type local-2x4-nvme2); leave local_ssds out")
        raise SpecError(f"{', '.join(f'{k} {v}' for k, v in given.items())}: a local VM's root disk is a file on this host, "
                        "with no type or provisioned speed; leave these fields out of job.yaml and the flags for --cloud local")
    if given and provider.name == "sandbox":
        _note_once(f"runner: the sandbox runs on this host and sizes no disk: {', '.join(given)} ignored\n")
        req = replace(req, disk_type=None, disk_throughput=None, disk_iops=None, local_ssds=None)
    return req


@lru_cache(maxsize=64)
def _note_once(line: str) -> None:
    """A note on stderr, once per process (a launch builds its request more than once)."""
    sys.stderr.write(line)


def plan(job_dir: str | Path, overrides: dict | None = None, cloud: str | None = None) -> Plan:
    """Validate everything and render the script; nothing is created anywhere."""
    spec, job_dir = load_job(job_dir, overrides)
    cloud = cloud or spec.cloud or config.default_cloud()
    if spec.nodes is not None:  # before the backend's own checks: a backend without a network between VMs is the answer
        from runner.cluster.plan import check_cloud

        check_cloud(cloud, spec.nodes)
    provider = get_provider(cloud)
    store = open_store(config.store_uri())
    job_id = jobs.new_job_id(spec.name)
    draft = sized(spec, job_id, provider)
    provider.check_request(draft)
    # A cloud's price costs API calls: ask before launch only for a ceiling (the launch records what it paid)
    usd_per_hour = cost.hourly_price(provider, draft) if spec.max_cost or cloud in cost.FREE else None
    if spec.max_cost:
        limit = cost.runtime_for(spec.max_cost, usd_per_hour, cloud, draft.instance_type)
        if limit and limit < spec.max_runtime:
            spec = spec.model_copy(update={"max_runtime": limit})
    if spec.nodes is not None:  # a Ray cluster: its nodes are ordinary jobs
        from runner.cluster.launch import plan_cluster

        return plan_cluster(spec, job_dir, cloud, store, job_id, usd_per_hour)
    if spec.items is not None:  # one job over many VMs: its shards are ordinary jobs
        from runner.fanout.launch import plan_fanout

        return plan_fanout(spec, job_dir, cloud, store, job_id, usd_per_hour)
    return Plan(spec, job_dir, job_id, cloud, store, request_for(spec, job_id, cloud, store), usd_per_hour)


def launch(p: Plan, code: Path | None = None, extra: dict | None = None) -> Instance:
    """Record the job, ship its code (packed here, or the already packed `code`), start its VM; a failed start is
    recorded as FAILED. `extra` adds fields to job.json (a shard's parent and number). A fan-out plan launches
    its shards instead (and returns them)."""
    if not isinstance(p, Plan):
        from runner.cluster.launch import ClusterPlan, launch_cluster

        if isinstance(p, ClusterPlan):
            return launch_cluster(p)
        from runner.fanout.launch import launch_fanout

        return launch_fanout(p)
    store, job_id = p.store, p.job_id
    prepare(p, code, extra)
    try:
        inst = get_provider(p.cloud).launch(p.request)
    except RunnerError as e:
        jobs.write_status(store, job_id, jobs.Status(jobs.FAILED, reason=f"launch failed: {e}"))
        raise
    jobs.write_json(store, job_id, "instance.json", inst.to_json())
    return inst


def prepare(p: Plan, code: Path | None = None, extra: dict | None = None) -> None:
    """Everything before the VM: inputs checked, code, job.json, startup script and user-data shipped, PROVISIONING."""
    store, job_id = p.store, p.job_id
    input_check.check(p.spec, store.uri(), p.job_dir, p.cloud)  # a missing input in a file:// store: nothing is created
    if code is not None:
        store.upload(code, jobs.job_key(job_id, "code.tar.gz"))
    else:
        with packing.packed(p.job_dir) as packed:  # a temporary file, uploaded as it is: never whole in memory
            if packed.skipped:
                sys.stderr.write(f"runner: not shipped from {p.job_dir}: {', '.join(packed.skipped)}\n")
            store.upload(packed.path, jobs.job_key(job_id, "code.tar.gz"))
    record = {**(extra or {}),
        "job_id": job_id, "cloud": p.cloud, "spec": p.spec.model_dump(), "job_dir": str(p.job_dir),
        "instance_type": p.request.instance_type, "spot": p.request.spot, "created_at": jobs.utcnow(),
        "launched_by": f"{getpass.getuser()}@{socket.gethostname()}",
        "outputs": output_uris(p.spec, store.uri(), job_id), "usd_per_hour": p.usd_per_hour,
        "request": {k: v for k, v in asdict(p.request).items() if k not in ("user_data", "script")},
    }
    jobs.write_json(store, job_id, "job.json", record)
    ship_script(store, p.request)
    jobs.write_status(store, job_id, jobs.Status(jobs.PROVISIONING))


def relaunch(store: Store, job_id: str, attempt: int, on_demand: bool = False) -> Instance:
    """A new VM for a preempted job, in the same store folder, so it resumes from its checkpoint.

    Its VM could have rewritten job.json and user-data: the spec is validated again and the script
    rendered again from it (with this attempt's number); the tags come from the job id. Each attempt
    logs under its own prefix, so nothing is copied.
    """
    record = jobs.read_json(store, job_id, "job.json")
    spec_data, cloud = record.get("spec"), record.get("cloud")
    if not isinstance(spec_data, dict):
        raise SpecError(f"job.json of {job_id} holds no spec to relaunch from (a {type(spec_data).__name__})")
    spec = validate(spec_data, f"job.json of {job_id}")
    if cloud not in PROVIDERS:
        raise SpecError(f"job.json of {job_id} names an unknown cloud {str(cloud)[:40]!r}; not relaunched")
    request = request_for(spec, job_id, cloud, store, attempt)
    how = "on-demand" if request.spot and on_demand else ("spot" if request.spot else "on-demand")
    request = replace(request, spot=request.spot and not on_demand)
    starting = jobs.Status(jobs.PROVISIONING, reason=f"attempt {attempt} ({how}) after a preemption")
    now = jobs.write_status(store, job_id, starting, replacing=jobs.PREEMPTED)
    if now is not starting:
        raise RunnerError(f"{job_id} is {now.state} now ({now.reason or 'no reason given'}); not relaunched")
    jobs.write_json(store, job_id, "instance.json", {"relaunching": attempt})  # no VM to reconcile with yet
    ship_script(store, request)  # rendered again from the validated spec: whatever the last VM left there is replaced
    try:
        inst = get_provider(cloud).launch(request)
    except RunnerError as e:
        jobs.write_status(store, job_id, jobs.Status(jobs.FAILED, reason=f"relaunch {attempt} failed: {e}"))
        raise
    jobs.write_json(store, job_id, "instance.json", {**inst.to_json(), "attempt": attempt})
    return inst
