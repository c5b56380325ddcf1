"""What a store hands back stays inside it: no links out, no `..` keys; writes that never lose a race."""

from __future__ import annotations

import os

import pytest

from runner.errors import NotFoundError
from runner.store import FileStore, OutsideStoreError, open_store

pytest_plugins = ["test_gcp_fakes"]  # its fixtures: gcs, gcs_server


@pytest.fixture
def fstore(tmp_path):
    return FileStore(f"file://{tmp_path}/store")


def test_file_store_lists_no_links(fstore, secret, tmp_path):
    fstore.put_bytes("jobs/j/outputs/real.txt", b"ok")
    out = fstore.base / "jobs/j/outputs"
    os.symlink(secret, out / "key")  # a link to a file out of the store
    os.symlink(secret.parent, out / "ssh")  # a link to a folder out of the store
    os.symlink(out / "real.txt", out / "inner")  # even a link inside the store is not an object
    assert fstore.list("jobs/j/") == ["jobs/j/outputs/real.txt"]
    assert fstore.list("jobs/j/outputs/ssh/") == []
    assert fstore.children("jobs/j/outputs") == []


def test_file_store_reads_nothing_through_a_link(fstore, secret, tmp_path):
    fstore.put_bytes("jobs/j/job.json", b"{}")
    os.symlink(secret, fstore.base / "jobs/j/status.json")
    os.symlink(secret.parent, fstore.base / "jobs/j/outputs")
    for key in ("jobs/j/status.json", "jobs/j/outputs/id_ed25519"):
        with pytest.raises(OutsideStoreError, match="not an object of the store"):
            fstore.get_bytes(key)
        with pytest.raises(OutsideStoreError):
            fstore.download(key, tmp_path / "got")
        assert not fstore.exists(key)
    assert not (tmp_path / "got").exists()


@pytest.mark.parametrize("key", ["../x", "jobs/../../x", "/etc/passwd", "jobs/j/../../../x"])
def test_file_store_refuses_keys_that_climb(fstore, key, tmp_path):
    with pytest.raises(OutsideStoreError, match="'..'|absolute"):
        fstore.put_bytes(key, b"x")
    with pytest.raises(OutsideStoreError):
        fstore.get_bytes(key)
    assert not (tmp_path / "x").exists()


@pytest.fixture(params=["file", "s3", "gs"])
def store(request, tmp_path):
    if request.param == "file":
        return open_store(f"file://{tmp_path}/my store")
    if request.param == "s3":
        _, bucket = request.getfixturevalue("s3")
        return open_store(f"s3://{bucket}/some prefix")
    _, bucket = request.getfixturevalue("gcs")
    return open_store(f"gs://{bucket}/some prefix")



def test_put_if_writes_only_over_the_version_read(store, request):
    enforced = request.node.callspec.params["store"] != "gs"  # the GCS emulator ignores preconditions; GCS keeps them
    assert store.put_if("jobs/j/status.json", b"1", None)  # None: only if it does not exist
    if enforced:
        assert not store.put_if("jobs/j/status.json", b"2", None)
    data, version = store.get_versioned("jobs/j/status.json")
    assert data == b"1"
    store.put_bytes("jobs/j/status.json", b"3")  # someone else writes between our read and our write
    if enforced:
        assert not store.put_if("jobs/j/status.json", b"4", version)
        assert store.get_bytes("jobs/j/status.json") == b"3"
    data, version = store.get_versioned("jobs/j/status.json")
    assert store.put_if("jobs/j/status.json", b"5", version)
    assert store.get_bytes("jobs/j/status.json") == b"5"
    with pytest.raises(NotFoundError):
        store.get_versioned("jobs/j/nope")


def test_reads_are_capped_and_ranged(store):
    store.put_bytes("big", b"0123456789" * 10)
    assert store.get_bytes("big", 5, 10) == b"5678901234"
    assert store.get_bytes("big", 95, 10) == b"56789"
    assert store.get_bytes("big", 100, 10) == b""
    data, _ = store.get_versioned("big", limit=7)
    assert data == b"0123456"


def test_gcs_put_if_sends_the_generation(gcs):
    from test_gcp_fakes import GcsHandler

    store = open_store(f"gs://{gcs[1]}/p")
    store.put_bytes("k", b"1")
    _, version = store.get_versioned("k")
    GcsHandler.requests.clear()
    store.put_if("k", b"2", version)
    store.put_if("new", b"2", None)
    assert any(f"ifGenerationMatch={version}" in r for r in GcsHandler.requests)
    assert any("ifGenerationMatch=0" in r for r in GcsHandler.requests)


def test_cloud_stores_need_no_credentials_until_used(monkeypatch):
    import google.auth as google_auth
    from google.auth.exceptions import DefaultCredentialsError

    def no_adc(*a, **kw):
        raise DefaultCredentialsError("no ADC")

    monkeypatch.delenv("STORAGE_EMULATOR_HOST", raising=False)
    monkeypatch.setattr(google_auth, "default", no_adc)
    store = open_store("gs://bucket/prefix")
    assert store.uri("jobs/x") == "gs://bucket/prefix/jobs/x"
    from runner.errors import AuthError

    with pytest.raises(AuthError, match="application-default login"):
        store.exists("jobs/x")
