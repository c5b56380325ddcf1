"""A VM without an external IP needs Private Google Access or Cloud NAT: launch and doctor find out first."""

from __future__ import annotations

import pytest
from fake_google import PROJECT
from test_gcp import gcp, request  # noqa: F401 (gcp: the provider fixture)

from runner.errors import SpecError
from runner.providers.gcp import GcpProvider
from runner.providers.gcp_network import fix_command, nat_covers, subnet_ref

pytest_plugins = ["fake_google"]  # its fixtures: google, gcs_server, gcs


@pytest.mark.parametrize("subnetwork, network, expected", [
    ("", "", ("p", "us-central1", "default")),
    ("", "global/networks/vpc", ("p", "us-central1", "vpc")),
    ("jobs", "vpc", ("p", "us-central1", "jobs")),
    ("regions/europe-west1/subnetworks/jobs", "", ("p", "europe-west1", "jobs")),
    ("projects/host/regions/us-central1/subnetworks/shared", "", ("host", "us-central1", "shared")),  # shared VPC
    ("https://www.googleapis.com/compute/v1/projects/host/regions/us-east1/subnetworks/s", "", ("host", "us-east1", "s")),
])
def test_the_subnet_a_vm_joins(subnetwork, network, expected):
    assert subnet_ref(subnetwork, network, "p", "us-central1") == expected


def test_which_nat_serves_a_subnet():
    net = "https://x/compute/v1/projects/p/global/networks/default"
    every = {"network": net, "nats": [{"source_subnetwork_ip_ranges_to_nat": "ALL_SUBNETWORKS_ALL_IP_RANGES"}]}
    listed = {"network": net, "nats": [{"source_subnetwork_ip_ranges_to_nat": "LIST_OF_SUBNETWORKS",
                                         "subnetworks": [{"name": "https://x/regions/r/subnetworks/default"}]}]}
    other_net = {**every, "network": "https://x/compute/v1/projects/p/global/networks/other"}
    assert nat_covers([every], net, "default") and nat_covers([listed], net, "default")
    assert not nat_covers([listed], net, "jobs") and not nat_covers([other_net], net, "default")
    assert not nat_covers([{"network": net}], net, "default") and not nat_covers([], net, "default")


def test_launch_without_a_way_out_fails_before_any_insert(gcp, google):  # noqa: F811
    google.private_access["us-central1"] = False
    with pytest.raises(SpecError) as e:
        gcp.launch(request())
    assert fix_command(PROJECT, "us-central1", "default") in str(e.value)
    assert "no Private Google Access and no Cloud NAT" in str(e.value) and not google.inserts()
    assert any(r["path"] == f"/compute/v1/projects/{PROJECT}/regions/us-central1/subnetworks/default" for r in google.log)


def test_cloud_nat_or_an_external_ip_is_a_way_out(gcp, google, monkeypatch):  # noqa: F811
    google.private_access["us-central1"] = False
    google.routers["us-central1"] = [{"name": "nat-router", "network": f"{google.url}/compute/v1/projects/{PROJECT}/global/networks/default",
                                      "nats": [{"name": "nat", "sourceSubnetworkIpRangesToNat": "ALL_SUBNETWORKS_ALL_IP_RANGES"}]}]
    gcp.launch(request())
    assert len(google.inserts()) == 1
    google.routers.clear()
    monkeypatch.setenv("RUNNER_GCP_EXTERNAL_IP", "true")
    google.log.clear()
    GcpProvider(credentials=gcp.credentials()[0]).launch(request(job_id="demo-20240101T000000Z-eeeeee"))
    assert len(google.inserts()) == 1 and not [r for r in google.log if "/subnetworks/" in r["path"]]
