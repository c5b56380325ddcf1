"""The firewall rule that lets a cluster job's VMs reach each other on GCE, and nothing else reach them.

One ingress rule on the VMs' network: every protocol, from the VMs carrying the network tag to the VMs carrying
it (source tags = target tags), no source range. Every node of a cluster job carries the tag (LaunchRequest.network_tag).
Created by the launch when missing; a rule of that name that allows more (a source range, other tags) is refused.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from runner.errors import NotFoundError, SpecError

PROTOCOLS = ("tcp", "udp", "icmp")


def rule_name(tag: str) -> str:
    return f"{tag}-internal"


def rule_body(tag: str, network: str) -> dict:
    """The compute_v1.Firewall for the tag's rule, as a dict of its fields."""
    return {
        "name": rule_name(tag), "network": network, "direction": "INGRESS", "priority": 1000,
        "source_tags": [tag], "target_tags": [tag], "allowed": [{"I_p_protocol": p} for p in PROTOCOLS],
        "description": f"runner: the VMs tagged {tag} (the nodes of cluster jobs) reach each other; nothing else reaches them",
    }


def problems(found: Mapping, tag: str) -> list[str]:
    """What makes an existing rule (REST JSON) not the tag's rule: [] when it is."""
    out = []
    if found.get("direction", "INGRESS") != "INGRESS" or found.get("disabled"):
        out.append("it is not an enabled ingress rule")
    if found.get("sourceRanges"):
        out.append(f"it admits the ranges {', '.join(found['sourceRanges'])}")
    if list(found.get("sourceTags") or []) != [tag] or list(found.get("targetTags") or []) != [tag]:
        out.append(f"its source and target tags are not both [{tag}]")
    if found.get("sourceServiceAccounts") or found.get("targetServiceAccounts"):
        out.append("it names service accounts")
    allowed = {a.get("IPProtocol") for a in found.get("allowed") or [] if not a.get("ports")}
    if not {"tcp", "udp"} <= allowed and "all" not in allowed:
        out.append("it does not allow every TCP and UDP port")
    return out


def ensure(provider, tag: str) -> str:
    """The tag's rule on the configured network, created when missing; SpecError when one of its name is something else."""
    from google.cloud import compute_v1

    from runner.providers.gcp_api import call
    from runner.providers.gcp_build import resource

    project, cfg = provider.project(), provider.settings()
    network = resource(cfg.network or "default", "networks")
    firewalls = provider.client("FirewallsClient")
    name = rule_name(tag)
    try:
        found = call(f"GCE firewalls.get {name}", firewalls.get, project=project, firewall=name)
    except NotFoundError:
        op = call(f"GCE firewalls.insert {name}", firewalls.insert, project=project, firewall_resource=compute_v1.Firewall(rule_body(tag, network)))
        error = getattr(op, "error", None)
        if error and getattr(error, "errors", None):
            raise SpecError(f"GCE firewalls.insert {name}: {error.errors[0].message}") from None
        return f"firewall rule {name} (created): tag {tag} to tag {tag}, every protocol"
    wrong = problems(json.loads(type(found).to_json(found)), tag)
    if wrong:
        raise SpecError(f"the firewall rule {name} in project {project} is not runner's: {'; '.join(wrong)}. Delete it "
                        f"(gcloud compute firewall-rules delete {name}) and launch again: runner creates it, tag {tag} to tag {tag} only")
    return f"firewall rule {name}: tag {tag} to tag {tag}, every protocol"
