"""The security group that lets a cluster job's EC2 instances reach each other, and nothing else reach them.

One group per VPC, named after the network tag: its only inbound rule allows every protocol from members of the
group itself (a self-referencing rule), so no address outside it gets in; outbound stays open (the store, the APIs).
Created by the launch when missing and checked by `runner doctor`; every node of a cluster job is launched in it
(LaunchRequest.network_tag), beside the configured security group if any.
"""

from __future__ import annotations

from collections.abc import Mapping

from runner.errors import NotFoundError, SpecError


def group_request(name: str, vpc: str) -> dict:
    """CreateSecurityGroup's kwargs."""
    return {"GroupName": name, "VpcId": vpc, "Description": f"runner: the nodes of cluster jobs ({name}) reach each other; nothing else reaches them",
            "TagSpecifications": [{"ResourceType": "security-group", "Tags": [{"Key": "runner-network", "Value": name}]}]}


def ingress_request(group_id: str) -> dict:
    """AuthorizeSecurityGroupIngress's kwargs: every protocol, from members of the group only."""
    return {"GroupId": group_id, "IpPermissions": [{"IpProtocol": "-1", "UserIdGroupPairs": [
        {"GroupId": group_id, "Description": "members of this group only"}]}]}


def problems(group: Mapping) -> list[str]:
    """What makes a described group not the cluster's: [] when its only inbound rule is the self-referencing one."""
    gid, out = group.get("GroupId", ""), []
    rules = group.get("IpPermissions") or []
    if not any(r.get("IpProtocol") == "-1" and any(p.get("GroupId") == gid for p in r.get("UserIdGroupPairs") or []) for r in rules):
        out.append("it lacks the rule that lets its members reach each other (every protocol, from the group itself)")
    for r in rules:
        ranges = [x.get("CidrIp") for x in r.get("IpRanges") or []] + [x.get("CidrIpv6") for x in r.get("Ipv6Ranges") or []]
        if ranges or r.get("PrefixListIds"):
            out.append(f"it admits {', '.join(filter(None, ranges)) or 'a prefix list'} ({r.get('IpProtocol')})")
        others = [p.get("GroupId") for p in r.get("UserIdGroupPairs") or [] if p.get("GroupId") != gid]
        if others:
            out.append(f"it admits the group(s) {', '.join(map(str, others))}")
    return out


def _vpc(provider, ec2, cfg) -> str:
    from runner.providers.aws_errors import call

    if cfg.subnets:
        found = call("EC2 DescribeSubnets", ec2.describe_subnets, SubnetIds=list(cfg.subnets[:1]))["Subnets"]
        if found:
            return found[0]["VpcId"]
    vpcs = call("EC2 DescribeVpcs", ec2.describe_vpcs, Filters=[{"Name": "is-default", "Values": ["true"]}])["Vpcs"]
    if not vpcs:
        raise SpecError(f"no default VPC in {cfg.region} and no subnets configured: set RUNNER_AWS_SUBNETS for cluster jobs")
    return vpcs[0]["VpcId"]


def find(provider, ec2, cfg, name: str) -> dict | None:
    """The group named `name` in the nodes' VPC, described; None when there is none."""
    return _in_vpc(ec2, _vpc(provider, ec2, cfg), name)


def _in_vpc(ec2, vpc: str, name: str) -> dict | None:
    """The group named `name` in `vpc`, described; None when there is none."""
    from runner.providers.aws_errors import call

    filters = [{"Name": "group-name", "Values": [name]}, {"Name": "vpc-id", "Values": [vpc]}]
    found = call("EC2 DescribeSecurityGroups", ec2.describe_security_groups, Filters=filters)["SecurityGroups"]
    return found[0] if found else None


def check(provider, ec2, cfg, name: str) -> str:
    """`runner doctor`'s verdict on the group (read-only): what it is, or RunnerError with what is wrong."""
    return _verdict(name, find(provider, ec2, cfg, name))


def _verdict(name: str, group: dict | None) -> str:
    """What the described group is (or that there is none yet); SpecError naming what it admits besides its members."""
    if group is None:
        return f"security group {name}: none yet (the first cluster job creates it: members reach each other, nothing else)"
    wrong = problems(group)
    if wrong:
        raise SpecError(f"security group {name} ({group['GroupId']}) is not runner's: {'; '.join(wrong)}; remove those rules "
                        "(or the group: the next cluster job creates it again)")
    return f"security group {name} ({group['GroupId']}): members reach each other, nothing else"


def ensure(provider, name: str, region: str | None = None) -> str:
    """The group, created with its one rule when missing; SpecError when a group of that name admits anything else."""
    from runner.providers.aws_errors import call

    cfg = provider.load_settings()
    ec2 = provider.client("ec2", region or cfg.region)
    vpc = _vpc(provider, ec2, cfg)  # looked up once: the group is found, or created, in it
    group = _in_vpc(ec2, vpc, name)
    if group is None:
        gid = call(f"EC2 CreateSecurityGroup {name}", ec2.create_security_group, **group_request(name, vpc))["GroupId"]
        call(f"EC2 AuthorizeSecurityGroupIngress {gid}", ec2.authorize_security_group_ingress, **ingress_request(gid))
        return f"security group {name} ({gid}, created): members reach each other, nothing else"
    return _verdict(name, group)


def group_id(provider, ec2, cfg, name: str) -> str:
    """The id of the group a node is launched in (NotFoundError before the launch has made it)."""
    group = find(provider, ec2, cfg, name)
    if group is None:
        raise NotFoundError(f"security group {name} does not exist in {cfg.region}: a cluster launch creates it first")
    return group["GroupId"]
