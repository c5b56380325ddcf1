"""Cluster jobs in the sandbox: Ray nodes as separate process trees on this host, each node on its own 127.0.0.x.

Each test starts a real Ray cluster (a head and a worker): they are few on purpose (a 2-core machine).
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

from conftest import ROOT, run_cli
from taxi_reference import expected_rows, make_data, read_output, reference_counts

FAST = {"RUNNER_RAY_POLL": "2", "RUNNER_RAY_JOIN_TIMEOUT": "180"}
# The head's command: Ray sees both nodes and runs a task on each; then (told by the test) the worker is killed,
# and the job goes on with the head alone: it waits until Ray sees one node, runs a task there, and succeeds.
CHECK = '''
import os, sys, time
from pathlib import Path
import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy as On

marks = Path(os.environ["MARKS"])
ray.init()
alive = lambda: [n for n in ray.nodes() if n["Alive"]]
nodes = alive()
print("alive:", len(nodes), "names:", sorted(n["NodeName"] for n in nodes), flush=True)

@ray.remote(num_cpus=0)
def where():
    return ray.get_runtime_context().get_node_id(), os.environ.get("RUNNER_WORK_DIR", "")

got = ray.get([where.options(scheduling_strategy=On(n["NodeID"], soft=False)).remote() for n in nodes])
assert len(nodes) == 2 and [g[0] for g in got] == [n["NodeID"] for n in nodes], got
assert len({g[1] for g in got}) == 2, got  # each task ran in its own node's work dir
print("a task ran on each node", flush=True)
(marks / "ready").touch()
deadline = time.monotonic() + 120
while not (marks / "killed").exists() and time.monotonic() < deadline:
    time.sleep(0.5)
while len(alive()) > 1 and time.monotonic() < deadline:
    time.sleep(1)
left = alive()
print("alive after the worker was killed:", len(left), flush=True)
assert ray.get(where.remote())[0] in {n["NodeID"] for n in left}
Path("result.txt").write_text(f"{len(alive())}\\n")
print("the job went on with the head alone", flush=True)
'''


def sandbox_dir(home: Path, job_id: str) -> Path:
    return home / "sandbox" / job_id


def node_ids(parent: str, n: int) -> list[str]:
    name, rest = parent.split("-2", 1)
    return [f"{name}--n{k}-2{rest}" for k in range(n)]


def test_two_nodes_see_each_other_and_a_killed_worker_leaves_the_job_to_the_rest(runner_home, make_job, tmp_path):
    marks = tmp_path / "marks"
    marks.mkdir()
    d = make_job({"name": "raycheck", "command": "python3 check.py", "nodes": 2, "env": {"MARKS": str(marks)},
                  "outputs": {"result.txt": None}, "max_runtime": "10m"}, {"check.py": CHECK})
    store = runner_home / "store" / "jobs"

    def kill_worker():
        deadline = time.monotonic() + 300
        while not (marks / "ready").exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        worker = next(p for p in store.iterdir() if "--n1-" in p.name).name

        def shipped() -> bytes:  # the worker's log as far as the store has it (the kill below gives it no last push)
            return b"".join(p.read_bytes() for p in sorted((store / worker / "logs").glob("*/job.log.*")))

        while b"joined the cluster at" not in shipped() and time.monotonic() < deadline:
            time.sleep(0.2)
        pid = json.loads((sandbox_dir(runner_home, worker) / "instance.json").read_text())["pid"]
        os.killpg(pid, signal.SIGKILL)  # the whole machine at once: no final status, no goodbye
        (marks / "killed").touch()

    killer = threading.Thread(target=kill_worker, daemon=True)
    killer.start()
    r = run_cli("launch", str(d), "--cloud", "sandbox", "--wait", "--json", env=FAST, timeout=420)
    killer.join(5)
    assert r.returncode == 0, r.stderr
    result = json.loads(r.stdout)
    parent = result["job_id"]
    head, worker = node_ids(parent, 2)
    assert result["state"] == "SUCCEEDED" and [x["job_id"] for x in result["nodes"]] == [head, worker]

    status = json.loads(run_cli("status", parent, "--json").stdout)
    assert status["state"] == "SUCCEEDED" and status["exit_code"] == 0 and status["head"].startswith("127.0.0.2:")
    states = {x["role"]: x for x in status["node_states"]}
    assert states["head"]["state"] == "SUCCEEDED" and states["worker"]["state"] == "LOST"  # the job went on without it
    assert states["head"]["joined_at"] and states["worker"]["joined_at"] and status["cost_usd"] == 0
    text = run_cli("status", parent).stdout
    assert "head" in text and "worker" in text and "JOINED" in text and worker in text
    assert parent in run_cli("status").stdout and head not in run_cli("status").stdout  # nodes are listed under their job

    log = run_cli("logs", parent).stdout  # the head's log by default
    assert "alive: 2" in log and "a task ran on each node" in log and "the job went on with the head alone" in log
    assert "joined the cluster at 127.0.0.2:" in run_cli("logs", parent, "--node", "1").stdout
    assert "has no node 5" in run_cli("logs", parent, "--node", "5").stderr
    assert list((store / head / "logs" / "1").glob("ray.log.*"))  # Ray's own logs shipped with the head's
    r = run_cli("outputs", parent, str(tmp_path / "out"))
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "out" / "result.txt").read_text() == "1\n"


def test_the_head_failing_ends_every_node(runner_home, make_job):
    d = make_job({"name": "rayfail", "command": "echo failing on purpose; exit 3", "nodes": 2, "max_runtime": "10m"})
    r = run_cli("launch", str(d), "--cloud", "sandbox", "--wait", "--json", env=FAST, timeout=420)
    assert r.returncode == 3, r.stderr  # the head's exit code is the job's
    parent = json.loads(r.stdout)["job_id"]
    head, worker = node_ids(parent, 2)
    status = json.loads(run_cli("status", parent, "--json").stdout)
    assert (status["state"], status["exit_code"]) == ("FAILED", 3)
    states = [x["state"] for x in status["node_states"]]
    assert states == ["FAILED", "SUCCEEDED"], status  # the worker left by itself: nobody had to cancel it
    worker_log = run_cli("logs", parent, "--node", "1").stdout  # it saw the head's end, or the job's (written from it)
    assert "the head ended FAILED: leaving" in worker_log or "the job ended FAILED: leaving" in worker_log, worker_log
    for node in (head, worker):  # every machine powered off
        assert "poweroff" in (sandbox_dir(runner_home, node) / "power.log").read_text()
    assert "CANCELLED" not in r.stderr


def test_taxi_ray_equals_the_taxi_job(runner_home, tmp_path):
    data = runner_home / "store" / "data" / "nyc-taxi"
    make_data.generate(data, files=5, rows=4000, seed=21, fmt="both")
    make_data.generate(data / "more", files=2, rows=700, seed=22, fmt="csv", gzip=True)
    got = {}
    for job, extra in (("taxi-ray", ["--nodes", "2"]), ("taxi", [])):
        r = run_cli("launch", f"jobs/{job}", "--cloud", "sandbox", "--wait", "--json", *extra, env=FAST, timeout=420)
        assert r.returncode == 0, r.stderr
        job_id = json.loads(r.stdout)["job_id"]
        r = run_cli("outputs", job_id, str(tmp_path / job))
        assert r.returncode == 0, r.stderr
        got[job] = (tmp_path / job / "passenger_counts.csv").read_bytes()
        if job == "taxi-ray":
            log = run_cli("logs", job_id).stdout
            assert "taxi_ray: 7 files over 2 nodes" in log and "tasks per node: [4, 3]" in log, log
    assert got["taxi-ray"] == got["taxi"]
    assert read_output(tmp_path / "taxi-ray" / "passenger_counts.csv") == ("passenger_count,trips", expected_rows(reference_counts(data)))
    assert (ROOT / "jobs" / "taxi-ray" / "job.yaml").is_file()


def preempt_node(runner_home: Path, node: str) -> None:
    """The cloud takes the node's machine back and the machine says so: frozen, PREEMPTED written, then gone."""
    from runner import config, jobs
    from runner.store import open_store

    pid = json.loads((sandbox_dir(runner_home, node) / "instance.json").read_text())["pid"]
    os.killpg(pid, signal.SIGSTOP)  # frozen, not gone: the waiter sees it alive until its status says PREEMPTED
    jobs.write_status(open_store(config.store_uri()), node, jobs.Status(jobs.PREEMPTED, reason="spot interruption"))
    os.killpg(pid, signal.SIGKILL)


def wait_mark(path: Path, timeout: float = 300) -> bool:
    deadline = time.monotonic() + timeout
    while not path.exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    return path.exists()


def node_of(store: Path, k: int) -> str:
    return next(p for p in store.iterdir() if f"--n{k}-" in p.name).name


def launch_while(job: Path, act) -> tuple[str, str]:
    """Launch the cluster job and wait for it while `act` runs beside; (the job id, the launcher's stderr) once it succeeded."""
    beside = threading.Thread(target=act, daemon=True)
    beside.start()
    r = run_cli("launch", str(job), "--cloud", "sandbox", "--wait", "--json", env=FAST, timeout=480)
    beside.join(5)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)["job_id"], r.stderr


# The head's command: a task runs on the worker until the worker is preempted; Ray runs it again elsewhere; the
# relaunched worker joins, and a task runs on it.
REPLACED = '''
import os, time
from pathlib import Path
import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy as On

marks = Path(os.environ["MARKS"])
ray.init()
alive = lambda: {n["NodeID"] for n in ray.nodes() if n["Alive"]}
head = ray.get_runtime_context().get_node_id()
first = alive()
assert len(first) == 2, first
(worker,) = first - {head}

@ray.remote(num_cpus=0, max_retries=3)
def long():  # on the worker until it is preempted; its retry finds the mark and ends at once
    if not (marks / "preempted").exists():
        (marks / "ready").touch()
    while not (marks / "preempted").exists():
        time.sleep(0.2)
    return ray.get_runtime_context().get_node_id()

ran_on = ray.get(long.options(scheduling_strategy=On(worker, soft=True)).remote())
assert ran_on != worker, ran_on
print("the task lost with the worker ran again on another node", flush=True)
deadline = time.monotonic() + 240
while not (alive() - first) and time.monotonic() < deadline:
    time.sleep(1)
(new,) = alive() - first
assert ray.get(long.options(scheduling_strategy=On(new, soft=False)).remote()) == new
print("a task ran on the relaunched worker; alive:", len(alive()), flush=True)
'''


def test_a_preempted_worker_is_relaunched_joins_and_ray_runs_its_lost_task_again(runner_home, make_job, tmp_path):
    marks = tmp_path / "marks"
    marks.mkdir()
    d = make_job({"name": "raypre", "command": "python3 check.py", "nodes": 2, "env": {"MARKS": str(marks)}, "retries": 1,
                  "spot": True, "max_runtime": "10m"}, {"check.py": REPLACED})
    store = runner_home / "store" / "jobs"

    def preempt_worker():
        if wait_mark(marks / "ready"):
            preempt_node(runner_home, node_of(store, 1))
            (marks / "preempted").touch()

    parent, err = launch_while(d, preempt_worker)
    head, worker = node_ids(parent, 2)
    assert f"{parent}: worker 1 preempted; relaunching it (attempt 2 of 2)" in err
    assert json.loads((store / worker / "instance.json").read_text())["attempt"] == 2
    log = run_cli("logs", parent).stdout
    assert "the task lost with the worker ran again on another node" in log and "a task ran on the relaunched worker; alive: 2" in log
    status = json.loads(run_cli("status", parent, "--json").stdout)
    assert [(x["role"], x["state"]) for x in status["node_states"]] == [("head", "SUCCEEDED"), ("worker", "SUCCEEDED")]


# The head's command on its first attempt: both nodes joined, then it waits to be preempted; on the relaunched head's
# attempt the live worker joins the new head, and a task runs on each node.
HEAD_AGAIN = '''
import os, time
from pathlib import Path
import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy as On

marks = Path(os.environ["MARKS"])
attempt = os.environ["RUNNER_ATTEMPT"]
ray.init()
print(f"attempt {attempt}: alive {sum(n['Alive'] for n in ray.nodes())}", flush=True)
if attempt == "1":
    (marks / "ready").touch()
    time.sleep(600)
nodes = sorted(n["NodeID"] for n in ray.nodes() if n["Alive"])
assert len(nodes) == 2

@ray.remote(num_cpus=0)
def where():
    return ray.get_runtime_context().get_node_id()

# one task pinned to each node (SPREAD is best effort: it gives every task to a node whose workers are up first)
assert sorted(ray.get([where.options(scheduling_strategy=On(n, soft=False)).remote() for n in nodes])) == nodes
print("the relaunched head runs tasks on both nodes", flush=True)
'''


def test_a_preempted_head_is_relaunched_and_the_live_worker_joins_it(runner_home, make_job, tmp_path):
    marks = tmp_path / "marks"
    marks.mkdir()
    d = make_job({"name": "rayhead", "command": "python3 check.py", "nodes": 2, "env": {"MARKS": str(marks)}, "retries": 1,
                  "max_runtime": "10m"}, {"check.py": HEAD_AGAIN})
    store = runner_home / "store" / "jobs"
    parent, err = launch_while(d, lambda: wait_mark(marks / "ready") and preempt_node(runner_home, node_of(store, 0)))
    head, worker = node_ids(parent, 2)
    assert f"{parent}: the head preempted; relaunching it (attempt 2 of 2)" in err
    assert json.loads((store / head / "instance.json").read_text())["attempt"] == 2
    assert json.loads((store / worker / "instance.json").read_text()).get("attempt", 1) == 1  # the same worker
    assert "the relaunched head runs tasks on both nodes" in run_cli("logs", parent).stdout
    assert "the head moved to 127.0.0.2:" in run_cli("logs", parent, "--node", "1").stdout
    status = json.loads(run_cli("status", parent, "--json").stdout)
    assert (status["state"], status["exit_code"]) == ("SUCCEEDED", 0)


def test_ray_sh_counts_the_alive_nodes_on_an_address_without_a_driver(tmp_path):
    """The slow-VM path: after `ray start` gives up, node_up asks the head's node table whether this node is up."""
    import socket
    import subprocess

    from runner.cluster.script import render_ray_node

    script = render_ray_node("p-20261201T000000Z-abcdef", "p--n0-20261201T000000Z-abcdef", "file:///store", "true", "sandbox")
    fns = "log() { echo \"$*\"; }\n" + script[script.index("alive() {"):script.index("run_head() {")]
    with socket.socket() as s:
        s.bind(("127.0.0.9", 0))
        port = s.getsockname()[1]
    temp = Path("/tmp") / f"ray-t{os.getpid()}"  # Ray's socket paths must be short
    head = subprocess.Popen(["ray", "start", "--head", "--block", "--port", str(port), "--node-ip-address", "127.0.0.9",
                             "--include-dashboard=false", "--disable-usage-stats", "--temp-dir", str(temp),
                             "--object-store-memory", str(256 << 20), "--num-cpus", "1"],
                            start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, "RAY_USAGE_STATS_ENABLED": "0"})
    try:
        def run(call: str, **env) -> subprocess.CompletedProcess:
            return subprocess.run(["bash", "-c", fns + call], capture_output=True, text=True, timeout=300, env={**os.environ, **env})

        address = f"127.0.0.9:{port}"
        r = run(f'NODE_WAIT=200 IP=127.0.0.9 node_up {address}')
        assert r.returncode == 0 and "this node is up after all" in r.stdout, r.stdout + r.stderr
        assert run(f"alive {address}").stdout.split() == ["1"]
        assert run(f"alive {address} 127.0.0.9").stdout.split() == ["1"]
        assert run(f"alive {address} 127.0.0.10").stdout.split() == ["0"]
        r = run(f"alive {address} '' 2 3")
        assert "1 of 2 nodes joined" in r.stdout and "join timeout (3 s): going on with 1 of 2 nodes" in r.stdout, r.stdout + r.stderr
        assert run(f"RAY_TMP={temp} raylet_running").returncode == 0  # this node's raylet, found by its temp dir
        assert run(f"RAY_TMP={temp}0 raylet_running").returncode == 1
        r = run(f"NODE_WAIT=6 IP=127.0.0.10 node_up {address}")
        assert r.returncode == 1 and "did not come up within 6 s" in r.stdout, r.stdout + r.stderr
    finally:
        os.killpg(head.pid, signal.SIGTERM)
        try:
            head.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, signal.SIGKILL)
            head.wait()
        subprocess.run(["rm", "-rf", str(temp)], check=False)
