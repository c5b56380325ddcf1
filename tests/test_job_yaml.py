"""Hostile job.yaml files: each is refused with one line naming the file, and nothing is created."""

from __future__ import annotations

import pytest
from conftest import run_cli

from runner.errors import SpecError
from runner.spec import load_job

LAUGHS = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join([f'*{chr(97 + i)}'] * 10)}]\n" for i in range(8)
) + "name: laughs\ncommand: 'true'\n"

HOSTILE = {
    "non-utf8": (b"name: caf\xe9\ncommand: 'true'\n", "not UTF-8 text (byte 9"),
    "nested": (b"name: " + b"[" * 100_000, "nested deeper than"),
    "long-int": (b"name: t\ncommand: 'true'\ndisk_gb: 1" + b"0" * 4999 + b"\n", "integer of 5000 digits"),
    "long-hex": (b"name: t\ncommand: 'true'\ndisk_gb: 0x" + b"f" * 4998 + b"\n", "integer of 5000 digits"),
    "laughs": (LAUGHS.encode(), "anchors and aliases (&a) are not allowed"),
    "alias-only": (b"name: t\ncommand: *nowhere\n", "anchors and aliases (*nowhere) are not allowed"),
    "duplicate": (b"name: first\ncommand: 'true'\nname: second\n", "duplicate key 'name' (line 3"),
    "duplicate-nested": (b"name: t\ncommand: 'true'\nenv:\n  A: '1'\n  A: '2'\n", "duplicate key 'A' (line 5"),
    "huge": (b"name: t\ncommand: 'true'\n#" + b"x" * (2 << 20) + b"\n", "is 2.0 MiB"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_yaml_is_one_line_naming_the_file(tmp_path, case):
    data, expected = HOSTILE[case]
    (tmp_path / "job.yaml").write_bytes(data)
    with pytest.raises(SpecError) as e:
        load_job(tmp_path)
    message = str(e.value)
    assert message.startswith(f"{tmp_path / 'job.yaml'}: "), message[:300]
    assert expected in message, message[:300]
    assert "\n" not in message and len(message) < 400, message[:600]


def test_the_size_cap_is_a_mebibyte_and_a_file_under_it_loads(tmp_path):
    from runner.job_yaml import MAX_YAML_BYTES

    assert MAX_YAML_BYTES == 1 << 20
    (tmp_path / "job.yaml").write_bytes(b"name: t\ncommand: 'true'\n#" + b"x" * (MAX_YAML_BYTES - 100) + b"\n")
    spec, _ = load_job(tmp_path)
    assert spec.name == "t"


def test_plain_yaml_still_loads(tmp_path):
    (tmp_path / "job.yaml").write_text(
        "# a comment\nname: taxi\ncommand: |\n  python3 taxi.py\n  echo done\nenv: {N: 4, S: 'x'}\n"
        "inputs:\n  s3://b/k/: data/\noutputs: [out.csv]\nspot: yes\nmax_runtime: 1h30m\n"
    )
    spec, _ = load_job(tmp_path)
    assert spec.command == "python3 taxi.py\necho done\n" and spec.env == {"N": "4", "S": "x"}
    assert spec.inputs == {"s3://b/k/": "data/"} and spec.spot is True and spec.max_runtime == 5400


def test_a_syntax_error_is_one_line_with_its_position(tmp_path):
    (tmp_path / "job.yaml").write_text("name: t\ncommand: [unclosed\n")
    with pytest.raises(SpecError) as e:
        load_job(tmp_path)
    message = str(e.value)
    assert "\n" not in message and "not valid YAML" in message and "line " in message


@pytest.mark.parametrize("case", ["nested", "laughs", "long-int", "duplicate"])
def test_the_cli_refuses_hostile_yaml_and_creates_nothing(tmp_path, runner_home, case):
    job = tmp_path / "job"
    job.mkdir()
    (job / "job.yaml").write_bytes(HOSTILE[case][0])
    r = run_cli("launch", str(job), "--cloud", "sandbox", "--wait")
    assert r.returncode == 2, r.stderr[-2000:]
    assert "Traceback" not in r.stderr and HOSTILE[case][1] in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr[-2000:]
    assert not runner_home.exists() or not any(runner_home.rglob("*"))
