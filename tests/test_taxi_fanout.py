"""jobs/taxi-fanout: one item per trip file over 2 sandbox shards, summed by its reduce, equals jobs/taxi's result."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

from conftest import ROOT, run_cli
from taxi_reference import expected_rows, make_data, read_output, reference_counts

FANOUT_DIR = ROOT / "jobs" / "taxi-fanout"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"taxi_fanout_{name}", FANOUT_DIR / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def launch(job: str) -> dict:
    r = run_cli("launch", f"jobs/{job}", "--cloud", "sandbox", "--wait", "--json", *(["--vms", "2"] if job == "taxi-fanout" else []),
                timeout=300)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_fanout_over_two_shards_equals_the_single_job(runner_home, tmp_path):
    data = runner_home / "store" / "data" / "nyc-taxi"
    files = make_data.generate(data, files=5, rows=5000, seed=11, fmt="both")
    files += make_data.generate(data / "more", files=2, rows=800, seed=12, fmt="csv", gzip=True)
    (data / "README.txt").write_text("not a trip file\n")  # not matched by yellow_tripdata_*

    fanout, single = launch("taxi-fanout"), launch("taxi")
    assert fanout["state"] == single["state"] == "SUCCEEDED"
    assert fanout["items"] == {"total": len(files), "done": len(files), "failed": 0, "missing": 0}
    assert len(fanout["shards"]) == 2

    got = {}
    for name, result in (("fanout", fanout), ("single", single)):
        r = run_cli("outputs", result["job_id"], str(tmp_path / name))
        assert r.returncode == 0, r.stderr
        got[name] = (tmp_path / name / "passenger_counts.csv").read_bytes()
    assert got["fanout"] == got["single"]
    header, rows = read_output(tmp_path / "fanout" / "passenger_counts.csv")
    assert header == "passenger_count,trips" and rows == expected_rows(reference_counts(data))
    per_item = sorted(p.parent.name for p in (tmp_path / "fanout" / "items").glob("*/passenger_counts.csv"))
    assert per_item == sorted(p.name for p in files)

    status = json.loads(run_cli("status", fanout["job_id"], "--json").stdout)
    assert [s["items"]["done"] for s in status["shards"]] == [s["items"]["total"] for s in status["shards"]]
    assert sum(s["items"]["total"] for s in status["shards"]) == len(files)


def test_count_is_taxi_py_over_one_file(tmp_path):
    files = make_data.generate(tmp_path / "in", files=3, rows=900, seed=5, fmt="both", gzip=True)
    for path in files:
        out = tmp_path / "out" / path.name / "passenger_counts.csv"
        r = subprocess.run([sys.executable, str(FANOUT_DIR / "count.py"), str(path), str(out)], capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        single = path.parent / "only"
        single.mkdir(exist_ok=True)
        for old in single.iterdir():
            old.unlink()
        (single / path.name).symlink_to(path)
        assert read_output(out) == ("passenger_count,trips", expected_rows(reference_counts(single)))


def test_merge_sums_and_refuses_a_missing_result(tmp_path):
    merge = _load("merge")
    items = tmp_path / "items"
    (items / "a.csv").mkdir(parents=True)
    (items / "a.csv" / "passenger_counts.csv").write_text("passenger_count,trips\n1,5\n2,1\n,3\n")
    (items / "b.parquet").mkdir()
    (items / "b.parquet" / "passenger_counts.csv").write_text("passenger_count,trips\n0,2\n1,4\n")
    out = tmp_path / "passenger_counts.csv"
    assert merge.main(["merge.py", str(items), str(out)]) == 0
    assert out.read_text() == "passenger_count,trips\n0,2\n1,9\n2,1\n,3\n"
    (items / "c.csv").mkdir()
    out.unlink()
    assert merge.main(["merge.py", str(items), str(out)]) == 1
    assert not out.exists()  # a partial sum never passes for the whole


def test_the_job_folder_is_a_valid_fanout_spec():
    from runner.spec import load_job

    spec, _ = load_job(FANOUT_DIR, {})
    assert spec.items.over == "data/nyc-taxi/" and spec.items.match == "yellow_tripdata_*" and spec.vms == 2
    assert spec.reduce.outputs == {"passenger_counts.csv": None}
    assert Path(FANOUT_DIR / "count.py").is_file() and Path(FANOUT_DIR / "merge.py").is_file()
