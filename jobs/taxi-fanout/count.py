#!/usr/bin/env python3
"""Trips per passenger_count in ONE NYC yellow-taxi trip file (CSV, CSV.gz or Parquet), with DuckDB.

Usage: python3 count.py TRIP_FILE OUTPUT_CSV

The per-item step of jobs/taxi-fanout: the same query as jobs/taxi/taxi.py, over one file.
OUTPUT_CSV gets `passenger_count,trips`, ascending, NULL (empty) last.
"""
import sys
from pathlib import Path

import duckdb


def sql_str(value) -> str:
    """A SQL string literal (single quotes doubled), safe for paths with spaces or quotes."""
    return "'" + str(value).replace("'", "''") + "'"


def passenger_counts_sql(path: Path) -> str:
    """As taxi.py: CSV read as text ('1' and '1.0' both via DOUBLE), Parquet cast directly."""
    name = path.name.lower()
    if name.endswith(".parquet"):
        select = f"SELECT CAST(passenger_count AS BIGINT) AS passenger_count FROM read_parquet({sql_str(path)})"
    elif name.endswith((".csv", ".csv.gz")):
        select = ("SELECT CAST(CAST(passenger_count AS DOUBLE) AS BIGINT) AS passenger_count "
                  f"FROM read_csv({sql_str(path)}, header = true, all_varchar = true)")
    else:
        raise SystemExit(f"count: error: {path} is not a trip file (*.csv, *.csv.gz, *.parquet)")
    return f"SELECT passenger_count, count(*) AS trips FROM ({select}) GROUP BY passenger_count"


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print(f"usage: {Path(argv[0]).name} TRIP_FILE OUTPUT_CSV", file=sys.stderr)
        return 2
    path, output = Path(argv[1]), Path(argv[2])
    if not path.is_file():
        print(f"count: error: trip file {path} does not exist", file=sys.stderr)
        return 1
    output.parent.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect()
    con.execute(f"CREATE TABLE counts AS {passenger_counts_sql(path)}")
    con.execute(f"COPY (SELECT * FROM counts ORDER BY passenger_count ASC NULLS LAST) "
                f"TO {sql_str(output)} (FORMAT csv, HEADER true, DELIMITER ',')")
    trips = con.execute("SELECT coalesce(sum(trips), 0) FROM counts").fetchone()[0]
    print(f"count: {int(trips):,} trips in {path.name} -> {output}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
