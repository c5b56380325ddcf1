"""The seam between the launcher and a backend: one small Protocol, and the values it passes."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import ClassVar, Protocol


@dataclass(frozen=True)
class LaunchRequest:
    """Everything a backend needs to start one VM for one job."""

    job_id: str
    user_data: str  # the rendered bootstrap (it fetches `script` from the job's folder in the store)
    instance_type: str
    spot: bool
    disk_gb: int
    max_runtime: int  # seconds
    image: str | None = None
    region: str | None = None
    zone: str | None = None
    tags: Mapping[str, str] = field(default_factory=dict)
    spot_fallback: bool | None = None  # on-demand when no zone has spot capacity; None: the backend's config
    attempt: int = 1  # 1 for the first launch, N for the (N-1)th relaunch; part of every idempotency token
    mounts: tuple[str, ...] = ()  # store-relative paths the job reads (a local VM shares only these, read-only)
    script: str = ""  # the rendered startup script: the launcher uploads it to jobs/<id>/startup.sh before the VM starts
    network_tag: str = ""  # a cluster node's network: the AWS security group of that name, the GCP network tag of that name
    disk_type: str | None = None  # the root disk's type; None: the backend's own for the instance type
    disk_throughput: int | None = None  # the root disk's provisioned MiB/s (AWS gp3, GCP hyperdisk-balanced); None: a default
    disk_iops: int | None = None  # the root disk's provisioned IOPS, likewise
    local_ssds: int | None = None  # GCP local SSDs (NVMe, 375 GiB each) for the job's scratch; None: none, or the type's own

    def disk_fields(self) -> dict[str, object]:
        """The root-disk and local-SSD fields the request sets, by their job.yaml names."""
        fields = {"disk_type": self.disk_type, "disk_throughput": self.disk_throughput, "disk_iops": self.disk_iops,
                  "local_ssds": self.local_ssds}
        return {k: v for k, v in fields.items() if v is not None}


@dataclass(frozen=True)
class Instance:
    """A VM (or sandbox process) a backend started; `data` is backend-specific and JSON-able."""

    cloud: str
    id: str
    job_id: str
    zone: str = ""
    data: Mapping[str, object] = field(default_factory=dict)

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, d: Mapping) -> Instance:
        return cls(**{k: d[k] for k in ("cloud", "id", "job_id", "zone", "data") if k in d})


# What `state` returns: the VM is starting or running, or gone; `reason` says why it went
# (e.g. the cloud's spot interruption reason), so a reconciler can tell LOST from PREEMPTED.
@dataclass(frozen=True)
class InstanceState:
    alive: bool
    reason: str = ""
    preempted: bool = False


class Provider(Protocol):
    """One backend. Every VM it starts is tagged runner-job=<job id>.

    Optional members: `state_every: float`, the least seconds between state() calls while a job is
    waited on (for rate-limited cloud APIs; absent: every poll); `quote(req) -> dict`, what
    `--dry-run` adds (zones, hourly prices, the most the run can cost), read-only; `poweroff_wait: float`,
    how long `--wait` waits for the machine itself to be gone after the final status (backends on this host);
    `launch_batch(batch: runner.providers.batch.Batch) -> dict[int, Instance | RunnerError]`, a fan-out's shards
    started together in as few calls as the cloud allows (one per zone attempt), each VM tagged runner-job=<its own
    shard's id> before it is returned; a shard without a VM maps to why; raises only when nothing was started
    (absent: the launcher starts each shard with launch()).
    """

    name: ClassVar[str]
    default_instance_type: ClassVar[str]
    interruption: str  # whose spot notice the startup script watches: "aws", "gcp" or ""
    metadata_url: str  # the metadata server the script asks

    def check_request(self, req: LaunchRequest) -> None:
        """Reject values this backend cannot take (instance type, zone) before anything starts."""

    def store_for_vm(self, store: str) -> str:
        """The store URI as the VM sees it (a local VM sees a shared folder at another path)."""

    def launch(self, req: LaunchRequest) -> Instance:
        """Start one VM and return at once; raises CapacityError, QuotaError or AuthError."""

    def state(self, inst: Instance) -> InstanceState:
        """Whether the VM still exists; a VM that never existed is not alive."""

    def terminate(self, inst: Instance) -> None:
        """Stop and delete the VM; idempotent: gone == done.

        Acts only on a VM that carries the tag/label runner-job=<inst.job_id>: `inst` comes from the
        store, which a job's VM can write. A VM without that tag raises NotOwnedError and is left alone.
        """

    def find(self, tags: Mapping[str, str]) -> list[Instance]:
        """Every VM of this backend carrying all of `tags`; a value of "*" matches any value of that key."""

    def console_output(self, inst: Instance) -> str:
        """The VM's console: the log of last resort ('' when there is none)."""
