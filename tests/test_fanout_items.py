"""Fan-out planning with no backend: the spec's items/vms/reduce, shard ids, item names, manifests, listings."""

from __future__ import annotations

import hashlib
import json
import string

import pytest
from conftest import run_cli
from hypothesis import given
from hypothesis import strategies as st

from runner.errors import SpecError
from runner.fanout import ids
from runner.fanout.items import (
    SAFE_RE,
    Item,
    describe_plan,
    from_listing,
    from_manifest,
    items_tsv,
    list_items,
    manifest_bytes,
    missing,
    raw_name,
    read_manifest,
    safe_name,
)
from runner.jobs import ID_RE, RecordError
from runner.spec import load_job, validate
from runner.store import open_store

BASE = {"name": "taxi", "command": "python3 count.py"}


# --- the spec --------------------------------------------------------------------------------------------

def test_a_fanout_spec_with_its_defaults(make_job):
    spec, _ = load_job(make_job({**BASE, "items": {"over": "s3://nyc-tlc/trip data/"}, "vms": 12,
                                 "reduce": {"command": "python3 merge.py", "outputs": {"passenger_counts.csv": None}}}))
    assert (spec.items.over, spec.items.manifest, spec.items.match, spec.items.per_vm, spec.items.fetch) == (
        "s3://nyc-tlc/trip data/", None, "*", 0, True)
    assert spec.vms == 12 and spec.reduce.command == "python3 merge.py"
    assert spec.reduce.outputs == {"passenger_counts.csv": None}


def test_a_single_job_dumps_and_validates_again_unchanged():
    spec = validate(dict(BASE), "job.yaml")
    assert (spec.items, spec.vms, spec.reduce) == (None, None, None)
    assert validate(spec.model_dump(), "job.json") == spec  # a relaunch re-validates the dumped spec


def test_the_vms_flag_overrides_the_file(make_job):
    d = make_job({**BASE, "items": {"manifest": "items.txt"}, "vms": 3})
    assert load_job(d, {"vms": 5})[0].vms == 5
    with pytest.raises(SpecError, match=r"command line: field 'vms'.*less than or equal to 1000"):
        load_job(d, {"vms": 1001})


@pytest.mark.parametrize(
    "extra, expected",
    [
        ({"vms": 2}, "'vms' needs 'items'"),
        ({"reduce": {"command": "x"}}, "'reduce' needs 'items'"),
        ({"items": {}}, "give exactly one of `over:`"),
        ({"items": {"over": "s3://b/p/", "manifest": "m.txt"}}, "give exactly one of `over:`"),
        ({"items": {"over": "http://b/p/"}}, "unknown scheme"),
        ({"items": {"manifest": "../m.txt"}}, "without '..'"),
        ({"items": {"manifest": "/etc/passwd"}}, "without '..'"),
        ({"items": {"over": "s3://b/p/", "per_vm": -1}}, "greater than or equal to 0"),
        ({"items": {"over": "s3://b/p/", "match": "a\tb"}}, "control character"),
        ({"items": {"over": "s3://b/p/"}, "vms": 0}, "greater than or equal to 1"),
        ({"items": {"over": "s3://b/p/"}, "reduce": {"command": ""}}, "at least 1 character"),
        ({"items": {"over": "s3://b/p/"}, "reduce": {"command": "x", "outputs": {"../o": None}}}, "without '..'"),
        ({"items": {"ovr": "s3://b/p/"}}, "unknown field 'items.ovr' (did you mean 'over'?)"),
        ({"items": {"over": "s3://b/p/"}, "reduce": {"command": "x", "output": {}}}, "unknown field 'reduce.output'"),
    ],
)
def test_bad_fanout_fields_are_named_with_the_file(make_job, extra, expected):
    d = make_job({**BASE, **extra})
    with pytest.raises(SpecError) as e:
        load_job(d)
    assert expected in str(e.value) and "job.yaml" in str(e.value)


@pytest.mark.parametrize("name", ["taxi--fan", "a--b", "taxi--s0"])
def test_a_job_name_with_a_double_dash_is_refused(name):
    with pytest.raises(SpecError, match=r"is not a job name.*without '--'"):
        validate({**BASE, "name": name}, "job.yaml")


def test_single_dashes_are_still_fine():
    assert validate({**BASE, "name": "taxi-fan-out"}, "job.yaml").name == "taxi-fan-out"


# --- shard ids -------------------------------------------------------------------------------------------

PARENT = "taxi-fanout-20261201T101500Z-0a1b2c"


def test_shard_ids_are_ordinary_job_ids():
    assert ids.shard_id(PARENT, 0) == "taxi-fanout--s0-20261201T101500Z-0a1b2c"
    assert ids.shard_id(PARENT, 11) == "taxi-fanout--s11-20261201T101500Z-0a1b2c"
    assert ID_RE.fullmatch(ids.shard_id(PARENT, 11))
    assert ids.parent_of("taxi-fanout--s11-20261201T101500Z-0a1b2c") == (PARENT, 11)
    assert ids.parent_of(PARENT) is None and not ids.is_shard(PARENT)


@pytest.mark.parametrize("bad", ["taxi--s01-20261201T101500Z-0a1b2c", "taxi--s-20261201T101500Z-0a1b2c",
                                 "a--b--s1-20261201T101500Z-0a1b2c", "taxi--s1-20261201T101500Z-0a1b2c\n", "taxi--s1"])
def test_near_shard_ids_are_not_shards(bad):
    assert ids.parent_of(bad) is None


@pytest.mark.parametrize("parent, k", [("not an id", 0), ("taxi--s1-20261201T101500Z-0a1b2c", 0), (PARENT, -1), (PARENT, True)])
def test_shard_id_refuses_what_is_not_a_parent_or_a_number(parent, k):
    with pytest.raises(SpecError):
        ids.shard_id(parent, k)


NAMES = st.from_regex(r"[a-z]([a-z0-9]|-(?=[a-z0-9])){0,38}", fullmatch=True).filter(lambda n: not n.endswith("-"))


@given(name=NAMES, ts=st.from_regex(r"\d{8}T\d{6}Z", fullmatch=True), rand=st.from_regex(r"[0-9a-f]{6}", fullmatch=True),
       k=st.integers(0, ids.MAX_SHARD))
def test_shard_ids_round_trip_and_parents_are_not_shards(name, ts, rand, k):
    parent = f"{name}-{ts}-{rand}"
    validate({**BASE, "name": name}, "job.yaml")  # a name a job may have
    assert not ids.is_shard(parent)
    shard = ids.shard_id(parent, k)
    assert ID_RE.fullmatch(shard) and ids.is_shard(shard)
    assert ids.parent_of(shard) == (parent, k)


# --- names -----------------------------------------------------------------------------------------------

def _h(item: str) -> str:
    return hashlib.sha256(item.encode()).hexdigest()[:8]


@pytest.mark.parametrize(
    "item, name",
    [
        ("s3://nyc-tlc/trip data/yellow_tripdata_2012-03.csv", "yellow_tripdata_2012-03.csv"),
        ("gs://b/dir/", "dir"),
        ("plain-line_1.txt", "plain-line_1.txt"),
        ("s3://b/trip data/a b'c\".csv", f"a_b_c_.csv-{_h('s3://b/trip data/a b' + chr(39) + 'c' + chr(34) + '.csv')}"),
        ("foo/bar", f"foo_bar-{_h('foo/bar')}"),
        ("..", f"__-{_h('..')}"),
        (".", f"_-{_h('.')}"),
        ("x" * 101, "x" * 100 + f"-{_h('x' * 101)}"),
        ("ünïcode", f"_n_code-{_h('ünïcode')}"),
    ],
)
def test_safe_names(item, name):
    assert safe_name(item) == name and SAFE_RE.fullmatch(name)


@given(st.text(min_size=1, max_size=300))
def test_safe_names_are_always_safe(item):
    name = safe_name(item)
    assert SAFE_RE.fullmatch(name) and name not in (".", "..") and "/" not in name


@given(st.lists(st.text(alphabet=string.printable + "üé/ ", min_size=1, max_size=120), min_size=2, max_size=30, unique=True))
def test_distinct_names_stay_distinct_after_the_hash_suffix(items):
    raw = {}
    for it in items:  # items with the same basename may share a name; the listing refuses those
        raw.setdefault(raw_name(it), it)
    picked = list(raw.values())
    assert len({safe_name(it) for it in picked}) == len(picked)


# --- manifests -------------------------------------------------------------------------------------------

def test_a_manifest_in_order_blank_lines_skipped_and_matched():
    data = b"s3://b/trip data/yellow_1.csv\n\n  \ns3://b/green_1.csv\r\nyellow 2\n"
    got = from_manifest(data, "jobs/x/items.txt", "yellow*")
    assert [(i.item, i.name, i.size) for i in got] == [
        ("s3://b/trip data/yellow_1.csv", "yellow_1.csv", None), ("yellow 2", f"yellow_2-{_h('yellow 2')}", None)]


@pytest.mark.parametrize(
    "data, expected",
    [
        (b"", "items.txt: it holds no items"),
        (b"\n \n", "items.txt: it holds no items"),
        (b"a\nb\n", "items.txt: none of its 2 items match 'z*'"),
        (b"a\nb\na\n", "items.txt, line 3: item 'a' is listed twice (first on line 1)"),
        (b"s3://x/a.csv\ns3://y/a.csv\n", "items 's3://x/a.csv' and 's3://y/a.csv' have the same name 'a.csv'"),
        (b"ok\n\xff\xfe\n", "items.txt: not UTF-8 text (line 2"),
        (b"ok\na\tb\n", "items.txt, line 2: item 'a\\tb' contains the control character '\\t'"),
        (b"ok\na\rb\n", "contains the control character '\\r'"),
        (b"ok\na\x1bb\n", "contains the control character '\\x1b'"),
        ("ok\na\u2028b\n".encode(), "contains the control character '\\u2028'"),
    ],
)
def test_manifest_refusals_name_the_file_and_the_item(data, expected):
    with pytest.raises(SpecError) as e:
        from_manifest(data, "items.txt", "z*" if b"none" in expected.encode() else "*")
    assert expected in str(e.value)


def test_a_frozen_manifest_round_trips():
    items = [Item("s3://b/a b.csv", safe_name("s3://b/a b.csv"), 10), Item("s3://b/ü.csv", safe_name("s3://b/ü.csv"), None)]
    data = manifest_bytes(items)
    assert [json.loads(line) for line in data.decode().splitlines()][0] == {"name": items[0].name, "item": "s3://b/a b.csv", "size": 10}
    assert read_manifest(data) == items
    assert items_tsv(items) == f"{items[0].name}\ts3://b/a b.csv\n{items[1].name}\ts3://b/ü.csv\n".encode()


@pytest.mark.parametrize(
    "line, expected",
    [
        ("not json", "line 2: not JSON"),
        ("[1, 2]", "line 2: not an object with exactly name, item and size"),
        ('{"name": "a", "item": "a", "size": 1, "x": 1}', "not an object with exactly"),
        ('{"name": "../etc", "item": "a", "size": 1}', "line 2: the name '../etc' is not the safe name of its item"),
        ('{"name": "x", "item": "a\\nb", "size": 1}', "line 2: the item is not a string without control characters"),
        ('{"name": "b", "item": "b", "size": -1}', "line 2: the size '-1' is not a byte count"),
        ('{"name": "b", "item": "b", "size": true}', "is not a byte count"),
        ('{"name": "a", "item": "a", "size": null}', "line 2: the name 'a' is already on line 1"),
    ],
)
def test_a_bad_frozen_manifest_line_is_named(line, expected):
    with pytest.raises(RecordError) as e:
        read_manifest(f'{{"name": "a", "item": "a", "size": 1}}\n{line}\n'.encode())
    assert expected in str(e.value)


def test_an_empty_or_binary_frozen_manifest_is_a_bad_record():
    with pytest.raises(RecordError, match="holds no items"):
        read_manifest(b"")
    with pytest.raises(RecordError, match="line 1: not UTF-8"):
        read_manifest(b"\xff")


def test_missing_is_the_manifest_minus_the_done_names_in_order():
    items = [Item(x, x) for x in "abcde"]
    assert missing(items, {"b", "d", "zz"}) == [items[0], items[2], items[4]]


# --- listings --------------------------------------------------------------------------------------------

def test_a_listing_gives_full_uris_sizes_and_skips_folder_keys():
    keys = [("2012/yellow_1.csv", 300), ("2012/", 0), ("green_1.csv", 5), ("yellow 2.csv", 7)]
    got = from_listing("s3://nyc-tlc/trip data/", keys, "yellow*")
    assert got == [Item("s3://nyc-tlc/trip data/2012/yellow_1.csv", "yellow_1.csv", 300),
                   Item("s3://nyc-tlc/trip data/yellow 2.csv", f"yellow_2.csv-{_h('s3://nyc-tlc/trip data/yellow 2.csv')}", 7)]


def test_listing_refusals_name_the_prefix():
    with pytest.raises(SpecError, match=r"s3://b/p/: it holds no items"):
        from_listing("s3://b/p/", [("sub/", 0)], "*")
    with pytest.raises(SpecError, match=r"s3://b/p/: none of its 1 items match 'y\*'"):
        from_listing("s3://b/p/", [("a", 1)], "y*")
    with pytest.raises(SpecError, match="the same name 'a.csv'"):
        from_listing("s3://b/p/", [("x/a.csv", 1), ("y/a.csv", 1)], "*")
    with pytest.raises(SpecError, match="control character"):
        from_listing("s3://b/p/", [("a\nb", 1)], "*")
    assert len(from_listing("s3://b/p/", [("a\nb", 1), ("c", 1)], "c")) == 1  # what match leaves out is not checked


def _spec_items(**items):
    return validate({**BASE, "items": items}, "job.yaml").items


def test_list_items_reads_the_manifest_inside_the_job_folder_only(make_job, tmp_path):
    d = make_job(BASE, {"items.txt": "a\nb\n", "sub/more.txt": "c\n"})
    assert [i.item for i in list_items(_spec_items(manifest="items.txt"), d, f"file://{tmp_path}/store")] == ["a", "b"]
    assert [i.item for i in list_items(_spec_items(manifest="sub/more.txt"), d, "s3://unused")] == ["c"]
    (tmp_path / "outside.txt").write_text("secret\n")
    (d / "link.txt").symlink_to(tmp_path / "outside.txt")
    with pytest.raises(SpecError, match="leads out of the job folder"):
        list_items(_spec_items(manifest="link.txt"), d, "s3://unused")
    with pytest.raises(SpecError, match="is not a file"):
        list_items(_spec_items(manifest="nope.txt"), d, "s3://unused")


def test_list_items_lists_a_store_relative_prefix_with_sizes(make_job, tmp_path):
    root = f"file://{tmp_path}/my store"
    store = open_store(root)
    store.put_bytes("data/trip data/b.csv", b"12345")
    store.put_bytes("data/trip data/2012/a.csv", b"1")
    store.put_bytes("data/other.csv", b"1")
    got = list_items(_spec_items(over="data/trip data"), make_job(BASE), root)
    assert got == [Item(f"{root}/data/trip data/2012/a.csv", "a.csv", 1), Item(f"{root}/data/trip data/b.csv", "b.csv", 5)]
    with pytest.raises(SpecError, match=r"/my store/data/empty/: it holds no items"):
        list_items(_spec_items(over="data/empty/"), make_job(BASE), root)


@pytest.mark.parametrize("kind", ["s3", "gs"])
def test_list_sizes_on_the_cloud_stores(request, kind):
    if kind == "s3":
        _, bucket = request.getfixturevalue("s3")
    else:
        request.getfixturevalue("google")
        _, bucket = request.getfixturevalue("gcs")
    store = open_store(f"{kind}://{bucket}/some prefix")
    store.put_bytes("trip data/a.csv", b"123")
    store.put_bytes("trip data/sub/b.csv", b"")
    store.put_bytes("trip datax/c.csv", b"1")
    assert store.list_sizes("trip data/") == [("trip data/a.csv", 3), ("trip data/sub/b.csv", 0)]
    listed = open_store(f"{kind}://{bucket}/some prefix/trip data/").list_sizes("")
    assert listed == [("a.csv", 3), ("sub/b.csv", 0)]
    got = list_items(_spec_items(over=f"{kind}://{bucket}/some prefix/trip data/"), ".", "file:///unused")
    assert [(i.item, i.size) for i in got] == [(f"{kind}://{bucket}/some prefix/trip data/a.csv", 3),
                                               (f"{kind}://{bucket}/some prefix/trip data/sub/b.csv", 0)]


def test_file_list_sizes_matches_list(tmp_path):
    store = open_store(f"file://{tmp_path}/s")
    store.put_bytes("p/a", b"12")
    store.put_bytes("p/q/b", b"")
    assert store.list_sizes("p") == [("p/a", 2), ("p/q/b", 0)]
    assert [k for k, _ in store.list_sizes("p")] == store.list("p")
    assert store.list_sizes("nope/") == [] and store.list_sizes("../x") == []


# --- the dry run's lines ---------------------------------------------------------------------------------

def test_describe_plan_counts_bytes_caps_and_prices_for_all_vms():
    items = [Item(f"i{k}", f"i{k}", 10 * k) for k in range(1, 4)]
    out = describe_plan(items, [[items[2]], [items[0], items[1]]], vms_requested=5,
                        quote={"spot_usd_per_hour": 0.5, "max_cost_spot_usd": 1.25, "on_demand_usd_per_hour": None, "region": "x"})
    assert out["items"] == 3 and out["items_bytes"] == 60 and out["vms"] == 2
    assert out["vms_note"] == "capped at the number of items (3), from 5 asked for"
    assert out["per_vm"] == ["vm 0: 1 items, 30 bytes", "vm 1: 2 items, 30 bytes"]
    assert out["all_vms_spot_usd_per_hour"] == 1.0 and out["all_vms_max_cost_spot_usd"] == 2.5
    assert "all_vms_on_demand_usd_per_hour" not in out and "all_vms_region" not in out


def test_describe_plan_with_unknown_sizes_and_many_vms():
    items = [Item(f"i{k}", f"i{k}") for k in range(30)]
    out = describe_plan(items, [[it] for it in items])
    assert out["items_bytes"] is None and "vms_note" not in out
    assert len(out["per_vm"]) == 21 and out["per_vm"][0] == "vm 0: 1 items, size unknown"
    assert out["per_vm"][-1] == "... and 10 more VMs"


def test_dry_run_of_a_fanout_shows_items_bytes_and_each_vms_share(runner_home, make_job):
    data = runner_home / "store" / "data" / "trip data"
    data.mkdir(parents=True)
    for name, size in (("a.csv", 300), ("b.csv", 200), ("c.csv", 100), ("d.csv", 100)):
        (data / name).write_bytes(b"x" * size)
    d = make_job({**BASE, "items": {"over": "data/trip data/"}})
    r = run_cli("launch", str(d), "--cloud", "sandbox", "--dry-run", "--json", "--vms", "2")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert (out["items"], out["items_bytes"], out["vms"]) == (4, 700, 2)
    assert out["per_vm"] == ["vm 0: 2 items, 400 bytes", "vm 1: 2 items, 300 bytes"]
    r = run_cli("launch", str(d), "--cloud", "sandbox", "--dry-run", "--vms", "9")
    assert r.returncode == 0, r.stderr
    assert "capped at the number of items (4), from 9 asked for" in r.stdout
    assert not (runner_home / "store" / "jobs").exists()


@pytest.mark.parametrize("vms, expected", [("2", "'vms' needs 'items'"), ("0", "command line: field 'vms'")])
def test_the_vms_flag_is_checked_like_the_file(make_job, vms, expected):
    r = run_cli("launch", str(make_job(BASE)), "--cloud", "sandbox", "--dry-run", "--vms", vms)
    assert r.returncode == 2 and expected in r.stderr, r.stderr
