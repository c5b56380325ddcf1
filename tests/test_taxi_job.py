"""Tests for the example job jobs/taxi (taxi.py with DuckDB, make_data.py with pyarrow).

taxi.py's output is checked against a second, independent count written here with the
csv module and pyarrow.parquet (no DuckDB).
"""
import csv
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from taxi_reference import JOB_DIR, expected_rows, make_data, read_output, reference_counts

TAXI = JOB_DIR / "taxi.py"
TLC_YELLOW_COLUMNS = [
    "VendorID", "tpep_pickup_datetime", "tpep_dropoff_datetime", "passenger_count",
    "trip_distance", "RatecodeID", "store_and_fwd_flag", "PULocationID", "DOLocationID",
    "payment_type", "fare_amount", "extra", "mta_tax", "tip_amount", "tolls_amount",
    "improvement_surcharge", "total_amount", "congestion_surcharge", "airport_fee",
]


def run_taxi(input_dir: Path, output: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(TAXI), str(input_dir), str(output)],
                          capture_output=True, text=True, timeout=60)


def test_matches_independent_count(tmp_path):
    data = tmp_path / "nyc taxi"  # a space in the input path, like s3://nyc-tlc/trip data/
    generated = make_data.generate(data, files=6, rows=6000, seed=7, fmt="both")
    generated += make_data.generate(data / "more data", files=2, rows=1000, seed=8,
                                    fmt="csv", gzip=True)
    # An older-style CSV with other columns in another order, "2.0" values, empty fields,
    # and a quote in its folder name (exercises SQL string quoting).
    odd = data / "driver's uploads" / "yellow_tripdata_2009-01.csv"
    odd.parent.mkdir(parents=True)
    odd.write_text("tpep_pickup_datetime,total_amount,passenger_count\n"
                   "2009-01-01 00:01:00,10.5,2.0\n2009-01-01 00:02:00,7,\n"
                   "2009-01-01 00:03:00,8,2\n2009-01-01 00:04:00,9,7\n")
    (data / "README.txt").write_text("not a trip file\n")

    # The generated data really has the quirks this test is about.
    names = {p.name for p in generated}
    assert "yellow_tripdata_2024-01.parquet" in names
    assert any(p.parent.name == "trip data" for p in generated)
    parquet_types = {str(pq.read_schema(p).field("passenger_count").type)
                     for p in generated if p.suffix == ".parquet"}
    assert parquet_types == {"int64", "double"}
    expected = reference_counts(data)
    assert sum(expected.values()) == 6000 + 1000 + 4
    assert expected[None] > 0 and expected[1] > 3000 and expected[0] > 0 and expected[6] > 0

    output = tmp_path / "out dir" / "passenger_counts.csv"
    result = run_taxi(data, output)
    assert result.returncode == 0, result.stderr
    assert "9 trip files" in result.stdout and "7,004 trips" in result.stdout
    header, rows = read_output(output)
    assert header == "passenger_count,trips"
    assert rows == expected_rows(expected)
    assert rows[-1][0] == ""  # NULL last


def test_float_passenger_count_parquet(tmp_path):
    table = pa.table({
        "VendorID": pa.array([1, 2, 2, 1, 2, 1], pa.int32()),
        "passenger_count": pa.array([1.0, 1.0, 2.0, None, 0.0, 6.0], pa.float64()),
        "total_amount": pa.array([10.0, 11.5, 9.0, 20.0, 3.0, 50.0]),
    })
    pq.write_table(table, tmp_path / "yellow_tripdata_2020-05.parquet")
    output = tmp_path / "counts.csv"
    result = run_taxi(tmp_path, output)
    assert result.returncode == 0, result.stderr
    assert output.read_text() == "passenger_count,trips\n0,1\n1,2\n2,1\n6,1\n,1\n"


@pytest.mark.parametrize("make_input", [
    lambda d: d.mkdir(),                                                     # empty
    lambda d: (d.mkdir(), (d / "notes.txt").write_text("no trips here\n")),  # no trip files
    lambda d: None,                                                          # missing
], ids=["empty", "no-trip-files", "missing"])
def test_no_input_fails_clearly(tmp_path, make_input):
    input_dir = tmp_path / "trip data"
    make_input(input_dir)
    output = tmp_path / "passenger_counts.csv"
    result = run_taxi(input_dir, output)
    assert result.returncode != 0
    assert "taxi: error:" in result.stderr and str(input_dir) in result.stderr
    assert not output.exists()


def test_make_data_schema_and_determinism(tmp_path):
    first = make_data.generate(tmp_path / "a", files=4, rows=400, seed=3, fmt="both")
    again = make_data.generate(tmp_path / "b", files=4, rows=400, seed=3, fmt="both")
    other = make_data.generate(tmp_path / "c", files=4, rows=400, seed=4, fmt="both")
    assert [p.relative_to(tmp_path / "a") for p in first] == \
           [p.relative_to(tmp_path / "b") for p in again]
    assert all(p.read_bytes() == q.read_bytes() for p, q in zip(first, again, strict=True))
    assert any(p.read_bytes() != q.read_bytes() for p, q in zip(first, other, strict=True))

    parquet = pq.read_table(first[0])
    assert parquet.column_names == TLC_YELLOW_COLUMNS
    assert parquet.num_rows == 100
    pickups = parquet["tpep_pickup_datetime"].to_pylist()
    assert all(t.year == 2024 and t.month == 1 for t in pickups)
    with open(first[1], newline="") as f:
        header = next(csv.reader(f))
    assert first[1].parent.name == "trip data" and header == TLC_YELLOW_COLUMNS
    assert sum(reference_counts(tmp_path / "a").values()) == 400
