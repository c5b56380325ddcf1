"""The IAM policies in docs/policies/gcp-* against the calls the code makes (recorded by FakeGoogle)."""

from __future__ import annotations

import json
import re
import subprocess

import yaml
from conftest import ROOT
from test_gcp import gcp, request  # noqa: F401 (gcp: the provider fixture)

from runner.providers.gcp_build import instance_name, shutdown_script
from runner.providers.gcp_iam import CALLS, EXTERNAL_IP, permissions_for

POLICIES = ROOT / "docs" / "policies"


def role(name: str) -> set[str]:
    return set(yaml.safe_load((POLICIES / name).read_text())["includedPermissions"])


def test_the_launcher_role_is_exactly_the_table():
    assert role("gcp-launcher-role.yaml") == {p for _, _, ps in CALLS for p in ps} | set(EXTERNAL_IP)


def test_every_call_the_launcher_makes_is_in_its_role(gcp, google):  # noqa: F811
    from runner.providers.gcp_network import check_region

    inst = gcp.launch(request())
    gcp.state(inst)
    gcp.console_output(inst)
    gcp.find({"runner-job": "*"})
    google.preempt(inst.zone, inst.id)
    gcp.state(inst)
    google.private_access["us-central1"] = False
    check_region(gcp, gcp.settings(), gcp.project(), "us-central1")  # doctor's and launch's network check
    google.private_access.clear()
    other = gcp.launch(request(job_id="demo-20240101T000000Z-dddddd", attempt=2))
    gcp.terminate(other)
    gcp.sweep()
    gcp.region_zones("us-central1")
    gcp.resolve_image("projects/runner-test/global/images/family/runner")
    calls = {(r["method"], r["path"]) for r in google.log if r["path"].startswith("/compute/")}
    used = {p for method, path in calls for p in permissions_for(method, path)}  # KeyError: a call the table lacks
    assert used <= role("gcp-launcher-role.yaml")
    assert {"compute.instances.create", "compute.instances.delete", "compute.subnetworks.get", "compute.routers.list"} <= used


def test_the_vm_may_delete_runner_vms_only(gcp, google, tmp_path):  # noqa: F811
    inst = gcp.launch(request())
    google.vm = (inst.zone, inst.id)
    (tmp_path / "s").write_text(shutdown_script(google.url))
    env = {"PATH": "/usr/bin:/bin", "GCE_METADATA_HOST": google.url.removeprefix("http://")}
    subprocess.run(["bash", str(tmp_path / "s")], capture_output=True, env=env, timeout=60, check=True)
    [delete] = [(r["method"], r["path"]) for r in google.log if r["method"] == "DELETE"]
    assert set(permissions_for(*delete)) == role("gcp-vm-role.yaml") == {"compute.instances.delete"}
    [cond] = [b["condition"]["expression"] for b in bindings()["project"] if b["role"].endswith("/roles/runnerVm")]
    assert ".startsWith(\"runner-\")" in cond and instance_name("anything-20240101T000000Z-abcdef").startswith("runner-")


def bindings() -> dict:
    return json.loads((POLICIES / "gcp-vm-bindings.json").read_text())


class Name(str):
    """resource.name as CEL sees it, for the functions the conditions use."""

    def startsWith(self, s):  # noqa: N802 (CEL's names)
        return self.startswith(s)

    def endsWith(self, s):  # noqa: N802
        return self.endswith(s)

    def contains(self, s):
        return s in self

    def extract(self, template):
        before, after = re.split(r"\{[a-z]+\}", template)
        i = self.find(before)
        j = self.find(after, i + len(before)) if i >= 0 else -1
        return Name(self[i + len(before):j]) if i >= 0 and j >= 0 else Name("")


def allowed(expression: str, key: str) -> bool:
    """Evaluate a condition (the subset of CEL it uses) for the object `key` of bucket b, store prefix runner."""
    py = re.sub(r"!(?!=)", " not ", expression.replace("&&", " and ").replace("||", " or "))
    py = py.replace("PREFIX", "runner").replace("BUCKET", "b")
    return bool(eval(py, {}, {"resource": type("R", (), {"name": Name(f"projects/_/buckets/b/objects/{key}")})}))


def writable(key: str) -> bool:
    """Whether the VM's service account may create, overwrite or delete object `key` (any objectUser binding)."""
    conds = [b["condition"]["expression"] for b in bindings()["bucket"] if b["role"] == "roles/storage.objectUser"]
    assert conds and all(len(c) <= 12800 for c in conds)  # IAM's limit on a condition's expression
    return any(allowed(c, key) for c in conds)


LAUNCHER_RECORDS = ("job.json", "user-data", "startup.sh", "code.tar.gz", "instance.json", "cancel", "manifest.jsonl", "items.sh",
                    "items.tsv", "shards/0", "shards/12")


def test_the_vm_writes_only_status_logs_outputs_and_checkpoint():
    job = "runner/jobs/demo-20240101T000000Z-abcdef"
    for key in ("status.json", "logs/1/job.log.000000", "logs/console.log", "outputs/all rows.csv", "outputs/a/b.csv",
                "checkpoint/step-3/model.pt"):
        assert writable(f"{job}/{key}"), key
    for key in (*LAUNCHER_RECORDS, "x/status.json", "x/logs/a"):
        assert not writable(f"{job}/{key}"), key
    assert not writable("runner/other/status.json") and not writable("elsewhere/jobs/j/status.json")


def test_a_fan_out_vm_writes_its_items_reduce_and_summary_and_no_launcher_record():
    parent, shard = "runner/jobs/fan-20240101T000000Z-abcdef", "runner/jobs/fan--s1-20240101T000000Z-abcdef"
    for name in ("yellow_tripdata_2012-03.csv", "logs.csv", "done", "items", "result", "a-1f2e3d4c"):
        for key in ("result/counts.csv", "result/sub/part-0.csv", "log", "exit_code", "done"):
            assert writable(f"{parent}/items/{name}/{key}"), f"items/{name}/{key}"
    for key in ("reduce/lock", "reduce/status.json", "reduce/log", "reduce/exit_code", "outputs/passenger_counts.csv"):
        assert writable(f"{parent}/{key}"), key
    assert writable(f"{shard}/summary.json") and writable(f"{shard}/status.json")
    for job in (parent, shard):
        for key in (*LAUNCHER_RECORDS, "items/a.csv/other", "items/a.csv", "items/done", "items/a/b/log", "reduce/other",
                    "reduce", "reduce/x/lock", "summary.jsonl", "x/summary.json", "items/a/x/result/y"):
            assert not writable(f"{job}/{key}"), key
    for key in ("items/a/done", "reduce/lock", "summary.json", "jobs/items/a/done"):
        assert not writable(f"runner/{key}") and not writable(f"elsewhere/jobs/j/{key}"), key


def test_the_scripts_gs_calls_need_only_what_the_vm_is_granted():
    reads = {"stat": "storage.objects.get", "cat": "storage.objects.get", "ls": "storage.objects.list"}
    for template in ("startup.sh.j2", "items.sh.j2"):
        text = "\n".join(line for line in (ROOT / "templates" / template).read_text().splitlines()
                         if "declare -f" not in line)
        used = set(re.findall(r"(?:^|[;&|(]\s*|\s)gs (?:-[a-zA-Z] (?:[a-z-]+:[0-9]+ |default )?|-o \S+ )*([a-z]+)\b", text, re.M))
        assert used and used <= {"cp", "rsync", *reads}, f"{template} uses gsutil {sorted(used)}: check its permissions"
