"""A cluster job's private network between its local VMs: the plan (subnets, addresses, QEMU's argv, the seed's
network-config, the share), the hub that joins only the job's own sockets and ends with its VMs, and one real
2-node run of jobs/taxi-ray in local VMs (marked vm and slow: `make test-cluster-vm`)."""

from __future__ import annotations

import csv
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from conftest import ROOT, run_cli
from taxi_reference import expected_rows, make_data, reference_counts

from runner.cluster import ids
from runner.cluster.script import render_ray_node
from runner.errors import RunnerError, SpecError
from runner.providers import local_net, local_share

PARENT = "taxi-ray-20261201T101500Z-3fa9c2"
OTHER = "taxi-ray-20261201T101500Z-abcdef"


# ---------------------------------------------------------------- pure


def test_each_node_has_its_address_and_mac_on_the_jobs_subnet(tmp_path):
    net = local_net.Net(PARENT, "10.7.200", tmp_path)
    assert [net.address(k) for k in (0, 1, 63)] == ["10.7.200.2", "10.7.200.3", "10.7.200.65"]
    assert [net.mac(k) for k in (0, 1)] == ["52:54:07:c8:00:02", "52:54:07:c8:00:03"]
    assert net.vm_socket(1) == tmp_path / "vm1.sock" and net.hub_socket == tmp_path / "hub.sock"
    for bad in (-1, 64, True, "1"):
        with pytest.raises(SpecError, match="numbered 0 to 63"):
            net.address(bad)


def test_subnets_start_at_the_jobs_own_and_cover_10_x_y_once():
    first = [next(local_net.candidates(p)) for p in (PARENT, OTHER)]
    assert first[0] != first[1] and first[0] == next(local_net.candidates(PARENT))  # derived from the id, stable
    every = list(local_net.candidates(PARENT))
    assert len(every) == len(set(every)) == 254 * 256
    assert all(local_net.PREFIX_RE.match(p) for p in every)
    assert "10.0.2" not in every and "10.255.0" not in every  # QEMU's user network and 10.255 are never used


def test_the_second_nic_is_a_dgram_netdev_between_the_vms_socket_and_the_hub(tmp_path):
    net = local_net.Net(PARENT, "10.7.200", tmp_path)
    args = local_net.qemu_args(net, 1)
    assert args == ["-netdev", f"dgram,id=cluster,local.type=unix,local.path={tmp_path}/vm1.sock,"
                               f"remote.type=unix,remote.path={tmp_path}/hub.sock",
                    "-device", "virtio-net-pci,netdev=cluster,mac=52:54:07:c8:00:03"]
    assert not any(w in " ".join(args) for w in ("user", "tap", "hostfwd", "inet", "bridge"))
    with pytest.raises(RunnerError, match="too long for a unix socket"):
        local_net.qemu_args(local_net.Net(PARENT, "10.7.200", tmp_path / ("x" * 100)), 0)


def test_the_seed_names_the_nic_by_its_mac_with_a_static_address_only(tmp_path):
    net = local_net.Net(PARENT, "10.7.200", tmp_path)
    assert yaml.safe_load(local_net.network_config(net, 2)) == {"version": 2, "ethernets": {"cluster0": {
        "match": {"macaddress": "52:54:07:c8:00:04"}, "set-name": "cluster0", "addresses": ["10.7.200.4/24"],
        "dhcp4": False, "dhcp6": False}}}  # no gateway, no route, no nameserver: the link and nothing beyond it


def test_local_nodes_must_fit_the_hosts_memory_together():
    local_net.check_cluster(2, 2, 23)
    with pytest.raises(SpecError, match=r"nodes: 8 local VMs of 4 GiB each need 32 GiB, and this host has 23 GiB: use fewer"):
        local_net.check_cluster(8, 4, 23)


def test_ray_sh_binds_a_local_node_to_its_address_on_the_link():
    script = render_ray_node(PARENT, ids.node_id(PARENT, 0), "file:///mnt/runner-store", "true", "local", environ={}, node_net="10.7.200")
    assert "NODE_NET=10.7.200  #" in script and 'grep -qF " inet $NODE_NET.$((K + 2))/"' in script
    assert "NODE_NET=''  #" in render_ray_node(PARENT, ids.node_id(PARENT, 0), "s3://b/r", "true", "aws", environ={})
    with pytest.raises(SpecError, match="local VMs only, and they need one"):
        render_ray_node(PARENT, ids.node_id(PARENT, 0), "file:///mnt/runner-store", "true", "local", environ={})


def test_a_nodes_share_lets_the_head_write_beside_the_records_and_workers_read(tmp_path):
    store = tmp_path / "store"
    parent = store / "jobs" / PARENT
    (parent / "nodes").mkdir(parents=True)
    for name in ("job.json", "ray.sh", "status.json"):
        (parent / name).write_text("{}")
    for k in (0, 1):
        (store / "jobs" / ids.node_id(PARENT, k)).mkdir()
    head = local_share.plan(store, ids.node_id(PARENT, 0), [])
    assert [(b.target, b.writable) for b in head[:5]] == [
        (f"jobs/{PARENT}", True), (f"jobs/{PARENT}/job.json", False), (f"jobs/{PARENT}/ray.sh", False),
        (f"jobs/{PARENT}/status.json", False), (f"jobs/{PARENT}/nodes", False)]
    worker = local_share.plan(store, ids.node_id(PARENT, 1), [f"jobs/{PARENT}/ray.sh"])
    assert [(b.target, b.writable) for b in worker] == [
        (f"jobs/{PARENT}", False), (f"jobs/{ids.node_id(PARENT, 0)}", False), (f"jobs/{PARENT}/ray.sh", False),
        (f"jobs/{ids.node_id(PARENT, 1)}", True)]
    (parent / "status.json").unlink()
    (parent / "status.json").symlink_to("/etc/passwd")
    with pytest.raises(SpecError, match="is a link"):
        local_share.plan(store, ids.node_id(PARENT, 0), [])


# ---------------------------------------------------------------- reservations and the hub


def test_two_jobs_never_share_a_subnet_and_stale_reservations_are_freed(runner_home, monkeypatch):
    a = local_net.reserve(PARENT)
    assert local_net.reserve(PARENT) == a  # the same job: the same network
    monkeypatch.setattr(local_net, "candidates", lambda parent: iter([a.prefix, "10.9.9"]))
    b = local_net.reserve(OTHER)
    assert b.prefix == "10.9.9" and b.sockets != a.sockets
    assert a.sockets.stat().st_mode & 0o777 == 0o700
    record = local_net.root() / f"{PARENT}.json"
    data = json.loads(record.read_text())
    data["created"] -= local_net.STALE + 1  # a launch that never started a VM
    record.write_text(json.dumps(data))
    monkeypatch.setattr(local_net, "candidates", lambda parent: iter([a.prefix]))
    c = local_net.reserve("third-20261201T101500Z-000000")
    assert c.prefix == a.prefix and not record.exists() and not a.sockets.exists()


def test_a_node_without_a_reserved_network_is_not_started(runner_home):
    with pytest.raises(RunnerError, match=f"cluster job {PARENT} has no private network on this host"):
        local_net.attach(PARENT, 0, lambda: pytest.fail("started"))


def _vm(net: local_net.Net, k: int) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(str(net.vm_socket(k)))
    s.settimeout(10)
    return s


def _frame(dst: bytes, src: bytes, payload: bytes) -> bytes:
    return dst + src + b"\x08\x00" + payload


def _sleeper() -> tuple[subprocess.Popen, dict]:
    from runner.providers import proc

    p = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"], start_new_session=True)
    return p, {"pid": p.pid, "start": proc.start_time(p.pid)}


def _gone(path: Path, seconds: float = 30) -> bool:
    deadline = time.monotonic() + seconds
    while path.exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    return not path.exists()


def test_the_hub_joins_only_the_jobs_own_vms_and_ends_with_them(runner_home, tmp_path):
    nets = {p: local_net.reserve(p) for p in (PARENT, OTHER)}
    vms, procs = {}, []
    for p, net in nets.items():
        for k in (0, 1):
            proc_, data = _sleeper()  # stands for node k's VM supervisor
            procs.append(proc_)
            local_net.attach(p, k, lambda data=data: data)
            vms[p, k] = _vm(net, k)
    net = nets[PARENT]
    deadline = time.monotonic() + 30
    while not (net.hub_socket.exists() and nets[OTHER].hub_socket.exists()) and time.monotonic() < deadline:
        time.sleep(0.1)
    a, b = b"\x52\x54\x00\x00\x00\x02", b"\x52\x54\x00\x00\x00\x03"
    vms[PARENT, 0].sendto(_frame(b"\xff" * 6, a, b"arp?"), str(net.hub_socket))  # a broadcast reaches the other node
    assert vms[PARENT, 1].recv(2048) == _frame(b"\xff" * 6, a, b"arp?")
    vms[PARENT, 1].sendto(_frame(a, b, b"reply"), str(net.hub_socket))  # a unicast reaches its learnt MAC
    assert vms[PARENT, 0].recv(2048) == _frame(a, b, b"reply")
    outsider = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    outsider.bind(str(tmp_path / "vm5.sock"))  # a vm<K>.sock name, but not in the job's folder
    outsider.sendto(_frame(b"\xff" * 6, b"\x52\x54\x00\x00\x00\x09", b"outsider"), str(net.hub_socket))
    vms[OTHER, 0].sendto(_frame(b"\xff" * 6, b"\x52\x54\x00\x00\x00\x07", b"other job"), str(net.hub_socket))
    vms[OTHER, 0].sendto(_frame(b"\xff" * 6, b"\x52\x54\x00\x00\x00\x07", b"own hub"), str(nets[OTHER].hub_socket))
    vms[PARENT, 0].sendto(_frame(b"\xff" * 6, a, b"last"), str(net.hub_socket))
    assert vms[PARENT, 1].recv(2048) == _frame(b"\xff" * 6, a, b"last")  # the outsiders' frames never came first
    assert vms[OTHER, 1].recv(2048).endswith(b"own hub")  # the other job's frames stay on its own link
    for s in (vms[OTHER, 1], vms[PARENT, 1]):
        s.settimeout(0.5)
        with pytest.raises(TimeoutError):
            s.recv(2048)
    record = local_net.root() / f"{PARENT}.json"
    hub = json.loads(record.read_text())["hub"]
    assert local_net.hub_alive({"hub": hub})
    for p in procs[:2]:  # the job's VMs end: its hub goes, with the reservation and the sockets
        p.kill()
        p.wait()
    assert _gone(record) and _gone(net.sockets) and _gone(record.with_suffix(".hub.log"))
    assert (local_net.root() / f"{OTHER}.json").exists()  # the other job's network is its own
    for p in procs[2:]:
        p.kill()
        p.wait()
    assert _gone(local_net.root() / f"{OTHER}.json") and _gone(nets[OTHER].sockets)
    for s in [*vms.values(), outsider]:
        s.close()


# ---------------------------------------------------------------- one real 2-node run (minutes under TCG)

IMAGES = Path(os.environ.get("RUNNER_IMAGES") or Path.home() / ".runner" / "images")


@pytest.mark.vm
@pytest.mark.slow
def test_taxi_ray_over_two_local_vms(runner_home, tmp_path, monkeypatch):
    """jobs/taxi-ray on 2 local VMs joined by the job's private network: its result equals jobs/taxi's."""
    subprocess.run(["make", "--no-print-directory", "image", "CLOUD=local"], cwd=ROOT, check=True,
                   env={**os.environ, "RUNNER_IMAGES": str(IMAGES)})
    monkeypatch.setenv("RUNNER_IMAGES", str(IMAGES))
    data = runner_home / "store" / "data" / "nyc-taxi"
    make_data.generate(data, files=4, rows=20000, seed=11, fmt="both")
    r = run_cli("launch", str(ROOT / "jobs" / "taxi-ray"), "--cloud", "local", "--nodes", "2", "--type", "local-1x2",
                "--wait", "--json", "-q", timeout=1800)
    assert r.returncode == 0, r.stderr + r.stdout
    job = json.loads(r.stdout.strip().splitlines()[-1])
    job_id = job["job_id"]
    assert job["state"] == "SUCCEEDED", job
    out = tmp_path / "out"
    assert run_cli("outputs", job_id, str(out)).returncode == 0
    rows = list(csv.reader((out / "passenger_counts.csv").read_text().splitlines()))
    assert rows[0] == ["passenger_count", "trips"] and rows[1:] == expected_rows(reference_counts(data))
    record = json.loads((runner_home / "store" / "jobs" / job_id / "job.json").read_text())
    prefix = record["cluster"]["network"].split("private network ", 1)[1].split(".0/24", 1)[0]
    head_log = run_cli("logs", job_id, "--node", "0", "--all").stdout
    worker_log = run_cli("logs", job_id, "--node", "1", "--all").stdout
    assert f"head 0 of 2 on {prefix}.2" in head_log and "2 of 2 nodes joined" in head_log, head_log
    assert "taxi_ray: 4 files over 2 nodes" in head_log and "tasks per node: [2, 2]" in head_log, head_log  # both nodes counted
    assert f"worker 1 of 2 on {prefix}.3" in worker_log and f"joined the cluster at {prefix}.2:6379" in worker_log, worker_log
    for log in (head_log, worker_log):
        assert "reboot: Power down" in log
    assert _gone(local_net.root() / f"{job_id}.json", 60)  # the network went with the VMs
