"""Packing a job's folder: ignore files honoured, credentials and links out never shipped, size capped while streaming."""

from __future__ import annotations

import io
import json
import os
import tarfile
import tempfile
from pathlib import Path

import pytest
from conftest import run_cli

from runner import pack as packing
from runner.errors import SpecError

SECRET = "-----BEGIN OPENSSH PRIVATE KEY----- operator's key"


def pack_bytes(job_dir: Path) -> bytes:
    """The archive a launch would upload."""
    with packing.packed(job_dir) as p:
        return p.path.read_bytes()


def members(archive: bytes) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tar:
        return {m.name: m for m in tar.getmembers()}


def contents(archive: bytes) -> bytes:
    with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tar:
        return b"".join(tar.extractfile(m).read() for m in tar.getmembers() if m.isfile())


def write(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root


@pytest.fixture
def home_like(tmp_path):
    """A job folder that looks like a home directory: code beside every kind of credentials."""
    return write(tmp_path / "home", {
        "job.yaml": "name: t\ncommand: 'true'\n", "main.py": "print(1)\n",
        ".ssh/id_ed25519": SECRET, ".aws/credentials": SECRET, ".gnupg/private-keys-v1.d/k": SECRET,
        ".config/gcloud/application_default_credentials.json": SECRET, ".config/app.toml": "ok = 1\n",
        ".netrc": SECRET, ".git/config": SECRET, ".git-credentials": SECRET, "proj/.ssh/id_rsa": SECRET,
        ".docker/config.json": SECRET, ".kube/config": SECRET, ".runnerignore": "!.ssh/\n!.netrc\n",
    })


def test_credentials_never_ship_whatever_the_ignore_files_say(home_like):
    archive = pack_bytes(home_like)
    names = set(members(archive))
    assert {"job.yaml", "main.py", ".config", ".config/app.toml", "proj"} <= names
    assert SECRET.encode() not in contents(archive)
    for bad in (".ssh", ".aws", ".gnupg", ".config/gcloud", ".netrc", ".git", ".git-credentials", "proj/.ssh", ".docker", ".kube"):
        assert not any(n == bad or n.startswith(bad + "/") for n in names), bad


def test_gitignore_and_runnerignore_are_honoured(tmp_path):
    job = write(tmp_path / "job", {
        "job.yaml": "name: t\ncommand: 'true'\n",
        ".gitignore": "# build output\n*.log\n!keep.log\ndata/\n/top.txt\n**/cache/**\n*.bin\n",
        ".runnerignore": "scratch/\n!model.bin\n",
        "a.log": "x", "keep.log": "x", "data/big.csv": "x", "sub/data/other.csv": "x", "top.txt": "x", "sub/top.txt": "x",
        "x/cache/y/z.txt": "x", "model.bin": "x", "weights.bin": "x", "scratch/tmp.txt": "x",
        "sub/.gitignore": "secret.txt\n!*.log\n", "sub/secret.txt": "x", "sub/debug.log": "x", "main.py": "x",
        "__pycache__/m.cpython-311.pyc": "x", "lib.pyc": "x", ".venv/bin/python": "x",
    })
    names = {n for n, m in members(pack_bytes(job)).items() if m.isfile()}
    assert names == {
        "job.yaml", ".gitignore", ".runnerignore", "keep.log", "sub/top.txt", "model.bin", "sub/.gitignore",
        "sub/debug.log", "main.py",
    }


def test_the_repository_gitignore_above_the_folder_counts(tmp_path):
    repo = write(tmp_path / "repo", {".gitignore": "*.parquet\n/jobs/taxi/out/\n", "jobs/taxi/job.yaml": "x", "jobs/taxi/a.parquet": "x",
                                     "jobs/taxi/out/r.csv": "x", "jobs/taxi/taxi.py": "x"})
    (repo / ".git").mkdir()
    names = {n for n, m in members(pack_bytes(repo / "jobs" / "taxi")).items() if m.isfile()}
    assert names == {"job.yaml", "taxi.py"}
    (repo / "jobs" / "taxi" / ".git").mkdir()  # now a repository of its own: the outer .gitignore is not its
    names = {n for n, m in members(pack_bytes(repo / "jobs" / "taxi")).items() if m.isfile()}
    assert names == {"job.yaml", "taxi.py", "a.parquet", "out/r.csv"}


def test_links_ship_only_when_they_stay_inside_the_folder(tmp_path):
    outside = tmp_path / "shadow"
    outside.write_text(SECRET)
    job = write(tmp_path / "job", {"job.yaml": "x", "lib/util.py": "x"})
    (job / "shadow").symlink_to(outside)
    (job / "etc").symlink_to("/etc")
    (job / "hop").symlink_to("shadow")  # a link to a link that leads out
    (job / "up").symlink_to("../shadow")
    (job / "util.py").symlink_to("lib/util.py")
    (job / "abs-inside").symlink_to(job / "lib")
    (job / "loop-a").symlink_to("loop-b")
    (job / "loop-b").symlink_to("loop-a")
    found = members(pack_bytes(job))
    assert SECRET.encode() not in contents(pack_bytes(job))
    assert not {"shadow", "etc", "hop", "up"} & set(found)
    assert found["util.py"].issym() and found["util.py"].linkname == "lib/util.py"
    assert found["abs-inside"].issym() and found["abs-inside"].linkname == "lib"
    assert found["loop-a"].linkname == "loop-b"  # a loop inside the folder stays as it is


@pytest.mark.parametrize("where", ["home", "store"])
def test_a_folder_that_holds_runner_home_or_the_store_is_refused(tmp_path, monkeypatch, where):
    job = write(tmp_path / "me", {"job.yaml": "x", "main.py": "x"})
    if where == "home":
        monkeypatch.setenv("RUNNER_HOME", str(job / ".runner"))
        named = f"runner's home {job / '.runner'} ($RUNNER_HOME)"
    else:
        monkeypatch.setenv("RUNNER_STORE", f"file://{job}/store")
        named = f"the store file://{job}/store"
    with pytest.raises(SpecError) as e:
        pack_bytes(job)
    assert str(job) in str(e.value) and named in str(e.value)


def test_the_size_limit_stops_the_stream_and_names_the_biggest_files(tmp_path):
    from runner import pack

    job = write(tmp_path / "job", {"job.yaml": "x", "small.txt": "x" * 1000})
    (job / "blob.bin").write_bytes(os.urandom(3 << 20))
    (job / "mid.bin").write_bytes(os.urandom(1 << 19))
    sel = pack.select(job)
    out = io.BytesIO()
    with pytest.raises(SpecError) as e:
        pack.write(job, sel, out, limit=1 << 20)
    assert out.tell() <= 1 << 20  # stopped at the limit, not after the whole folder
    msg = str(e.value)
    assert "packs to more than 1.0 MiB" in msg and "blob.bin (3.0 MiB), mid.bin (0.5 MiB)" in msg
    assert "inputs:" in msg and ".runnerignore" in msg
    before = set(Path(tempfile.gettempdir()).glob("runner-code-*"))
    with pytest.raises(SpecError), pack.packed(job, limit=1 << 20):
        pass
    assert set(Path(tempfile.gettempdir()).glob("runner-code-*")) == before  # the partial archive is gone


def test_dry_run_shows_the_packed_size_files_and_what_was_skipped(home_like, runner_home):
    r = run_cli("launch", str(home_like), "--cloud", "sandbox", "--dry-run", "--json")
    assert r.returncode == 0, r.stderr
    plan = json.loads(r.stdout)
    assert plan["code_files"] == 4 and plan["code_bytes"] > 0  # job.yaml, main.py, .config/app.toml, .runnerignore
    assert ".ssh/ (credentials)" in plan["code_skipped"] and ".config/gcloud/ (credentials)" in plan["code_skipped"]
    text = run_cli("launch", str(home_like), "--cloud", "sandbox", "--dry-run")
    assert "code_files: 4" in text.stdout and ".ssh/ (credentials), " in text.stdout
    assert not runner_home.exists() or not any(runner_home.rglob("*"))


def test_a_sandbox_job_sees_its_code_and_none_of_the_skipped(home_like, runner_home):
    (home_like / "job.yaml").write_text(
        "name: t\ncommand: 'test -f main.py && test -f .config/app.toml && test ! -e .ssh && test ! -e .netrc && test ! -e .git'\n"
    )
    r = run_cli("launch", str(home_like), "--cloud", "sandbox", "--wait", "--json", timeout=300)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["state"] == "SUCCEEDED"
    assert "not shipped" in r.stderr and ".ssh/ (credentials)" in r.stderr


def test_a_pipe_is_skipped_not_read_and_a_huge_folder_is_refused_before_compressing(tmp_path):
    from runner import pack

    job = write(tmp_path / "job", {"job.yaml": "x"})
    os.mkfifo(job / "pipe")
    with open(job / "sparse.img", "wb") as f:
        f.truncate(pack.RAW_LIMIT + 1)  # sparse: its size on paper only
    sel = pack.select(job)
    assert "pipe (not a regular file)" in sel.skipped
    out = io.BytesIO()
    with pytest.raises(SpecError, match=r"holds 4\.0 GiB of files, over the 4\.0 GiB a job's code may be; the biggest: sparse\.img"):
        pack.write(job, sel, out)
    assert out.tell() == 0
    (job / "sparse.img").unlink()
    assert {m for m in members(pack_bytes(job))} == {"job.yaml"}
