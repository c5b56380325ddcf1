"""Names and identifiers are checked to their true end: a trailing newline is never part of an accepted name."""

from __future__ import annotations

import re
import string

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from runner import aws_prices, jobs
from runner.errors import SpecError
from runner.providers import aws, gcp_build, gcp_prices, local
from runner.spec import parse_duration, validate

VALID = {"name": "job", "command": "true"}
SHELL_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@pytest.mark.parametrize(
    "field, value, expected",
    [
        ("secrets", {"DB\n": "aws-ssm:/db/password"}, "'DB\\n' is not a usable variable name"),
        ("secrets", {"DB": "aws-ssm:/db/password\n"}, "is not a secret reference"),
        ("secrets", {"DB": "gcp-sm:projects/p/secrets/s\n"}, "is not a secret reference"),
        ("env", {"FOO\n": "1"}, "'FOO\\n' is not a usable variable name"),
        ("name", "taxi\n", "'taxi\\n' is not a job name"),
        ("name", "t\n", "'t\\n' is not a job name"),
        ("max_runtime", "30m\n", "is not a duration"),
    ],
)
def test_a_trailing_newline_is_rejected_with_the_field_named(field, value, expected):
    with pytest.raises(SpecError) as e:
        validate({**VALID, field: value}, "jobs/x/job.yaml")
    assert f"field '{field}'" in str(e.value) and expected in str(e.value) and "jobs/x/job.yaml" in str(e.value)


def test_a_job_id_with_a_trailing_newline_is_not_a_job_id():
    good = "taxi-20240101T000000Z-abcdef"
    assert jobs.check_job_id(good) == good
    with pytest.raises(SpecError, match="is not a job id"):
        jobs.check_job_id(good + "\n")
    with pytest.raises(SpecError, match="is not a job id"):
        jobs.job_key(good + "\n", "status.json")


def test_durations_take_no_surrounding_whitespace():
    assert parse_duration("1h30m") == 5400
    for bad in ("30m\n", "\n30m", " 30m", "30m "):
        with pytest.raises(ValueError, match="is not a duration"):
            parse_duration(bad)


@pytest.mark.parametrize(
    "pattern, good",
    [
        (jobs.NAME_RE, "taxi"), (jobs.NAME_RE, "t"), (jobs.ID_RE, "taxi-20240101T000000Z-abcdef"),
        (aws.TYPE_RE, "c6i.large"), (gcp_build.TYPE_RE, "e2-standard-4"), (gcp_build.ZONE_RE, "us-central1-a"),
        (gcp_prices.TYPE_RE, "n2-custom-4-16384"), (local.TYPE_RE, "local-2x4"), (aws_prices.SIZE_RE, "xlarge"),
    ],
)
def test_every_name_pattern_ends_at_the_true_end(pattern, good):
    assert pattern.match(good)
    assert not pattern.match(good + "\n"), f"{pattern.pattern} accepts {good!r} with a trailing newline"


def test_provider_checks_reject_a_trailing_newline():
    with pytest.raises(SpecError, match="is not a local type"):
        local.parse_type("local-2x4\n")
    assert gcp_build.region_of("us-central1-a\n") == ""
    assert gcp_prices.shape("e2-standard-4\n") is None
    assert aws_prices.size_units("xlarge\n") is None
    assert aws.type_arch("c7g.large") == "arm64"


@settings(max_examples=300, deadline=None)
@given(name=st.text(alphabet=string.ascii_letters + string.digits + "_\n\r\t -$=;", min_size=1, max_size=8))
def test_an_accepted_env_or_secret_name_is_a_shell_name_and_nothing_else(name):
    for field, value in (("env", {name: "v"}), ("secrets", {name: "aws-ssm:/p"})):
        try:
            spec = validate({**VALID, field: value}, "job.yaml")
        except SpecError:
            continue
        (accepted,) = getattr(spec, field)
        assert SHELL_NAME.fullmatch(accepted), repr(accepted)


CHILD_TEXT = st.text(alphabet="abnsz019-TZ\n/.", max_size=40)
TS_RAND = "20261201T101500Z-3fa9c2"


@settings(max_examples=500, deadline=None)
@example(prefix="taxi", suffix="", letter="n", k="63")
@example(prefix="a-b", suffix="", letter="s", k="999999")
@example(prefix="taxi", suffix="\n", letter="n", k="1")
@example(prefix="taxi", suffix="", letter="n", k="064")
@given(prefix=CHILD_TEXT, suffix=CHILD_TEXT, letter=st.sampled_from("sn"), k=st.text(alphabet="0123456789٣", min_size=0, max_size=8))
def test_a_child_id_is_accepted_only_in_the_one_form_it_is_written_in(prefix, suffix, letter, k):
    from runner import children

    for hostile in (f"{prefix}--{letter}{k}-{TS_RAND}{suffix}", f"{prefix}{letter}{k}{suffix}"):
        found = children.parent_of(hostile)
        if found is not None:  # parsing is exact: the id rebuilt from what was read is the very string
            assert children.child_id(found.parent, found.kind, found.k) == hostile and jobs.check_job_id(hostile) == hostile
            assert "\n" not in hostile and "/" not in hostile and 0 <= found.k < found.kind.bound
