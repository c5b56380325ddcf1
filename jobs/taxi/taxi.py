#!/usr/bin/env python3
"""Trips per passenger_count over NYC yellow-taxi trip files (CSV and Parquet), with DuckDB.

Usage: python3 taxi.py INPUT_DIR OUTPUT_CSV

Every *.csv, *.csv.gz and *.parquet file under INPUT_DIR (recursively) is read. Only the
passenger_count column is read from each file, so files from different TLC years (whose
other columns differ) can be mixed; it is cast to BIGINT because some years store it as
a float (1.0). OUTPUT_CSV gets `passenger_count,trips`, ascending, NULL (empty) last.
"""
import sys
import time
from pathlib import Path

import duckdb

CSV_SUFFIXES = (".csv", ".csv.gz")
PARQUET_SUFFIXES = (".parquet",)


def sql_str(value) -> str:
    """A SQL string literal (single quotes doubled), safe for paths with spaces or quotes."""
    return "'" + str(value).replace("'", "''") + "'"


def find_trip_files(input_dir: Path) -> tuple[list[Path], list[Path]]:
    csvs, parquets = [], []
    for path in sorted(p for p in input_dir.rglob("*") if p.is_file()):
        name = path.name.lower()
        if name.endswith(CSV_SUFFIXES):
            csvs.append(path)
        elif name.endswith(PARQUET_SUFFIXES):
            parquets.append(path)
    return csvs, parquets


def passenger_counts_sql(csvs: list[Path], parquets: list[Path]) -> str:
    # CSVs are read as text (no type sniffing of columns we don't use); '1' and '1.0' both
    # work via DOUBLE. Empty fields are NULL. Parquet ints and floats cast directly.
    parts = [
        "SELECT CAST(CAST(passenger_count AS DOUBLE) AS BIGINT) AS passenger_count "
        f"FROM read_csv({sql_str(p)}, header = true, all_varchar = true)"
        for p in csvs
    ] + [
        "SELECT CAST(passenger_count AS BIGINT) AS passenger_count "
        f"FROM read_parquet({sql_str(p)})"
        for p in parquets
    ]
    union = "\nUNION ALL\n".join(parts)
    return (
        "SELECT passenger_count, count(*) AS trips\n"
        f"FROM (\n{union}\n)\n"
        "GROUP BY passenger_count"
    )


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print(f"usage: {Path(argv[0]).name} INPUT_DIR OUTPUT_CSV", file=sys.stderr)
        return 2
    input_dir, output = Path(argv[1]), Path(argv[2])
    if not input_dir.is_dir():
        print(f"taxi: error: input directory {input_dir} does not exist", file=sys.stderr)
        return 1

    start = time.monotonic()
    csvs, parquets = find_trip_files(input_dir)
    # Never read our own output back in if it happens to live under INPUT_DIR.
    csvs = [p for p in csvs if p.resolve() != output.resolve()]
    if not csvs and not parquets:
        print(
            f"taxi: error: no trip files (*.csv, *.csv.gz, *.parquet) under {input_dir}",
            file=sys.stderr,
        )
        return 1
    print(f"taxi: {len(csvs) + len(parquets)} trip files under {input_dir} "
          f"({len(csvs)} csv, {len(parquets)} parquet)", flush=True)

    output.parent.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect()
    con.execute(f"CREATE TABLE counts AS {passenger_counts_sql(csvs, parquets)}")
    con.execute(f"COPY (SELECT * FROM counts ORDER BY passenger_count ASC NULLS LAST) "
                f"TO {sql_str(output)} (FORMAT csv, HEADER true, DELIMITER ',')")
    rows, values = con.execute("SELECT coalesce(sum(trips), 0), count(*) FROM counts").fetchone()
    print(f"taxi: {int(rows):,} trips, {values} passenger_count values -> {output} "
          f"in {time.monotonic() - start:.1f}s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
