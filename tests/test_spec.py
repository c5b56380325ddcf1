"""Job spec validation: every bad value is named with its file, field and what is allowed."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from runner.errors import SpecError
from runner.spec import load_job, parse_duration, parse_env, validate


def test_name_and_command_are_enough(make_job):
    spec, job_dir = load_job(make_job({"name": "taxi", "command": "python3 taxi.py"}))
    assert (spec.name, spec.command, spec.inputs, spec.outputs, spec.spot) == ("taxi", "python3 taxi.py", {}, {}, False)
    assert spec.max_runtime == 7200 and spec.disk_gb == 50 and spec.cloud is None
    assert job_dir.is_absolute()


def test_typo_names_the_file_and_suggests_the_field(make_job):
    d = make_job({"name": "taxi", "comand": "x"})
    with pytest.raises(SpecError) as e:
        load_job(d)
    msg = str(e.value)
    assert str(d / "job.yaml") in msg
    assert "unknown field 'comand' (did you mean 'command'?)" in msg
    assert "field 'command' is required" in msg


@pytest.mark.parametrize(
    "field, value, expected",
    [
        ("name", "Taxi Job", "'Taxi Job' is not a job name"),
        ("name", "a" * 41, "is not a job name"),
        ("max_runtime", "3x", "'3x' is not a duration; use e.g. 90s, 30m, 2h or 1h30m"),
        ("max_runtime", "200h", "out of range"),
        ("disk_gb", "big", "'big'"),
        ("disk_gb", 2, "greater than or equal to 8"),
        ("spot", "maybe", "valid boolean"),
        ("cloud", "azure", "'sandbox', 'local', 'aws' or 'gcp'"),
        ("inputs", {"http://x/y": "data/"}, "unknown scheme"),
        ("inputs", {"s3://b/k": "/etc/passwd"}, "must be a relative path"),
        ("outputs", {"../up.csv": None}, "without '..'"),
        ("env", {"BAD-NAME": "x"}, "'BAD-NAME' is not a usable variable name"),
        ("env", {"RUNNER_JOB_ID": "x"}, "RUNNER_* is reserved"),
        ("env", {"FLAG": True}, "quote the value"),
        ("inputs", ["s3://b/k"], "valid dictionary"),
    ],
)
def test_bad_values_are_named(make_job, field, value, expected):
    d = make_job({"name": "taxi", "command": "true", field: value})
    with pytest.raises(SpecError) as e:
        load_job(d)
    assert f"field '{field}" in str(e.value) and expected in str(e.value)
    assert "job.yaml" in str(e.value)


def test_flags_override_the_file_and_are_blamed_on_the_command_line(make_job):
    d = make_job({"name": "taxi", "command": "true", "spot": True, "env": {"A": "1", "B": "2"}})
    spec, _ = load_job(d, {"spot": False, "instance_type": "c6i.32xlarge", "env": {"B": "3"}, "max_runtime": "1h30m"})
    assert (spec.spot, spec.instance_type, spec.max_runtime) == (False, "c6i.32xlarge", 5400)
    assert spec.env == {"A": "1", "B": "3"}
    with pytest.raises(SpecError, match="command line: field 'max_runtime'"):
        load_job(d, {"max_runtime": "soon"})


def test_yaml_problems_are_clear(tmp_path):
    (tmp_path / "job.yaml").write_text("name: [unclosed\n")
    with pytest.raises(SpecError, match="not valid YAML"):
        load_job(tmp_path)
    (tmp_path / "job.yaml").write_text("- a list\n")
    with pytest.raises(SpecError, match="top level must be a mapping"):
        load_job(tmp_path)
    with pytest.raises(SpecError, match="no such file: a job is a folder with a job.yaml"):
        load_job(tmp_path / "nope")


def test_outputs_as_a_list_and_numbers_in_env():
    spec = validate({"name": "t", "command": "c", "outputs": ["a.csv", "out/"], "env": {"N": 4, "F": 0.5}}, "x")
    assert spec.outputs == {"a.csv": None, "out/": None}
    assert spec.env == {"N": "4", "F": "0.5"}


def test_spec_is_frozen():
    spec = validate({"name": "t", "command": "c"}, "x")
    with pytest.raises(ValidationError):
        spec.name = "other"


@pytest.mark.parametrize("text, seconds", [(90, 90), ("90s", 90), ("30m", 1800), ("2h", 7200), ("1h30m", 5400)])
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


def test_env_flags():
    assert parse_env(["A=1", "B=x=y", "C="]) == {"A": "1", "B": "x=y", "C": ""}
    with pytest.raises(SpecError, match="expected KEY=VALUE"):
        parse_env(["NOEQUALS"])
