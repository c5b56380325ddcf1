"""The fakes themselves (tests/fake_google.py) answer as Google does."""

from __future__ import annotations

import pytest
from fake_google import PROJECT, TOKEN, GcsHandler  # noqa: F401 (GcsHandler, PROJECT: for modules that import them from here)

pytest_plugins = ["fake_google"]  # its fixtures: google, gcs_server, gcs


def test_fake_compute_answers_like_google(google):
    import requests

    r = requests.get(f"{google.url}/compute/v1/projects/{PROJECT}/zones/us-central1-a/instances/nope")
    assert r.status_code == 404 and r.json()["error"]["errors"][0]["reason"] == "notFound"
    assert requests.get(f"{google.url}/computeMetadata/v1/instance/name").status_code == 403  # no Metadata-Flavor
    assert requests.post(f"{google.url}/token").json()["access_token"] == TOKEN


@pytest.mark.filterwarnings("ignore:Unverified HTTPS request")
def test_fake_gcs_serves_http_and_https(gcs, gcs_server):
    import requests

    client, bucket = gcs
    client.bucket(bucket).blob("a b/c.txt").upload_from_string(b"x")
    r = requests.get(f"https://127.0.0.1:{gcs_server[1]}/storage/v1/b/{bucket}/o", verify=False)
    assert [o["name"] for o in r.json()["items"]] == ["a b/c.txt"]
