"""`runner report`: one self-contained HTML page of a job, checked as built and as a real Chromium renders it."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import ROOT, run_cli
from fake_metadata import FakeMetadata

from runner import jobs, report
from runner.store import open_store

EVIL = "<script>alert(1)</script>"
CHROMIUM_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--proxy-server=127.0.0.1:9", "--host-resolver-rules=MAP * ~NOTFOUND",
)


def chromium(page: Path, tmp_path: Path, *args: str) -> str:
    """Open `page` from disk in a headless Chromium with a fresh profile; its stdout."""
    exe = shutil.which("chromium")
    if exe is None:
        pytest.fail("chromium is not installed: `apt-get install -y chromium` (or `make host`) and run again")
    profile = tmp_path / f"profile-{time.monotonic_ns()}"
    profile.mkdir()
    r = subprocess.run([exe, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args, page.as_uri()],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    return r.stdout


def rendered_text(dom: str) -> str:
    """The text a reader sees in a dumped DOM: tags dropped, entities decoded."""
    import html

    body = re.sub(r"<(style|svg)\b.*?</\1>", " ", dom, flags=re.S)
    return html.unescape(re.sub(r"<[^>]+>", " ", body))


def urls_fetched(page: str) -> list[str]:
    """Every src/href/url(...) in the page that could make a browser fetch something over the network."""
    refs = re.findall(r"""(?:src|href|xlink:href|action|srcset|poster|data)\s*=\s*["']?([^"'\s>]+)""", page, flags=re.I)
    refs += re.findall(r"url\(\s*['\"]?([^'\")]+)", page, flags=re.I) + re.findall(r"@import\s+['\"]?([^'\";]+)", page)
    return [r for r in refs if re.match(r"(?:https?:)?//", r.strip(), flags=re.I)]


def screenshot(page: Path, tmp_path: Path) -> Path:
    """A 1200x1600 PNG of the page as Chromium draws it, under the test's tmp dir."""
    shot = tmp_path / f"{page.stem}.png"
    chromium(page, tmp_path, f"--screenshot={shot}", "--window-size=1200,1600")
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000
    return shot


def launch_sandbox(job_dir: Path, env: dict | None = None, during=None) -> dict:
    """`runner launch JOB --cloud sandbox --wait --json` in a fresh process; its JSON."""
    proc = subprocess.Popen([sys.executable, "-m", "runner", "launch", str(job_dir), "--cloud", "sandbox", "--wait", "--json"],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, **(env or {})})
    if during:
        during()
    out, err = proc.communicate(timeout=180)
    assert out.strip(), err
    return json.loads(out.strip().splitlines()[-1])


def write_report(job_id: str, out: Path) -> str:
    r = run_cli("report", job_id, "-o", str(out))
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == str(out)
    return out.read_text()


def test_a_finished_job_s_report_in_chromium(make_job, runner_home, tmp_path):
    d = make_job({"name": "reported", "command": f"seq -f 'line-%03g' 0 119; echo '{EVIL}'; echo 'a & b \"q\"'"})
    result = launch_sandbox(d)
    assert result["state"] == "SUCCEEDED", result
    job_id = result["job_id"]
    page_path = tmp_path / "report.html"
    page = write_report(job_id, page_path)

    assert EVIL not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page  # a log line is text, never markup
    assert "<script" not in page.lower() and "<link" not in page.lower() and "<img" not in page.lower()
    assert urls_fetched(page) == []
    assert "<svg" in page and "Content-Security-Policy" in page

    dom = chromium(page_path, tmp_path, "--dump-dom")
    assert "<script" not in dom.lower()  # the browser saw no script element either
    text = rendered_text(dom)
    for want in (job_id, "SUCCEEDED", "sandbox", EVIL, 'a & b "q"', "line-119", "line-080",
                 f"runner logs {job_id} --all", f"runner outputs {job_id} ./outputs", f"runner status {job_id}"):
        assert want in text, want
    assert "line-000" not in text  # only the tail of the log: the last lines
    assert "startup.log" in text and "attempt 1" in text
    assert "shard" not in text.lower() and "node" not in text.lower()

    screenshot(page_path, tmp_path)


def test_a_preempted_then_relaunched_job_shows_both_attempts(make_job, runner_home, tmp_path):
    meta = FakeMetadata()
    command = ('if [ -f "$RUNNER_CHECKPOINT_DIR/step" ]; then echo "resumed at $(cat "$RUNNER_CHECKPOINT_DIR/step")"; exit 0; fi; '
               'echo 41 > "$RUNNER_CHECKPOINT_DIR/step"; echo working; sleep 600')
    d = make_job({"name": "resumed", "command": command, "spot": True, "retries": 1})

    def interrupt_when_working():
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not any("working" in p.read_text() for p in runner_home.glob("store/jobs/*/logs/1/job.log.*")):
            time.sleep(0.2)
        meta.interrupt(times=1)

    try:
        result = launch_sandbox(d, {"RUNNER_SANDBOX_INTERRUPTION": "aws", "RUNNER_SANDBOX_METADATA_URL": meta.url}, interrupt_when_working)
    finally:
        meta.close()
    assert result["state"] == "SUCCEEDED", result
    page_path = tmp_path / "report.html"
    page = write_report(result["job_id"], page_path)
    assert urls_fetched(page) == []
    text = rendered_text(chromium(page_path, tmp_path, "--dump-dom"))
    assert "attempts 2" in " ".join(text.split()).lower()
    assert "job.log, attempt 1" in text and "job.log, attempt 2" in text
    assert text.index("working") < text.index("resumed at 41")
    svg = re.search(r"<svg\b.*?</svg>", page, flags=re.S)[0]
    assert "attempt 1" in svg and "attempt 2" in svg and "PREEMPTED" in svg
    assert "times estimated" not in svg  # attempt 1 ends where its startup log's clock says
    screenshot(page_path, tmp_path)


class CountingStore:
    """A store that records every key read, to show which log parts a report touches."""

    def __init__(self, store):
        self.store, self.read = store, []

    def __getattr__(self, name):
        return getattr(self.store, name)

    def get_bytes(self, key, offset=0, length=None):
        self.read.append(key)
        return self.store.get_bytes(key, offset, length)


def _seed(store, job_id: str, status: dict, parts: dict[str, list[bytes]], created: str = "2026-11-01T10:00:00Z") -> None:
    jobs.write_json(store, job_id, "job.json", {"job_id": job_id, "cloud": "aws", "instance_type": "c6i.large", "spot": True,
                                                "created_at": created, "usd_per_hour": 3.6})
    store.put_bytes(jobs.job_key(job_id, "status.json"), json.dumps(status).encode())
    for rel, chunks in parts.items():
        for seq, chunk in enumerate(chunks):
            store.put_bytes(jobs.job_key(job_id, "logs", f"{rel}.{seq:06d}"), chunk)


def test_only_the_last_parts_of_a_log_are_read(runner_home):
    store = open_store(f"file://{runner_home}/store")
    job_id = "big-20261101T100000Z-abcdef"
    many = [b"".join(b"part %d line %d\n" % (p, i) for i in range(40)) for p in range(10)]
    _seed(store, job_id, {"state": "FAILED", "exit_code": 3, "reason": "exited with code 3",
                          "started_at": "2026-11-01T10:01:00Z", "ended_at": "2026-11-01T10:11:00Z"}, {"1/job.log": many})
    counting = CountingStore(store)
    tail = report.log_tail(counting, job_id, "job.log", 1)
    assert tail.lines[-1] == "part 9 line 39" and len(tail.lines) == report.TAIL_LINES and tail.more
    assert {k.rsplit(".", 1)[1] for k in counting.read} == {"000008", "000009"}


def test_a_record_s_values_are_text_in_the_page(runner_home):
    store = open_store(f"file://{runner_home}/store")
    job_id = "evil-20261101T100000Z-abcdef"
    _seed(store, job_id, {"state": "FAILED", "exit_code": 1, "reason": f"{EVIL}\x1b[31m", "phase": "<b>x</b>",
                          "started_at": "2026-11-01T10:01:00Z", "ended_at": "2026-11-01T10:11:00Z"},
          {"1/startup.log": [b"\xff\xfe bad bytes " + EVIL.encode() + b"\n"]})
    page = report.html(report.gather(store, job_id))
    assert EVIL not in page and "<b>x</b>" not in page and "\x1b" not in page
    assert page.count("&lt;script&gt;alert(1)&lt;/script&gt;") == 2  # the reason and the startup log line
    assert "0.6000" in page  # ten minutes at 3.6 USD/h, as `runner status` counts it
    assert urls_fetched(page) == []


def test_a_running_job_s_page_says_what_it_has_cost_so_far(runner_home):
    store = open_store(f"file://{runner_home}/store")
    job_id = "live-20261101T100000Z-abcdef"
    _seed(store, job_id, {"state": "RUNNING", "phase": "uploading", "started_at": "2026-11-01T10:01:00Z"}, {})
    data = report.gather(store, job_id, now="2026-11-01T10:11:00Z")
    summary = dict(data["summary"])
    assert summary["Phase"] == "uploading" and summary["Ran for"] == "10m 0s so far" and summary["Cost"].endswith("USD so far")
    assert sorted(b["title"].split(":")[0] for b in data["svg"]["bars"]) == ["attempt 1", "provisioning", "uploading"]
    page = report.html(data)
    assert "no job.log for attempt 1 in the store" in page and "Ended" not in page


def test_the_timeline_spans_creation_to_end_with_each_attempt():
    created, started, ended = "2026-11-01T10:00:00Z", "2026-11-01T10:04:00Z", "2026-11-01T10:10:00Z"
    one = report.timeline(created, started, ended, "SUCCEEDED", attempts=[1], phase=None, now="2026-11-01T11:00:00Z")
    assert [(b.row, b.label, b.start, b.end, b.state) for b in one] == [
        ("attempt", "attempt 1", 0, 600, "SUCCEEDED"), ("phase", "provisioning", 0, 240, "provisioning"),
        ("phase", "running", 240, 600, "SUCCEEDED")]
    at_3m = report._epoch("2026-11-01T10:03:00Z")
    bars = report.timeline(created, started, ended, "SUCCEEDED", attempts=[1, 2], phase=None, now="2026-11-01T11:00:00Z",
                           attempt_ends={1: at_3m})
    by = {(b.row, b.label): b for b in bars}
    assert (by[("attempt", "attempt 1")].end, by[("attempt", "attempt 1")].state, by[("attempt", "attempt 1")].estimated) == (180, "PREEMPTED", False)
    assert (by[("attempt", "attempt 2")].start, by[("attempt", "attempt 2")].end) == (180, 600)
    assert (by[("phase", "provisioning")].start, by[("phase", "provisioning")].end) == (180, 240)  # the last attempt's phases
    guessed = report.timeline(created, started, ended, "SUCCEEDED", attempts=[1, 2, 3], phase=None, now="2026-11-01T11:00:00Z",
                              attempt_ends={1: at_3m + 3600})  # a clock past the last start is not believed
    assert [(b.end, b.estimated) for b in guessed if b.row == "attempt"] == [(120, True), (240, True), (600, False)]
    live = report.timeline("2026-11-01T10:00:00Z", "2026-11-01T10:04:00Z", None, "RUNNING", attempts=[1],
                           phase="uploading", now="2026-11-01T10:05:00Z")
    assert [(b.label, b.end) for b in live if b.row == "phase"] == [("provisioning", 240), ("uploading", 300)]


def test_a_span_of_years_keeps_the_axis_to_a_few_ticks():
    bars = report.timeline("2001-01-01T00:00:00Z", None, "2026-01-01T00:00:00Z", "LOST", attempts=[1], phase=None,
                           now="2026-11-01T00:00:00Z")
    geometry = report.svg_geometry(bars)
    assert 2 <= len(geometry["ticks"]) <= 9 and geometry["bars"][0]["w"] == report.PLOT


def test_a_startup_log_s_clock_is_read_from_its_last_stamped_line():
    tail = report.Tail("startup.log", 1, ["23:59:58 runner: running: x", "00:00:07 runner: job PREEMPTED", "not stamped"])
    created = report._epoch("2026-11-01T23:59:50Z")
    assert report.log_clock(tail, created) == report._epoch("2026-11-02T00:00:07Z")  # past midnight: the next day
    assert report.log_clock(report.Tail("startup.log", 1, ["99:00:00 runner: x", "<b>"]), created) is None


def test_an_unknown_job_is_a_clear_error(runner_home, tmp_path):
    r = run_cli("report", "nope-20261101T100000Z-abcdef", "-o", str(tmp_path / "r.html"))
    assert r.returncode != 0 and "no job 'nope-20261101T100000Z-abcdef'" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "r.html").exists()


def _section(page: str, title: str) -> str:
    """The HTML of the page's section headed `title`."""
    at = page.index(f"<h2>{title}</h2>")
    return page[at:page.index("</section>", at)]


def test_a_fanout_job_s_page_shows_its_items_its_reduce_a_row_per_shard_and_its_failed_items(make_job, runner_home, tmp_path):
    lines = ["ok-1", "ok-2", EVIL, 'a & b "q"']
    d = make_job({"name": "fan", "command": 'case "$RUNNER_ITEM" in *"<"*) echo bad; exit 3;; esac; echo ok > "$RUNNER_ITEM_OUTPUT/r"',
                  "items": {"manifest": "items.txt", "fetch": False}, "vms": 2,
                  "reduce": {"command": "ls items > all.txt", "outputs": ["all.txt"]}}, {"items.txt": "".join(f"{x}\n" for x in lines)})
    result = launch_sandbox(d)
    assert result["state"] == "FAILED" and result["items"] == {"total": 4, "done": 3, "failed": 1, "missing": 0}, result
    job_id = result["job_id"]
    page = write_report(job_id, tmp_path / "fan.html")

    assert EVIL not in page and "<script" not in page.lower() and urls_fetched(page) == []
    bad = next(row for row in json.loads(run_cli("status", job_id, "--items", "--json").stdout)["item_states"] if row["state"] == "failed")
    failed = _section(page, "Failed items")
    assert f"<code>{bad['name']}</code>" in failed and ">3</td>" in failed
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in failed  # the item as the manifest holds it: text, never markup
    assert _section(page, "Failed items").count("<tr>") == 2  # the header and the one failed item
    items = _section(page, "Items")
    assert "<b>3</b> done" in items and "<b>1</b> failed" in items and "<b>0</b> missing" in items and "<b>4</b>" in items

    shards = _section(page, "Shards")
    svg = re.search(r"<svg\b.*?</svg>", shards, flags=re.S)[0]
    for k in (0, 1):
        assert f'<tr id="shard-{k}">' in shards and f"runner logs {job_id} --shard {k}" in shards
        assert f'<a href="#shard-{k}">' in svg and f"shard {k}: " in svg
    assert svg.count("<rect") >= 2 and "reduce" not in svg  # no reduce ran: no row for it
    assert re.findall(r"<title>shard \d: (\w+);", svg) and set(re.findall(r"<title>shard \d: (\w+);", svg)) <= {"SUCCEEDED", "FAILED"}
    assert svg.count("attempts 1; ") == 2 and "items 2/2 done; " in svg and "items 1/2 done, 1 failed; " in svg
    assert _section(page, "Reduce").count("not started") == 1
    text = rendered_text(page)
    assert "3/4 done, 1 failed, 0 missing" in text and f"runner retry {job_id}" in text
    assert "job.log, attempt" not in text  # a single job's sections are not on a fan-out's page


def _item(i: int) -> str:
    return f's3://b/part&<{i:03d}>"q"'


def _seed_fanout(store, parent: str, shards: list[dict], failed: dict[int, int], total: int = 80) -> None:
    """A finished fan-out job's records, as its launcher and its shards leave them in the store; item i fails with failed[i]."""
    from runner.fanout import ids
    from runner.fanout.items import Item, manifest_bytes, safe_name

    items = [Item(_item(i), safe_name(_item(i)), 1) for i in range(total)]
    jobs.write_json(store, parent, "job.json", {"job_id": parent, "cloud": "aws", "instance_type": "c6i.large", "spot": True,
                                                "created_at": "2026-11-01T10:00:00Z", "spec": {"name": "fan", "command": "true"},
                                                "fanout": {"vms": len(shards), "items": total, "per_vm": 0, "fetch": True, "reduce": False}})
    store.put_bytes(jobs.job_key(parent, "manifest.jsonl"), manifest_bytes(items))
    jobs.write_status(store, parent, jobs.Status(jobs.PROVISIONING))
    for k, s in enumerate(shards):
        sid = ids.shard_id(parent, k)
        store.put_bytes(jobs.job_key(parent, "shards", str(k)),
                        json.dumps({"shard_id": sid, "items": s["total"], "launched_at": s["launched"]}).encode())
        jobs.write_json(store, sid, "job.json", {"job_id": sid, "cloud": "aws", "parent": parent, "shard": k})
        jobs.write_json(store, sid, "instance.json", {"cloud": "aws", "id": f"i-0{k}", "job_id": sid, "zone": "us-east-1b",
                                                      "data": {"usd_per_hour": 0.6}, "attempt": s.get("attempt", 1)})
        store.put_bytes(jobs.job_key(sid, "status.json"), json.dumps({"state": s["state"], "reason": s.get("reason", ""),
                                                                      "started_at": s["started"], "ended_at": s["ended"]}).encode())
        mine = {items[i].name: c for i, c in failed.items() if i % len(shards) == k}
        jobs.write_json(store, sid, "summary.json", {"total": s["total"], "done": s["total"] - len(mine), "failed": len(mine),
                                                     "failed_items": mine, "updated_at": s["ended"]})


def test_a_fanout_page_caps_its_shards_and_failed_items_and_keeps_untrusted_times_in_bounds(runner_home, monkeypatch):
    from runner.fanout import report as fanout_report
    from runner.fanout.items import safe_name

    store = open_store(f"file://{runner_home}/store")
    parent = "fan-20261101T100000Z-abcdef"
    shards = [
        {"state": "FAILED", "total": 27, "launched": "2026-11-01T10:00:00Z", "started": "2026-11-01T10:01:00Z",
         "ended": "2026-11-01T10:21:00Z", "reason": f"{EVIL} the job exited with code 1"},
        {"state": "FAILED", "total": 27, "launched": "2026-11-01T10:00:00Z", "started": "2026-11-01T10:11:00Z",
         "ended": "2099-01-01T00:00:00Z", "attempt": 2},  # relaunched once; an end in the future (the VM wrote it)
        {"state": "FAILED", "total": 26, "launched": "2026-11-01T10:00:00Z", "started": "2026-11-01T10:02:00Z",
         "ended": "2026-11-01T10:30:00Z"},
    ]
    failed = {i: 10 + i % 5 for i in range(60)}
    _seed_fanout(store, parent, shards, failed)
    monkeypatch.setattr(fanout_report, "SHARDS_SHOWN", 2)
    data = report.gather(store, parent, now="2026-11-01T11:00:00Z")
    assert data["fanout"] and data["items"] == {"total": 80, "done": 20, "failed": 60, "missing": 0}
    assert [s["k"] for s in data["shards"]] == [0, 1] and data["hidden_shards"] == 1
    assert len(data["failed"]) == 50 and data["more_failed"] == 10
    assert data["failed"][0] == {"name": safe_name(_item(0)), "exit_code": "10", "item": _item(0)}
    bars = data["svg"]["bars"]
    assert {b["href"] for b in bars} == {"#shard-0", "#shard-1"}
    relaunched = [b for b in bars if b["href"] == "#shard-1"]
    assert [b["dashed"] for b in relaunched] == [True, False] and "attempts 1 to 1 (preempted)" in relaunched[0]["title"]
    ends = [b["x"] + b["w"] for b in bars]
    assert max(ends) == report.LEFT + report.PLOT  # the future end is cut at the report's time, the axis spans the hour
    assert data["svg"]["ticks"][-1]["label"] == "1h 0m 0s"
    page = report.html(data)
    assert EVIL not in page and "&lt;script&gt;alert(1)&lt;/script&gt; the job exited with code 1" in page
    assert "part&amp;&lt;000&gt;&#34;q&#34;" in page and _item(0) not in page
    assert "1 more shard(s) not shown" in page and "10 more failed item(s)" in page and page.count('<tr id="shard-') == 2
    assert urls_fetched(page) == []


def test_a_shard_s_bars_wait_then_run_and_a_relaunch_s_earlier_attempts_are_dashed():
    from runner.fanout import report as fanout_report
    from runner.fanout.views import Shard, Summary

    t0 = report._epoch("2026-11-01T10:00:00Z")
    now = t0 + 3600

    def shard(state, started, ended, attempts=1, launched="2026-11-01T10:00:30Z"):
        st = jobs.Status(state, started_at=started, ended_at=ended)
        return Shard(4, "fan--s4-x", st, Summary(total=5, done=3, failed=1), attempts=attempts, cost_usd=0.25, launched_at=launched)

    one = fanout_report.shard_spans(shard(jobs.FAILED, "2026-11-01T10:01:00Z", "2026-11-01T10:11:00Z"), 0, t0, now)
    assert [(s.start, s.end, s.state, s.dashed) for s in one] == [(30, 60, "provisioning", False), (60, 660, jobs.FAILED, False)]
    assert one[1].title == "shard 4: FAILED; attempts 1; items 3/5 done, 1 failed; cost 0.2500 USD; ran 1m 0s to 11m 0s"
    two = fanout_report.shard_spans(shard(jobs.SUCCEEDED, "2026-11-01T10:20:00Z", "2026-11-01T10:30:00Z", attempts=3), 1, t0, now)
    assert [(s.start, s.end, s.state, s.dashed) for s in two] == [(30, 1200, jobs.PREEMPTED, True), (1200, 1800, jobs.SUCCEEDED, False)]
    running = fanout_report.shard_spans(shard(jobs.RUNNING, "2026-11-01T10:01:00Z", None), 2, t0, now)
    assert running[-1].end == 3600  # to the report's time
    never = fanout_report.shard_spans(shard(jobs.CANCELLED, None, "2026-11-01T10:05:00Z"), 3, t0, now)
    assert [(s.start, s.end, s.state) for s in never] == [(30, 300, jobs.CANCELLED)]
    past = fanout_report.shard_spans(shard(jobs.FAILED, "1999-01-01T00:00:00Z", "1999-01-01T00:00:01Z", launched=""), 0, t0, now)
    assert [(s.start, s.end) for s in past] == [(0, 0)]  # times before the job was created are kept at its start
