"""`runner doctor --cloud gcp`: check every part of the GCP setup, read-only; launch nothing."""

from __future__ import annotations

from runner import config, settings
from runner.errors import RunnerError
from runner.store import split_uri

Check = tuple[bool, str, str]  # (ok, what was checked, what was found or how to fix it)
CLOUD_CHECKS = ("store", "service account", "permissions", "image", "zones", "network", "stopped VMs")


def run(provider) -> list[Check]:
    """One entry per check; after a credentials failure the cloud checks are skipped."""
    try:
        cfg = provider.settings()
        project = provider.project()
    except RunnerError as e:
        return [(False, "config", str(e))]
    out: list[Check] = [(True, "project", project)]
    ok, detail = _try(lambda: _credentials(provider))
    out.append((ok, "credentials", str(detail)))
    if not ok:
        return out + [(False, name, "skipped: no working credentials") for name in CLOUD_CHECKS]
    out.append(_store(provider, project))
    sa = cfg.service_account
    out.append((bool(sa), "service account", sa or "none: set RUNNER_GCP_SERVICE_ACCOUNT (docs/gcp.md has its roles)"))
    ok, detail = _try(lambda: _permissions(provider, cfg, project))
    out.append((ok and not detail, "permissions", str(detail or "the launcher holds every permission the configured features need")))
    ok, detail = _try(lambda: _image(provider))
    out.append((ok, "image", str(detail)))
    ok, detail = _try(lambda: _zones(provider, cfg, project))
    out.append((ok, "zones", str(detail)))
    ok, detail = _try(lambda: _egress(provider, cfg, project))
    out.append((ok and not detail, "network", str(detail or _network(cfg))))
    ok, detail = _try(lambda: _stopped(provider))
    out.append((ok and not detail, "stopped VMs", str(detail or "none (a stopped VM still bills its disk)")))
    return out


def _try(fn) -> tuple[bool, object]:
    """(True, fn()) or (False, the translated error's message)."""
    from runner.providers.gcp import translate

    try:
        return True, fn()
    except Exception as e:
        err = translate(e, "check")
        if isinstance(err, RunnerError):
            return False, str(err)
        raise


def _credentials(provider) -> str:
    from google.auth.transport.requests import Request

    creds = provider.credentials()[0]
    if hasattr(creds, "refresh") and not getattr(creds, "token", None):
        creds.refresh(Request())
    who = getattr(creds, "service_account_email", None) or getattr(creds, "account", None)
    return f"{type(creds).__module__.split('.')[-1]} credentials{f' ({who})' if who else ''}"


def _store(provider, project: str) -> Check:
    uri = config.store_uri()
    scheme, bucket, _ = split_uri(uri)
    if scheme != "gs":
        return False, "store", f"{uri} is not on GCS, and a VM cannot see it: set RUNNER_STORE=gs://bucket/prefix"

    def reach() -> str:
        from google.cloud import storage

        storage.Client(project=project).get_bucket(bucket)
        return f"{uri} (bucket reachable)"

    ok, detail = _try(reach)
    return ok, "store", str(detail) if ok else f"{detail}; create the bucket or fix RUNNER_STORE"


def _image(provider) -> str:
    image = provider.resolve_image(None)
    return f"{image['name']} ({image['source']})"


def _zones(provider, cfg, project: str) -> str:
    if not cfg.zones:
        raise RunnerError(f"none: set RUNNER_GCP_ZONES (or [gcp] zones in {settings.path()}), or pass --zone/--region")
    client = provider.client("ZonesClient")
    status = {z: client.get(project=project, zone=z).status for z in cfg.zones}
    down = [z for z, s in status.items() if s != "UP"]
    if down:
        raise RunnerError(f"zone(s) not UP: {', '.join(down)}")
    return ", ".join(cfg.zones)


def _permissions(provider, cfg, project: str) -> str:
    """'' or which permissions the credentials lack (iam.serviceAccounts.actAs is granted on the VM's account)."""
    from runner.providers.gcp_iam import missing

    lacking = missing(provider, cfg, project)
    if not lacking:
        return ""
    return (f"missing {', '.join(lacking)} on project {project}: grant the launcher the role in "
            "docs/policies/gcp-launcher-role.yaml (docs/gcp.md shows the gcloud commands)")


def _egress(provider, cfg, project: str) -> str:
    """'' when VMs of every configured zone's region reach Google's APIs, or what to do."""
    from runner.providers.gcp_build import region_of
    from runner.providers.gcp_network import check_region

    if cfg.external_ip:
        return ""
    found = [check_region(provider, cfg, project, r) for r in sorted({region_of(z) for z in cfg.zones} - {""})]
    return "; ".join(f for f in found if f)


def _network(cfg) -> str:
    net = f"network {cfg.network or 'default'}" + (f", subnetwork {cfg.subnetwork}" if cfg.subnetwork else "")
    if cfg.external_ip:
        return f"{net}; VMs get an external IP"
    return f"{net}; no external IP: the subnet needs Private Google Access, and Cloud NAT for downloads (docs/gcp.md)"


def _stopped(provider) -> str:
    stopped = [f"{z}/{vm.name}" for z, vm in provider._aggregated('status = "TERMINATED"') if "runner-job" in vm.labels]
    if not stopped:
        return ""
    return f"{len(stopped)} stopped runner VM(s) still bill their disks: {', '.join(stopped[:5])}; the next launch deletes them"
