"""`runner status`: each job's state reconciled with its VM and what it has cost, one bad job never the table's end."""

from __future__ import annotations

from runner import children, cost, jobs, watch
from runner.errors import NotFoundError, RunnerError
from runner.fanout import views
from runner.store import Store


def _rate(store: Store, job_id: str) -> float | None:
    """The job's hourly price: what the launch paid (instance.json), else the price planned with (job.json)."""
    for name, read in (("instance.json", lambda r: r.get("data", {}).get("usd_per_hour")), ("job.json", lambda r: r.get("usd_per_hour"))):
        try:
            rate = read(jobs.read_json(store, job_id, name))
        except (NotFoundError, jobs.RecordError, AttributeError):
            continue
        if isinstance(rate, (int, float)) and not isinstance(rate, bool):
            return float(rate)
    return None


def row(store: Store, job_id: str, detail: bool = False) -> dict:
    """One job's status, its price and cost so far (and, with `detail`, which VM is known); a fan-out's or a cluster's as a parent."""
    kind, record = children.parent_record(store, job_id)  # one read of job.json
    if kind is children.SHARDS:
        return parent_row(store, job_id, record, detail)
    if kind is children.NODES:
        from runner.cluster.views import row as cluster_row

        return cluster_row(store, job_id, detail)
    return job_row(store, job_id, detail)


def job_row(store: Store, job_id: str, detail: bool = False) -> dict:
    """One ordinary job's status, its price and cost so far (and, with `detail`, which VM is known)."""
    try:
        st = watch.refresh(store, job_id)
    except NotFoundError:
        if detail:
            raise
        st = jobs.Status(jobs.UNKNOWN, reason="its folder holds neither job.json nor status.json")
    except RunnerError as e:  # its VM could not be asked (a record naming what the cloud refuses, an outage)
        st = jobs.read_status(store, job_id)
        st.reason = f"{st.reason}; the VM could not be checked: {e}".lstrip("; ")
    rate = _rate(store, job_id)
    out = {"job_id": job_id, **st.__dict__, "usd_per_hour": rate, "cost_usd": cost.so_far(rate, st.started_at, st.ended_at)}
    if detail:
        inst, why = jobs.read_instance(store, job_id)
        out["vm"] = f"{inst.cloud} {inst.id}" if inst else why
    return out


def parent_row(store: Store, job_id: str, fan: dict, detail: bool = False) -> dict:
    """A fan-out job as one row: its derived state, its items and the cost of all its shards (with `detail`, each shard)."""
    parent = views.read_parent(store, job_id, fan, check_vm=detail)
    out = parent.to_json()
    out["usd_per_hour"] = sum(s.usd_per_hour for s in parent.shards if s.usd_per_hour is not None) if parent.shards else None
    if not detail:
        out.pop("shards")
        out["reason"] = out["reason"] or f"items {parent.items_line()}"
    return out


def table(rows: list[dict]) -> list[str]:
    """The rows as the lines of a table, with a total."""
    width = max(len(r["job_id"]) for r in rows)
    lines = [f"{'JOB':<{width}}  {'STATE':<12} {'EXIT':>4}  {'COST $':>8}  {'UPDATED':<20}  REASON"]
    for r in rows:
        code = "" if r["exit_code"] is None else r["exit_code"]
        spent = "-" if r["cost_usd"] is None else f"{r['cost_usd']:.4f}"
        reason = r["reason"].replace("\n", " ")[:60]
        lines.append(f"{r['job_id']:<{width}}  {r['state']:<12} {code:>4}  {spent:>8}  {r['updated_at']:<20}  {reason}")
    known = [r["cost_usd"] for r in rows if r["cost_usd"] is not None]
    lines.append(f"{'total':<{width}}  {'':<12} {'':>4}  {sum(known):>8.4f}  ({len(known)} of {len(rows)} jobs priced)")
    return lines
