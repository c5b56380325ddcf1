"""`runner outputs JOB DEST` places files only inside DEST and reads only the job's own outputs."""

from __future__ import annotations

import os
import shutil

import pytest
from conftest import run_cli

from runner import jobs
from runner.store import FileStore

JOB = "out-20250101T000000Z-abcdef"
OTHER = "out-20250102T000000Z-123456"


@pytest.fixture
def store(runner_home):
    return FileStore(f"file://{runner_home}/store")


def record(store, outputs: dict, job_id: str = JOB) -> None:
    jobs.write_json(store, job_id, "job.json", {"job_id": job_id, "cloud": "sandbox", "outputs": outputs})
    jobs.write_status(store, job_id, jobs.Status(jobs.SUCCEEDED, exit_code=0))


def own(store, path: str = "") -> str:
    return store.uri(jobs.job_key(JOB, "outputs", path))


def files_in(dest):
    return sorted(p.relative_to(dest).as_posix() for p in dest.rglob("*") if p.is_file())


def leaked(tmp_path, secret) -> list:
    """Every copy of the secret's bytes anywhere under tmp_path but the original."""
    return [p for p in tmp_path.rglob("*") if p.is_file() and p != secret and p.read_bytes() == b"PRIVATE KEY"]


def test_the_job_own_outputs_come_down(store, tmp_path):
    store.put_bytes(jobs.job_key(JOB, "outputs", "a.csv"), b"a")
    store.put_bytes(jobs.job_key(JOB, "outputs", "charts/x/c.png"), b"c")
    record(store, {"a.csv": own(store, "a.csv"), "charts/": own(store, "charts/")})
    dest = tmp_path / "dest"
    r = run_cli("outputs", JOB, str(dest))
    assert r.returncode == 0, r.stderr
    assert files_in(dest) == ["a.csv", "charts/x/c.png"]


@pytest.mark.parametrize("outputs", [
    {"stolen/": "file://{ssh}/"},  # a job that rewrote its job.json: the operator's keys
    {"stolen": "file://{ssh}/id_ed25519"},
    {"stolen/": "file://{store}/jobs/{other}/outputs/"},  # another job's folder
    {"stolen/": "file://{store}/jobs/{job}/outputs/../../{other}/outputs/"},
    {"../stolen/": "file://{store}/jobs/{job}/outputs/"},  # a path that climbs out of DEST
    {"/tmp/stolen/": "file://{store}/jobs/{job}/outputs/"},  # an absolute path
])
def test_a_rewritten_job_record_gets_nothing_outside(store, tmp_path, secret, outputs):
    store.put_bytes(jobs.job_key(OTHER, "outputs", "theirs.txt"), b"PRIVATE KEY")
    store.put_bytes(jobs.job_key(JOB, "outputs", "mine.txt"), b"PRIVATE KEY")
    fill = {"ssh": secret.parent, "store": store.base, "other": OTHER, "job": JOB}
    record(store, {k.format(**fill): v.format(**fill) for k, v in outputs.items()})
    dest = tmp_path / "work" / "dest"
    r = run_cli("outputs", JOB, str(dest))
    assert "Traceback" not in r.stderr
    assert r.returncode == 66 and "refused" in r.stderr, r.stderr  # named, and nothing came down
    assert sorted(leaked(tmp_path, secret)) == sorted([  # only the store's own copies: nothing came down
        store.base / "jobs" / OTHER / "outputs/theirs.txt", store.base / "jobs" / JOB / "outputs/mine.txt"])


def test_links_in_the_job_folder_are_not_followed(store, tmp_path, secret):
    store.put_bytes(jobs.job_key(JOB, "outputs", "ok.txt"), b"ok")
    out = store.base / "jobs" / JOB / "outputs"
    os.symlink(secret, out / "key")
    os.symlink(secret.parent, out / "ssh")
    record(store, {"all/": own(store)})
    dest = tmp_path / "dest"
    r = run_cli("outputs", JOB, str(dest))
    assert r.returncode == 0, r.stderr
    assert files_in(dest) == ["all/ok.txt"]
    shutil.rmtree(out)
    os.symlink(secret.parent, out)  # the whole outputs/ folder is a link out
    r = run_cli("outputs", JOB, str(tmp_path / "dest2"))
    assert r.returncode == 66 and not (tmp_path / "dest2").exists()
    assert [p for p in tmp_path.rglob("id_ed25519") if p != secret] == []  # rglob does not enter the link either


def test_keys_with_dots_in_a_bucket_stay_inside_dest(s3, runner_home, monkeypatch, tmp_path):
    client, bucket = s3
    monkeypatch.setenv("RUNNER_STORE", f"s3://{bucket}/runner")
    from runner.store import open_store

    store = open_store(f"s3://{bucket}/runner")
    prefix = f"runner/jobs/{JOB}/outputs/"
    client.put_object(Bucket=bucket, Key=prefix + "good.txt", Body=b"good")
    client.put_object(Bucket=bucket, Key=prefix + "../../../../evil.txt", Body=b"evil")
    client.put_object(Bucket=bucket, Key=prefix + "sub/../../../x.txt", Body=b"evil")
    record(store, {"res/": f"s3://{bucket}/{prefix}"})
    dest = tmp_path / "a" / "b" / "dest"
    r = run_cli("outputs", JOB, str(dest))
    assert r.returncode == 0, r.stderr
    assert files_in(dest) == ["res/good.txt"]
    assert not any(p.name in ("evil.txt", "x.txt") for p in tmp_path.rglob("*"))
    assert "skipped" in r.stderr and "evil.txt" in r.stderr


def test_declared_bucket_outputs_come_down(s3, runner_home, monkeypatch, tmp_path):
    client, bucket = s3
    monkeypatch.setenv("RUNNER_STORE", f"s3://{bucket}/runner")
    from runner.store import open_store

    client.put_object(Bucket=bucket, Key="elsewhere/charts/c.txt", Body=b"c")
    record(open_store(f"s3://{bucket}/runner"), {"charts/": f"s3://{bucket}/elsewhere/charts/"})
    r = run_cli("outputs", JOB, str(tmp_path / "d"))
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "d" / "charts" / "c.txt").read_bytes() == b"c"


def test_help_states_the_rule():
    r = run_cli("outputs", "--help")
    assert "file://" in r.stdout and "inside DEST" in r.stdout


def test_outputs_record_of_the_wrong_shape(store, tmp_path):
    jobs.write_json(store, JOB, "job.json", {"job_id": JOB, "outputs": ["x"]})
    r = run_cli("outputs", JOB, str(tmp_path / "d"))
    assert r.returncode == 65 and "job.json" in r.stderr and "Traceback" not in r.stderr
    jobs.write_json(store, JOB, "job.json", {"job_id": JOB, "outputs": {"a": 5}})
    r = run_cli("outputs", JOB, str(tmp_path / "d"))
    assert "Traceback" not in r.stderr and "refused" in r.stderr
