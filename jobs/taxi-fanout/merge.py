#!/usr/bin/env python3
"""Sum the per-file passenger counts of jobs/taxi-fanout's items into one CSV (the reduce).

Usage: python3 merge.py ITEMS_DIR OUTPUT_CSV

ITEMS_DIR/<item name>/passenger_counts.csv is each item's result (`passenger_count,trips`); OUTPUT_CSV gets the
sums in jobs/taxi's format: ascending, NULL (empty) last. An item without its counts is an error: nothing is
written then, so a partial sum never passes for the whole.
"""
import csv
import sys
from collections import Counter
from pathlib import Path

RESULT = "passenger_counts.csv"


def read_counts(path: Path) -> Counter:
    counts = Counter()
    with open(path, newline="") as f:
        rows = csv.reader(f)
        if next(rows, None) != ["passenger_count", "trips"]:
            raise ValueError(f"{path}: the header is not passenger_count,trips")
        for row in rows:
            if len(row) != 2:
                raise ValueError(f"{path}: {row!r} is not passenger_count,trips")
            counts[int(row[0]) if row[0] else None] += int(row[1])
    return counts


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print(f"usage: {Path(argv[0]).name} ITEMS_DIR OUTPUT_CSV", file=sys.stderr)
        return 2
    items, output = Path(argv[1]), Path(argv[2])
    folders = sorted(p for p in items.iterdir() if p.is_dir()) if items.is_dir() else []
    if not folders:
        print(f"merge: error: no item results under {items}", file=sys.stderr)
        return 1
    total = Counter()
    for folder in folders:
        if not (folder / RESULT).is_file():
            print(f"merge: error: item {folder.name} has no {RESULT}", file=sys.stderr)
            return 1
        try:
            total.update(read_counts(folder / RESULT))
        except (ValueError, OSError) as e:
            print(f"merge: error: {e}", file=sys.stderr)
            return 1
    keys = sorted(k for k in total if k is not None) + ([None] if None in total else [])
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text("passenger_count,trips\n" + "".join(f"{'' if k is None else k},{total[k]}\n" for k in keys))
    print(f"merge: {sum(total.values()):,} trips from {len(folders)} items -> {output}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
