"""What a sandboxed job sees in its environment: what a VM's job would, never the launcher's own."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

# What an instance profile / service account and the cloud's endpoints give a VM, by cloud.
CLOUD_VARS = {
    "aws": ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_DEFAULT_REGION", "AWS_REGION",
            "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL_SSM", "AWS_CA_BUNDLE"),
    "gcp": ("GOOGLE_APPLICATION_CREDENTIALS", "STORAGE_EMULATOR_HOST", "GCE_METADATA_HOST", "GCE_METADATA_ROOT",
            "GCE_METADATA_IP", "GOOGLE_CLOUD_PROJECT", "CLOUDSDK_CORE_PROJECT", "RUNNER_GCP_SECRETS_URL",
            "BOTO_CONFIG", "BOTO_PATH"),  # gsutil's config: the image's /etc/boto.cfg on a VM
}
SCHEME_CLOUD = {"s3": "aws", "gs": "gcp"}


def clouds_for(store_uri: str, interruption: str) -> set[str]:
    """The clouds the sandbox stands in for: the store's, and the one whose spot notice it rehearses."""
    scheme = store_uri.split("://", 1)[0]
    return {c for c in (SCHEME_CLOUD.get(scheme), interruption or None) if c in CLOUD_VARS}


def job_env(environ: Mapping[str, str], *, store_uri: str, interruption: str, shims: str, vm_root: str,
            home: str, credentials: Mapping[str, str] | None = None) -> dict[str, str]:
    """The startup script's whole environment: the shims first on PATH, a home of its own, the store's credentials.

    `environ` is the launcher's; only PATH (the tools a VM's image would hold) and the variables of the
    clouds the sandbox stands in for pass. `credentials` fills in what the launcher resolved otherwise
    (e.g. from a profile), as an instance profile would hand them out.
    """
    env = {
        "PATH": f"{shims}:{environ.get('PATH') or '/usr/local/bin:/usr/bin:/bin'}",
        "HOME": home,
        "LANG": "C.UTF-8",
        "RUNNER_VM_ROOT": vm_root,
    }
    for cloud in sorted(clouds_for(store_uri, interruption)):
        env.update({k: environ[k] for k in CLOUD_VARS[cloud] if environ.get(k)})
    env.update({k: v for k, v in (credentials or {}).items() if v and k not in env})
    return env


def aws_credentials(environ: Mapping[str, str]) -> dict[str, str]:
    """The launcher's AWS credentials as variables, resolved like boto3 does (a profile too); {} without any."""
    files = [Path(environ.get(k) or Path(environ.get("HOME") or "/nonexistent") / ".aws" / f)
             for k, f in (("AWS_SHARED_CREDENTIALS_FILE", "credentials"), ("AWS_CONFIG_FILE", "config"))]
    if environ.get("AWS_ACCESS_KEY_ID") or not (environ.get("AWS_PROFILE") or any(f.is_file() for f in files)):
        return {}  # nothing to resolve (and never ask a metadata server from the launcher)
    try:
        import boto3

        session = boto3.Session()
        creds = session.get_credentials()
        frozen = creds.get_frozen_credentials() if creds else None
    except Exception:  # noqa: BLE001 (no boto3, no profile, or a broken config: the job gets none, as a VM without a role)
        return {}
    if frozen is None:
        return {}
    region = session.region_name or ""
    return {"AWS_ACCESS_KEY_ID": frozen.access_key, "AWS_SECRET_ACCESS_KEY": frozen.secret_key,
            "AWS_SESSION_TOKEN": frozen.token or "", "AWS_DEFAULT_REGION": region, "AWS_REGION": region}
