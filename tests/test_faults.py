"""The fault-injection suite (tests/faults.py) as tests: each fault ends right, logs kept, one power-off."""

from __future__ import annotations

import pytest
from fake_metadata import FakeMetadata
from faults import cases, run, verdict


@pytest.fixture
def metadata():
    meta = FakeMetadata()
    yield meta
    meta.close()


@pytest.mark.parametrize("fault", [c.fault for c in cases()])
def test_fault(fault, metadata, s3_server, tmp_path):
    case = next(c for c in cases(metadata) if c.fault == fault)
    seen = run(case, tmp_path / "home", s3_server)
    assert verdict(case, seen) == []
    if case.state == "PREEMPTED":
        assert any("spot/instance-action" in r for r in metadata.requests)  # IMDSv2: token first, then the notice
        assert metadata.requests[0] == "PUT /latest/api/token"


def test_gcp_preemption_notice_is_seen_too(metadata, tmp_path):
    """The same fault with GCE's metadata server (instance/preempted) instead of EC2's IMDSv2."""
    case = next(c for c in cases(metadata) if c.state == "PREEMPTED")
    case.env = {**case.env, "RUNNER_SANDBOX_INTERRUPTION": "gcp"}
    seen = run(case, tmp_path / "home")
    assert verdict(case, seen) == []
    assert "GET /computeMetadata/v1/instance/preempted" in metadata.requests
    assert "instance/preempted is TRUE" in seen.reason
