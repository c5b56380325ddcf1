"""The GitHub Actions workflow as written: its shape, its OIDC trust policy, and its own `run:` steps against the sandbox."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
WORKFLOW = ROOT / ".github" / "workflows" / "runner-job.yml"
TRUST = ROOT / "docs" / "policies" / "github-oidc-trust.json"
CI_DOC = ROOT / "docs" / "ci.md"
ID_RE = re.compile(r"[a-z][a-z0-9-]*-\d{8}T\d{6}Z-[0-9a-f]{6}")


def load_workflow() -> dict:
    wf = yaml.safe_load(WORKFLOW.read_text())
    wf["on"] = wf.pop(True, wf.get("on"))  # YAML 1.1 reads the key `on` as true
    return wf


def the_job(wf: dict) -> dict:
    (job,) = wf["jobs"].values()
    return job


# --- GitHub's expression language, the part the workflow uses ------------------------------------------------------

TOKEN = re.compile(r"\s*(\|\||&&|==|!=|!|\(|\)|'(?:[^']|'')*'|[A-Za-z_][\w.-]*)")


class Expr:
    """Evaluate `${{ ... }}` with GitHub's semantics for ||, &&, ==, !=, !, contexts and the status functions."""

    def __init__(self, text: str, ctx: dict, failed: bool, cancelled: bool = False):
        self.tokens, pos = [], 0
        while pos < len(text.rstrip()):
            m = TOKEN.match(text, pos)
            assert m, f"the test cannot read the expression {text!r} at {text[pos:]!r}"
            self.tokens.append(m.group(1))
            pos = m.end()
        self.ctx, self.failed, self.cancelled, self.i = ctx, failed, cancelled, 0

    def value(self):
        v = self._or()
        assert self.i == len(self.tokens), f"trailing tokens in {self.tokens}"
        return v

    def _peek(self):
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def _take(self):
        self.i += 1
        return self.tokens[self.i - 1]

    def _or(self):
        v = self._and()
        while self._peek() == "||":
            self._take()
            right = self._and()
            v = v or right
        return v

    def _and(self):
        v = self._cmp()
        while self._peek() == "&&":
            self._take()
            right = self._cmp()
            v = v and right
        return v

    def _cmp(self):
        v = self._unary()
        while self._peek() in ("==", "!="):
            op, right = self._take(), self._unary()
            same = str(v or "").lower() == str(right or "").lower()  # case-insensitive; null equals ''
            v = same if op == "==" else not same
        return v

    def _unary(self):
        if self._peek() == "!":
            self._take()
            return not self._unary()
        if self._peek() == "(":
            self._take()
            v = self._or()
            assert self._take() == ")"
            return v
        tok = self._take()
        if tok.startswith("'"):
            return tok[1:-1].replace("''", "'")
        if self._peek() == "(":
            self._take()
            assert self._take() == ")", f"the test knows only functions without arguments, not {tok}(...)"
            ok = not (self.failed or self.cancelled)
            return {"always": True, "success": ok, "failure": self.failed, "cancelled": self.cancelled}[tok]
        head, *path = tok.split(".")
        v = self.ctx[head]  # a context the workflow names must be one the test gives
        for part in path:
            v = v.get(part) if isinstance(v, dict) else None
        return v


def substitute(text: str, ctx: dict, failed: bool = False) -> str:
    return re.sub(r"\$\{\{(.*?)\}\}", lambda m: str(Expr(m.group(1), ctx, failed).value() or ""), str(text))


def read_kv_file(path: Path) -> dict:
    """GITHUB_OUTPUT / GITHUB_ENV: `k=v` lines and `k<<DELIM` blocks."""
    out, lines = {}, path.read_text().splitlines() if path.exists() else []
    while lines:
        line = lines.pop(0)
        if "<<" in line and ("=" not in line or line.index("<<") < line.index("=")):
            key, delim = line.split("<<", 1)
            value = []
            while lines and lines[0] != delim:
                value.append(lines.pop(0))
            lines.pop(0)
            out[key] = "\n".join(value)
        elif "=" in line:
            key, value = line.split("=", 1)
            out[key] = value
    return out


# --- running the workflow's own steps -----------------------------------------------------------------------------


@dataclass
class Run:
    workspace: Path
    summary: Path
    codes: dict = field(default_factory=dict)  # step id or name -> exit code (None: not run)
    outputs: dict = field(default_factory=dict)
    logs: dict = field(default_factory=dict)


def run_workflow(workspace: Path, tmp: Path, inputs: dict, variables: dict, cancel: dict | None = None) -> Run:
    """Run the job's `run:` steps in order as a GitHub runner would, skipping `uses:` steps and the package install.

    `cancel` maps a step id to a function given the step's process while it runs: it cancels the run as GitHub does.
    """
    wf = load_workflow()
    job = the_job(wf)
    gh = {"GITHUB_ACTIONS": "true", "CI": "true", "GITHUB_WORKSPACE": str(workspace), "GITHUB_REPOSITORY": "acme/batch",
          "GITHUB_RUN_ID": "4242", "GITHUB_SERVER_URL": "https://github.com", "GITHUB_REF": "refs/heads/main",
          "GITHUB_EVENT_NAME": "workflow_dispatch"}
    run = Run(workspace, tmp / "step_summary.md")
    files = {"GITHUB_STEP_SUMMARY": run.summary, "GITHUB_ENV": tmp / "github_env"}
    for f in files.values():
        f.write_text("")
    ctx = {"vars": variables, "inputs": inputs, "secrets": {}, "runner": {"temp": str(tmp)}, "steps": {},
           "github": {"repository": gh["GITHUB_REPOSITORY"], "run_id": gh["GITHUB_RUN_ID"], "ref": gh["GITHUB_REF"],
                      "event_name": gh["GITHUB_EVENT_NAME"], "workflow": wf["name"], "server_url": gh["GITHUB_SERVER_URL"]}}
    env: dict[str, str] = {}
    for scope in (wf.get("env", {}), job.get("env", {})):
        ctx["env"] = env
        env.update({k: substitute(v, ctx) for k, v in scope.items()})
    failed = cancelled = False
    for n, step in enumerate(job["steps"]):
        name = step.get("id") or step.get("name") or f"step {n}"
        ctx["env"] = {**env, **read_kv_file(files["GITHUB_ENV"])}
        condition = str(step.get("if", "success()")).removeprefix("${{").removesuffix("}}")
        if "uses" in step or step.get("id") == "install" or not Expr(condition, ctx, failed, cancelled).value():
            run.codes[name] = None  # an action runs on GitHub only; the package is installed here already
            continue
        step_env = {k: substitute(v, ctx, failed) for k, v in step.get("env", {}).items()}
        script = tmp / f"step-{n}.sh"
        script.write_text(substitute(step["run"], ctx, failed))
        out_file = tmp / f"github_output-{n}"
        out_file.write_text("")
        p = subprocess.Popen(["bash", "--noprofile", "--norc", "-eo", "pipefail", str(script)], cwd=workspace,
                             env={**os.environ, **gh, **ctx["env"], **step_env, **{k: str(v) for k, v in files.items()},
                                  "GITHUB_OUTPUT": str(out_file)},
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
        if step.get("id") in (cancel or {}):
            cancel[step["id"]](p)
            cancelled = True
        try:
            stdout, stderr = p.communicate(timeout=60 if cancelled else 180)  # bounds: a step that outlives them fails the test
        finally:  # as GitHub ends a step: its whole process tree
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGKILL)
        run.codes[name], run.logs[name] = p.returncode, stdout + stderr
        outputs = read_kv_file(out_file)
        run.outputs[name] = outputs
        if step.get("id"):
            ctx["steps"][step["id"]] = {"outputs": outputs, "outcome": "success" if p.returncode == 0 else "failure"}
        failed = failed or p.returncode != 0
    return run


@pytest.fixture
def workspace(tmp_path):
    """A checkout: the workflow, its scripts, and two jobs (one succeeds with an output, one exits 3)."""
    ws = tmp_path / "workspace"
    shutil.copytree(ROOT / ".github", ws / ".github")
    jobs = {"ok": "echo 'counted 42 rides' > counts.txt; echo done", "bad": "echo 'no trips' >&2; exit 3", "slow": "sleep 300"}
    for name, command in jobs.items():
        d = ws / "jobs" / name
        d.mkdir(parents=True)
        (d / "job.yaml").write_text(json.dumps({"name": name, "command": command, "outputs": {"counts.txt": None}}))
    return ws


def sandbox_run(workspace, tmp_path, job: str) -> Run:
    gh_tmp = tmp_path / "gh"
    gh_tmp.mkdir()
    return run_workflow(workspace, gh_tmp, inputs={"job": f"jobs/{job}"}, variables={"RUNNER_CLOUD": "sandbox"})


def test_a_job_that_succeeds_gives_exit_0_a_summary_and_its_outputs(workspace, tmp_path):
    run = sandbox_run(workspace, tmp_path, "ok")
    assert run.codes["launch"] == 0, run.logs
    job_id = run.outputs["summary"]["job_id"]
    assert ID_RE.fullmatch(job_id) and job_id.startswith("ok-")
    summary = run.summary.read_text()
    assert "SUCCEEDED" in summary and job_id in summary
    assert re.search(r"\*\*exit code\*\*\s*\|\s*0\b", summary), summary
    assert re.search(r"\*\*duration\*\*\s*\|\s*\d+s\b", summary), summary
    assert re.search(r"\*\*cost\*\*\s*\|\s*\$0\.0000", summary), summary
    assert f"runner logs {job_id}" in summary and f"runner logs {job_id} --all" in summary
    assert f"runner-outputs-{job_id}" in summary
    artifact = [s for s in the_job(load_workflow())["steps"] if "upload-artifact" in s.get("uses", "")][0]
    path = workspace / substitute(artifact["with"]["path"], {"steps": {"summary": {"outputs": {"job_id": job_id}}}})
    assert (path / job_id / "counts.txt").read_text() == "counted 42 rides\n"  # what the artifact step uploads


def test_a_job_that_exits_3_makes_the_launch_step_exit_3_and_still_writes_the_summary(workspace, tmp_path):
    run = sandbox_run(workspace, tmp_path, "bad")
    assert run.codes["launch"] == 3, run.logs
    assert run.codes["summary"] == 0, run.logs["summary"]  # runs after a failure: if: always()
    job_id = run.outputs["summary"]["job_id"]
    summary = run.summary.read_text()
    assert "FAILED" in summary and job_id in summary
    assert re.search(r"\*\*exit code\*\*\s*\|\s*3\b", summary), summary
    assert "the job exited with code 3" in summary
    assert f"runner logs {job_id} --all" in summary
    assert run.codes["outputs"] is not None, "the outputs step runs after a failed job too"


def until(what, check, limit: float = 90.0):
    """Poll `check` until it returns something true; fail naming `what` past `limit` seconds (a bound, not a measure)."""
    deadline = time.monotonic() + limit
    while not (value := check()):
        assert time.monotonic() < deadline, f"still waiting for {what}"
        time.sleep(0.2)
    return value


def test_a_cancelled_run_cancels_the_job_because_the_launch_step_is_runner_itself(workspace, tmp_path, runner_home):
    """GitHub sends SIGINT to the step's own process only: the job must end CANCELLED and its VM be gone."""
    from runner import jobs
    from runner.cancel import cancel as cancel_job
    from runner.providers import get_provider
    from runner.store import open_store

    store = open_store(f"file://{runner_home / 'store'}")

    def running_job():
        ids = jobs.list_jobs(store, 5) if (runner_home / "store" / "jobs").exists() else []
        return next((j for j in ids if jobs.read_status(store, j).state == jobs.RUNNING), None)

    def interrupt(step):
        until("the job to run", running_job)
        step.send_signal(signal.SIGINT)  # what a cancel in GitHub's UI (or timeout-minutes) does first

    gh_tmp = tmp_path / "gh"
    gh_tmp.mkdir()
    try:
        run = run_workflow(workspace, gh_tmp, inputs={"job": "jobs/slow"}, variables={"RUNNER_CLOUD": "sandbox"}, cancel={"launch": interrupt})
    finally:  # a failure here must not leave the sandbox job running
        if job := running_job():
            cancel_job(store, job)
    assert run.codes["launch"] == 130, run.logs
    job_id = run.outputs["summary"]["job_id"]
    assert jobs.read_status(store, job_id).state == jobs.CANCELLED
    inst, _ = jobs.read_instance(store, job_id)
    until("the sandbox VM to be gone", lambda: not get_provider("sandbox").state(inst).alive)
    summary = run.summary.read_text()
    assert "CANCELLED" in summary and f"runner logs {job_id} --all" in summary
    assert run.codes["outputs"] is not None  # if: always() runs on a cancelled run too


def test_the_backend_comes_from_a_variable_and_defaults_to_aws():
    wf = load_workflow()
    env = {**wf.get("env", {}), **the_job(wf).get("env", {})}
    ctx = {"vars": {}, "inputs": {}, "github": {}, "env": {}, "secrets": {}}
    assert substitute(env["RUNNER_CLOUD"], ctx) == "aws"
    assert substitute(env["RUNNER_CLOUD"], {**ctx, "vars": {"RUNNER_CLOUD": "sandbox"}}) == "sandbox"
    assert substitute(env["JOB_DIR"], ctx) == "jobs/taxi"  # a scheduled run has no inputs


def test_triggers_permissions_and_concurrency():
    wf = load_workflow()
    dispatch = wf["on"]["workflow_dispatch"]["inputs"]["job"]
    assert dispatch["default"] == "jobs/taxi"
    assert wf["on"]["schedule"][0]["cron"].count(" ") == 4
    assert wf["permissions"] == {"id-token": "write", "contents": "read"}
    assert "group" in wf["concurrency"] and wf["concurrency"]["cancel-in-progress"] is False


def test_credentials_come_from_oidc_never_from_stored_keys():
    steps = the_job(load_workflow())["steps"]
    (creds,) = [s for s in steps if s.get("uses", "").startswith("aws-actions/configure-aws-credentials@")]
    assert creds["with"]["role-to-assume"].startswith("${{ vars.")
    assert not {"aws-access-key-id", "aws-secret-access-key", "aws-session-token"} & set(creds["with"])
    assert "secrets." not in WORKFLOW.read_text()


def test_the_launch_step_is_the_runner_process_itself():
    """GitHub signals only a step's entry process on cancel: the launch step execs runner so the interrupt reaches it."""
    (launch,) = [s for s in the_job(load_workflow())["steps"] if s.get("id") == "launch"]
    lines = [ln for ln in launch["run"].splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    assert lines[-1].startswith("exec runner launch ") and "--wait" in lines[-1] and "--json" in lines[-1]


def test_the_oidc_trust_policy_is_scoped_to_a_repo_and_a_branch():
    policy = json.loads(TRUST.read_text())
    (stmt,) = policy["Statement"]
    assert stmt["Effect"] == "Allow" and stmt["Action"] == "sts:AssumeRoleWithWebIdentity"
    assert stmt["Principal"]["Federated"].endswith(":oidc-provider/token.actions.githubusercontent.com")
    cond = stmt["Condition"]
    assert cond["StringEquals"]["token.actions.githubusercontent.com:aud"] == "sts.amazonaws.com"
    subs = [v for op in cond.values() for k, v in op.items() if k == "token.actions.githubusercontent.com:sub"]
    assert subs, "a trust policy without a sub condition lets every repository on GitHub assume the role"
    for sub in subs:
        for value in [sub] if isinstance(sub, str) else sub:
            assert re.fullmatch(r"repo:[\w.-]+/[\w.-]+:(ref:refs/heads/[\w./-]+|environment:[\w.-]+)", value), value


def test_docs_show_the_gitlab_equivalent():
    doc = CI_DOC.read_text()
    assert "docs/policies/aws-launcher.json" in doc or "policies/aws-launcher.json" in doc
    assert "policies/github-oidc-trust.json" in doc
    (snippet,) = re.findall(r"```yaml\n# \.gitlab-ci\.yml\n(.*?)```", doc, re.S)
    gl = yaml.safe_load(snippet)
    (job,) = [v for v in gl.values() if isinstance(v, dict) and "script" in v]
    assert job["id_tokens"]["AWS_ID_TOKEN"]["aud"] == "sts.amazonaws.com"
    script = "\n".join(job.get("before_script", []) + job["script"])
    assert "aws sts assume-role-with-web-identity" in script and "runner launch" in script and "--wait" in script


def summarize(tmp_path, result: str, env: dict | None = None) -> tuple[str, str]:
    """Run the summary script on a launch result; its summary and its GITHUB_OUTPUT."""
    (tmp_path / "result.json").write_text(result)
    summary, output = tmp_path / "summary.md", tmp_path / "output"
    summary.write_text("")
    output.write_text("")
    p = subprocess.run(["python", str(ROOT / ".github/scripts/job_summary.py"), str(tmp_path / "result.json")], capture_output=True, text=True,
                       env={**os.environ, **(env or {}), "GITHUB_STEP_SUMMARY": str(summary), "GITHUB_OUTPUT": str(output)}, timeout=120)
    assert p.returncode == 0, p.stderr
    return summary.read_text(), output.read_text()


def test_what_a_vm_wrote_is_shown_as_text_never_as_markdown_or_html(workspace, tmp_path, runner_home):
    p = subprocess.run(["runner", "launch", "jobs/ok", "--cloud", "sandbox", "--wait", "--json"], cwd=workspace,
                       capture_output=True, text=True, timeout=120)
    job_id = json.loads(p.stdout)["job_id"]
    status = runner_home / "store" / "jobs" / job_id / "status.json"
    hostile = "<img src=x onerror=alert(1)> [click](https://evil.example) `x` | **bold**\n# heading"
    status.write_text(json.dumps({"state": "FAILED", "exit_code": 1, "reason": hostile, "started_at": "2026-01-01T00:00:00Z",
                                  "ended_at": "2026-01-01T01:02:03Z", "updated_at": "2026-01-01T01:02:03Z"}))
    summary, output = summarize(tmp_path, p.stdout)
    assert output == f"job_id={job_id}\n"
    (reason,) = [ln for ln in summary.splitlines() if ln.startswith("| **reason**")]
    assert reason == "| **reason** | `<img src=x onerror=alert(1)> [click](https://evil.example) 'x'   **bold** # heading` |"
    assert "| **duration** | 1h 02m 03s |" in summary and "\n# heading" not in summary


@pytest.mark.parametrize("result", ["", "runner: launch failed: no capacity\n", '{"job_id": "../../other-20260101T000000Z-abcdef"}'])
def test_a_launch_that_reported_no_job_says_so_and_names_none(tmp_path, result):
    summary, output = summarize(tmp_path, result)
    assert "runner launch reported no job" in summary and "runner status" in summary
    assert output == "" and "other" not in summary
