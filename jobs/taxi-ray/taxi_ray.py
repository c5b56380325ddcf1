#!/usr/bin/env python3
"""Trips per passenger_count over NYC yellow-taxi trip files, one Ray task per file, dealt out over the cluster's nodes.

Usage: python3 taxi_ray.py INPUT_DIR OUTPUT_CSV  (run on the head of a `nodes: N` job: RAY_ADDRESS is set)

Every node pulled INPUT_DIR into its own work dir, so a task reads its file there (RUNNER_WORK_DIR on that node).
Each task runs jobs/taxi's query over one file with DuckDB; the head sums the counts. OUTPUT_CSV gets
`passenger_count,trips`, ascending, NULL (empty) last: the same file as jobs/taxi's on the same data.
"""
import os
import sys
from collections import Counter
from pathlib import Path

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

SUFFIXES = (".csv", ".csv.gz", ".parquet")


def sql_str(value) -> str:
    """A SQL string literal (single quotes doubled), safe for paths with spaces or quotes."""
    return "'" + str(value).replace("'", "''") + "'"


def select_sql(path: Path) -> str:
    """As jobs/taxi: CSV read as text ('1' and '1.0' both via DOUBLE), Parquet cast directly."""
    if path.name.lower().endswith(".parquet"):
        return f"SELECT CAST(passenger_count AS BIGINT) AS passenger_count FROM read_parquet({sql_str(path)})"
    return ("SELECT CAST(CAST(passenger_count AS DOUBLE) AS BIGINT) AS passenger_count "
            f"FROM read_csv({sql_str(path)}, header = true, all_varchar = true)")


@ray.remote(max_retries=3)
def count(rel: str) -> tuple[str, list[tuple[int | None, int]]]:
    """One file's counts, on whichever node runs the task (a lost node's tasks run again on another)."""
    import duckdb

    path = Path(os.environ.get("RUNNER_WORK_DIR", ".")) / rel
    rows = duckdb.connect().execute(f"SELECT passenger_count, count(*) FROM ({select_sql(path)}) GROUP BY passenger_count").fetchall()
    return ray.get_runtime_context().get_node_id(), [(k, int(n)) for k, n in rows]


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print(f"usage: {Path(argv[0]).name} INPUT_DIR OUTPUT_CSV", file=sys.stderr)
        return 2
    root, output = Path(argv[1]), Path(argv[2])
    work = Path(os.environ.get("RUNNER_WORK_DIR", "."))
    files = sorted(str(p.relative_to(work) if p.is_absolute() else p) for p in (work / root).rglob("*")
                   if p.is_file() and p.name.lower().endswith(SUFFIXES))
    if not files:
        print(f"taxi_ray: error: no trip files under {root}", file=sys.stderr)
        return 1
    ray.init()
    nodes = [n for n in ray.nodes() if n.get("Alive")]
    print(f"taxi_ray: {len(files)} files over {len(nodes)} nodes", flush=True)
    total, used = Counter(), Counter()
    # file i on node i mod N, softly: every node gets its share at once (a node's first task waits for its Python
    # worker to start, and Ray's SPREAD would hand the next tasks to a node whose workers are already up); a node that
    # is gone or full leaves its tasks to the others
    on = [NodeAffinitySchedulingStrategy(n["NodeID"], soft=True) for n in sorted(nodes, key=lambda n: n["NodeID"])]
    for node, rows in ray.get([count.options(scheduling_strategy=on[i % len(on)]).remote(f) for i, f in enumerate(files)]):
        used[node] += 1
        for k, n in rows:
            total[k] += n
    keys = sorted(k for k in total if k is not None) + ([None] if None in total else [])
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text("passenger_count,trips\n" + "".join(f"{'' if k is None else k},{total[k]}\n" for k in keys))
    print(f"taxi_ray: {sum(total.values()):,} trips -> {output}; tasks per node: {sorted(used.values(), reverse=True)}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
