#!/usr/bin/env python3
"""Synthetic NYC yellow-taxi trip files with the real TLC schema (no downloads; pyarrow only).

Usage: python3 make_data.py OUT_DIR [--files N] [--rows R] [--seed S] [--format csv|parquet|both]
                            [--passenger-type int|float|mixed] [--gzip]

Layout (the way the TLC bucket looks, including a space in a folder name):
    OUT_DIR/yellow_tripdata_2024-01.parquet
    OUT_DIR/trip data/yellow_tripdata_2024-02.csv      (.csv.gz with --gzip)
With --format both, files alternate parquet/csv, one month each. R rows are spread over
the N files. The same seed gives the same files. Real-world quirks are reproduced:
  * passenger_count is mostly 1, some 0..6 (rarely 7..9), ~2% NULL; a NULL-passenger row
    also has NULL RatecodeID / store_and_fwd_flag / congestion_surcharge / airport_fee and
    payment_type 0, as in the TLC files;
  * passenger_type "float" stores passenger_count as double (TLC parquet 2019-2022 and
    "1.0" in CSV); "mixed" (default) does that for every other file of each format;
  * every other CSV file has the older layout without congestion_surcharge / airport_fee.
Importable: generate(out_dir, files=..., rows=..., seed=..., fmt=...) -> list[Path].
`runner launch` names this file, with the store path of the input, when that input is missing:
a job folder's make_data.py OUT_DIR is how it makes its own example data.
"""
import argparse
import random
from datetime import datetime, timedelta
from itertools import accumulate
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

SCHEMA = pa.schema([
    ("VendorID", pa.int32()),
    ("tpep_pickup_datetime", pa.timestamp("us")),
    ("tpep_dropoff_datetime", pa.timestamp("us")),
    ("passenger_count", pa.int64()),
    ("trip_distance", pa.float64()),
    ("RatecodeID", pa.int64()),
    ("store_and_fwd_flag", pa.string()),
    ("PULocationID", pa.int32()),
    ("DOLocationID", pa.int32()),
    ("payment_type", pa.int64()),
    ("fare_amount", pa.float64()),
    ("extra", pa.float64()),
    ("mta_tax", pa.float64()),
    ("tip_amount", pa.float64()),
    ("tolls_amount", pa.float64()),
    ("improvement_surcharge", pa.float64()),
    ("total_amount", pa.float64()),
    ("congestion_surcharge", pa.float64()),
    ("airport_fee", pa.float64()),
])
LEGACY_CSV_DROP = ("congestion_surcharge", "airport_fee")  # columns absent in older CSVs
CSV_SUBDIR = "trip data"
PASSENGERS = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]
PASSENGER_WEIGHTS = list(accumulate([1.5, 72, 14, 3.5, 2, 4, 2.9, 0.03, 0.03, 0.04]))  # cumulative
NULL_PASSENGER_RATE = 0.02
AIRPORTS = (132, 138)  # JFK, LaGuardia


def _trips(rng: random.Random, n: int, year: int, month: int) -> pa.Table:
    start = datetime(year, month, 1)
    month_seconds = int(((start + timedelta(days=32)).replace(day=1) - start).total_seconds())
    cols = {name: [] for name in SCHEMA.names}
    for _ in range(n):
        pickup = start + timedelta(seconds=rng.randrange(month_seconds))
        minutes = min(max(rng.lognormvariate(2.5, 0.6), 1.0), 180.0)
        distance = round(minutes / 60 * rng.uniform(6, 20), 2)
        known = rng.random() >= NULL_PASSENGER_RATE
        passengers = rng.choices(PASSENGERS, cum_weights=PASSENGER_WEIGHTS)[0] if known else None
        ratecode = rng.choices([1, 2, 3, 4, 5, 99], [94, 3, 0.5, 0.3, 1.5, 0.7])[0]
        pu, do = rng.randint(1, 265), rng.randint(1, 265)
        payment = rng.choices([1, 2, 3, 4], [78, 19, 1, 2])[0] if known else 0
        fare = 70.0 if ratecode == 2 else round(3.0 + 3.5 * distance + 0.35 * minutes, 2)
        extra = rng.choice([0.0, 1.0, 2.5, 5.0])
        tip = round(fare * rng.choice([0, 0.15, 0.2, 0.25, 0.3]), 2) if payment == 1 else 0.0
        tolls = 6.94 if rng.random() < 0.05 else 0.0
        congestion = 2.5 if rng.random() < 0.9 else 0.0
        airport = 1.75 if pu in AIRPORTS else 0.0
        total = round(fare + extra + 0.5 + tip + tolls + 1.0 + congestion + airport, 2)
        row = {
            "VendorID": rng.choices([1, 2], [27, 73])[0],
            "tpep_pickup_datetime": pickup,
            "tpep_dropoff_datetime": pickup + timedelta(seconds=round(minutes * 60)),
            "passenger_count": passengers, "trip_distance": distance,
            "RatecodeID": ratecode if known else None,
            "store_and_fwd_flag": ("Y" if rng.random() < 0.005 else "N") if known else None,
            "PULocationID": pu, "DOLocationID": do, "payment_type": payment,
            "fare_amount": fare, "extra": extra, "mta_tax": 0.5, "tip_amount": tip,
            "tolls_amount": tolls, "improvement_surcharge": 1.0, "total_amount": total,
            "congestion_surcharge": congestion if known else None,
            "airport_fee": airport if known else None,
        }
        for name, value in row.items():
            cols[name].append(value)
    return pa.table(cols, schema=SCHEMA)


def _write_csv(table: pa.Table, path: Path, float_passengers: bool, legacy: bool) -> None:
    if legacy:
        table = table.drop_columns(list(LEGACY_CSV_DROP))
    for name in ("tpep_pickup_datetime", "tpep_dropoff_datetime"):  # TLC style, no fraction
        i = table.schema.get_field_index(name)
        seconds = table[name].cast(pa.timestamp("s"))
        table = table.set_column(i, name, pc.strftime(seconds, format="%Y-%m-%d %H:%M:%S"))
    if float_passengers:  # "1.0" as in some TLC CSVs (pyarrow would print a double as "1")
        i = table.schema.get_field_index("passenger_count")
        text = [None if v is None else f"{v:.1f}" for v in table["passenger_count"].to_pylist()]
        table = table.set_column(i, "passenger_count", pa.array(text, pa.string()))
    options = pacsv.WriteOptions(quoting_style="none", quoting_header="none")
    if path.name.endswith(".gz"):
        with pa.CompressedOutputStream(str(path), "gzip") as out:
            pacsv.write_csv(table, out, options)
    else:
        pacsv.write_csv(table, str(path), options)


def generate(out_dir, files: int = 4, rows: int = 100_000, seed: int = 0, fmt: str = "both",
             passenger_type: str = "mixed", gzip: bool = False) -> list[Path]:
    """Write `files` trip files with `rows` rows in total under out_dir; return their paths."""
    if fmt not in ("csv", "parquet", "both"):
        raise ValueError(f"fmt must be csv, parquet or both, not {fmt!r}")
    if passenger_type not in ("int", "float", "mixed"):
        raise ValueError(f"passenger_type must be int, float or mixed, not {passenger_type!r}")
    if files < 1 or rows < 0:
        raise ValueError("need files >= 1 and rows >= 0")
    out_dir = Path(out_dir)
    written, seen = [], {"csv": 0, "parquet": 0}
    for i in range(files):
        kind = fmt if fmt != "both" else ("parquet" if i % 2 == 0 else "csv")
        k = seen[kind]  # index of this file among files of its format
        seen[kind] += 1
        float_passengers = passenger_type == "float" or (passenger_type == "mixed" and k % 2 == 1)
        year, month = 2024 + i // 12, i % 12 + 1
        rng = random.Random(f"{seed}/{i}")
        table = _trips(rng, rows // files + (i < rows % files), year, month)
        stem = f"yellow_tripdata_{year}-{month:02d}"
        if kind == "parquet":
            path = out_dir / f"{stem}.parquet"
            path.parent.mkdir(parents=True, exist_ok=True)
            if float_passengers:
                table = table.set_column(3, "passenger_count",
                                         table["passenger_count"].cast(pa.float64()))
            pq.write_table(table, path)
        else:
            path = out_dir / CSV_SUBDIR / f"{stem}.csv{'.gz' if gzip else ''}"
            path.parent.mkdir(parents=True, exist_ok=True)
            _write_csv(table, path, float_passengers, legacy=k % 2 == 1)
        written.append(path)
    return written


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out_dir", type=Path)
    ap.add_argument("--files", type=int, default=4)
    ap.add_argument("--rows", type=int, default=100_000, help="total rows over all files")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--format", dest="fmt", choices=["csv", "parquet", "both"], default="both")
    ap.add_argument("--passenger-type", choices=["int", "float", "mixed"], default="mixed")
    ap.add_argument("--gzip", action="store_true", help="write CSVs as .csv.gz")
    a = ap.parse_args()
    paths = generate(a.out_dir, a.files, a.rows, a.seed, a.fmt, a.passenger_type, a.gzip)
    for path in paths:
        print(path)
    print(f"make_data: {len(paths)} files, {a.rows:,} rows under {a.out_dir}")


if __name__ == "__main__":
    main()
