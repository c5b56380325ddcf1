"""Property-based: every invalid spec or flag value is rejected with a clear message before any backend is called."""

from __future__ import annotations

import json
import string

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runner import launch
from runner.errors import SpecError
from runner.spec import FIELDS, validate

VALID = {"name": "job", "command": "true"}

# For each field: values that must be rejected.
BAD = {
    "name": st.one_of(
        st.text(min_size=1).filter(lambda s: not all(c in string.ascii_lowercase + string.digits + "-" for c in s)),
        st.text(alphabet=string.ascii_lowercase, min_size=41),
        st.sampled_from(["", "-lead", "trail-", "9starts-with-digit"]),
        st.integers(), st.none(), st.lists(st.text()),
    ),
    "command": st.one_of(st.just(""), st.integers(), st.none(), st.dictionaries(st.text(), st.text(), min_size=1)),
    "disk_gb": st.one_of(st.integers(max_value=7), st.integers(min_value=16385), st.text(alphabet=string.ascii_letters, min_size=1)),
    "max_runtime": st.one_of(
        st.integers(max_value=0), st.integers(min_value=7 * 24 * 3600 + 1),
        st.text(alphabet="xyzdw!? ", min_size=1), st.booleans(),
    ),
    "spot": st.one_of(st.text(alphabet="xzq", min_size=1), st.integers(min_value=2), st.lists(st.booleans(), min_size=1)),
    "cloud": st.text(min_size=1).filter(lambda s: s not in ("sandbox", "local", "aws", "gcp")),
    "env": st.one_of(
        st.dictionaries(st.text(alphabet="-. !$", min_size=1), st.text(), min_size=1),
        st.dictionaries(st.sampled_from(["RUNNER_X", "RUNNER_JOB_ID"]), st.text(), min_size=1),
        st.dictionaries(st.sampled_from(["OK"]), st.one_of(st.booleans(), st.none()), min_size=1),
        st.lists(st.text(), min_size=1),
    ),
    "inputs": st.one_of(
        st.dictionaries(st.sampled_from(["http://x/y", "ftp://h/p", "/abs/path", "../up"]), st.just("data/"), min_size=1),
        st.dictionaries(st.just("s3://b/k"), st.sampled_from(["/etc/passwd", "../x", ""]), min_size=1),
    ),
    "outputs": st.dictionaries(st.sampled_from(["/abs", "../up", "a/../../b"]), st.none(), min_size=1),
}


@settings(max_examples=40, deadline=None)
@given(data=st.data())
@pytest.mark.parametrize("field", sorted(BAD))
def test_every_bad_value_is_named(field, data):
    value = data.draw(BAD[field])
    with pytest.raises(SpecError) as e:
        validate({**VALID, field: value}, "jobs/x/job.yaml")
    message = str(e.value)
    assert f"field '{field}" in message and "jobs/x/job.yaml" in message


@settings(max_examples=40, deadline=None)
@given(key=st.text(min_size=1).filter(lambda k: k not in FIELDS))
def test_unknown_fields_are_rejected(key):
    with pytest.raises(SpecError, match="unknown field"):
        validate({**VALID, key: 1}, "job.yaml")


class Spy:
    """A provider that records any call: none may come for an invalid spec."""

    calls: list[str] = []
    name = "spy"
    default_instance_type = "spy"
    interruption = ""
    metadata_url = ""

    def __getattr__(self, name):
        def record(*args, **kwargs):
            Spy.calls.append(name)
        return record


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_no_backend_is_called_for_a_bad_spec(data, tmp_path, monkeypatch):
    field = data.draw(st.sampled_from(sorted(BAD)))
    value = data.draw(BAD[field])
    monkeypatch.setattr(launch, "get_provider", lambda name: Spy())
    job = tmp_path / "job"
    job.mkdir(exist_ok=True)
    try:
        (job / "job.yaml").write_text(json.dumps({**VALID, field: value}))
    except (TypeError, ValueError):
        return  # not representable in a file
    Spy.calls = []
    with pytest.raises(SpecError):
        launch.plan(job, cloud="sandbox")
    assert Spy.calls == []


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(flag=st.sampled_from(["--max-runtime", "--disk-gb", "--env"]), value=st.text(alphabet="xyz!=- ", min_size=1))
def test_bad_flag_values_are_rejected_before_any_backend(flag, value, tmp_path, monkeypatch):
    from click.testing import CliRunner

    from runner.cli import main

    if flag == "--env" and "=" in value and value.split("=", 1)[0].strip() and value.split("=", 1)[0].isidentifier():
        return  # a valid KEY=VALUE
    monkeypatch.setattr(launch, "get_provider", lambda name: Spy())
    job = tmp_path / "job"
    job.mkdir(exist_ok=True)
    (job / "job.yaml").write_text(json.dumps(VALID))
    Spy.calls = []
    result = CliRunner().invoke(main, ["launch", str(job), "--cloud", "sandbox", flag, value])
    assert result.exit_code == 2, result.output
    assert Spy.calls == []
