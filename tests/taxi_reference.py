"""An independent count of NYC-taxi trips by passenger_count (no DuckDB), and the data generator."""

from __future__ import annotations

import csv
import gzip
import importlib.util
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq

JOB_DIR = Path(__file__).resolve().parent.parent / "jobs" / "taxi"


def _load_make_data():
    spec = importlib.util.spec_from_file_location("taxi_make_data", JOB_DIR / "make_data.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


make_data = _load_make_data()


def reference_counts(root: Path) -> Counter:
    """Independent implementation: csv module + pyarrow.parquet (passenger_count only)."""
    counts = Counter()
    for path in sorted(root.rglob("*")):
        name = path.name.lower()
        if name.endswith(".parquet"):
            column = pq.read_table(path, columns=["passenger_count"]).column(0)
            counts.update(None if v is None else int(v) for v in column.to_pylist())
        elif name.endswith((".csv", ".csv.gz")):
            opener = gzip.open if name.endswith(".gz") else open
            with opener(path, "rt", newline="") as f:
                for row in csv.DictReader(f):
                    value = row["passenger_count"].strip()
                    counts[int(float(value)) if value else None] += 1
    return counts


def expected_rows(counts: Counter) -> list[list[str]]:
    keys = sorted(k for k in counts if k is not None) + ([None] if None in counts else [])
    return [["" if k is None else str(k), str(counts[k])] for k in keys]


def read_output(path: Path) -> tuple[str, list[list[str]]]:
    lines = path.read_text().splitlines()
    return lines[0], list(csv.reader(lines[1:]))


