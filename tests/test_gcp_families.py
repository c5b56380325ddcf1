"""GCE machine families: the boot disk type and the host-maintenance policy each one takes (pure)."""

from __future__ import annotations

import pytest
from test_gcp import JOB, SA, request

from runner.providers.gcp_build import Attempt, GcpSettings, instance_body
from runner.providers.gcp_families import boot_disk_type, family, on_host_maintenance

PD, HD = "pd-balanced", "hyperdisk-balanced"


@pytest.mark.parametrize("machine_type, disk, standard", [
    ("e2-standard-4", PD, "MIGRATE"),
    ("e2-micro", PD, "MIGRATE"),
    ("n1-standard-8", PD, "MIGRATE"),
    ("n2-highmem-16", PD, "MIGRATE"),
    ("n2-custom-4-16384", PD, "MIGRATE"),
    ("n2d-standard-32", PD, "MIGRATE"),
    ("t2d-standard-8", PD, "MIGRATE"),
    ("t2a-standard-4", PD, "MIGRATE"),
    ("c2-standard-60", PD, "MIGRATE"),
    ("c2d-highcpu-56", PD, "MIGRATE"),
    ("c3-standard-22", PD, "MIGRATE"),
    ("c3d-highmem-90", PD, "MIGRATE"),
    ("c3-standard-192-metal", HD, "TERMINATE"),  # bare metal: Hyperdisk only, no live migration
    ("m1-megamem-96", PD, "MIGRATE"),
    ("m3-ultramem-32", PD, "MIGRATE"),
    ("n4-standard-8", HD, "MIGRATE"),
    ("n4-highcpu-2", HD, "MIGRATE"),
    ("c4-standard-48", HD, "MIGRATE"),
    ("c4a-standard-4", HD, "MIGRATE"),
    ("c4d-standard-8", HD, "MIGRATE"),
    ("x4-megamem-960-metal", HD, "TERMINATE"),
    ("m4-megamem-56", HD, "TERMINATE"),
    ("h3-standard-88", PD, "TERMINATE"),
    ("z3-highmem-88", PD, "TERMINATE"),
    ("a2-highgpu-1g", PD, "TERMINATE"),
    ("a2-ultragpu-8g", PD, "TERMINATE"),
    ("a3-highgpu-8g", PD, "TERMINATE"),
    ("a3-megagpu-8g", PD, "TERMINATE"),
    ("a3-ultragpu-8g", HD, "TERMINATE"),
    ("a4-highgpu-8g", HD, "TERMINATE"),
    ("g2-standard-4", PD, "TERMINATE"),
    ("g4-standard-48", HD, "TERMINATE"),
    ("c9-standard-4", HD, "TERMINATE"),  # unknown, 4th generation or later: Hyperdisk, as all of those
    ("y2-standard-4", PD, "TERMINATE"),  # unknown, older: Persistent Disk; never MIGRATE, which not every family takes
])
def test_disk_and_maintenance_by_family(machine_type, disk, standard):
    assert boot_disk_type(machine_type) == disk
    assert on_host_maintenance(machine_type, spot=False) == standard
    assert on_host_maintenance(machine_type, spot=True) == "TERMINATE"  # spot VMs never migrate


def test_n1_with_accelerators_does_not_migrate():
    assert on_host_maintenance("n1-standard-8", spot=False, accelerators=1) == "TERMINATE"
    assert on_host_maintenance("n1-standard-8", spot=False) == "MIGRATE"


def test_family_of_a_type():
    assert [family(t) for t in ("c4a-standard-4", "e2-micro", "a3-ultragpu-8g", "c3-standard-192-metal")] == [
        "c4a", "e2", "a3-ultragpu", "c3-metal"]


@pytest.mark.parametrize("machine_type, disk, maintenance", [
    ("n4-standard-8", HD, "MIGRATE"), ("g2-standard-4", PD, "TERMINATE"), ("e2-standard-4", PD, "MIGRATE")])
def test_the_insert_body_takes_both_from_the_family(machine_type, disk, maintenance):
    body = instance_body(request(instance_type=machine_type, spot=False), GcpSettings("p", service_account=SA), "i",
                         Attempt("standard", "us-central1-a"))
    assert body["disks"][0]["initialize_params"]["disk_type"] == f"zones/us-central1-a/diskTypes/{disk}"
    assert body["scheduling"]["on_host_maintenance"] == maintenance
    assert body["labels"]["runner-job"] == JOB.lower()


def test_the_most_a_run_can_cost_prices_the_family_s_disk():
    from runner.providers import gcp_prices

    assert gcp_prices.cost(0.0, 730 * 3600, 100, HD) == pytest.approx(8.0)
    assert gcp_prices.cost(0.0, 730 * 3600, 100, PD) == pytest.approx(10.0)
