"""runner.children: the ids, numbers, records and cancelling of a fan-out's shards and a cluster's nodes."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from runner import children, jobs
from runner.children import NODES, SHARDS
from runner.cluster import ids as node_ids
from runner.errors import RunnerError, SpecError
from runner.fanout import ids as shard_ids
from runner.providers.base import Instance
from runner.store import FileStore

PARENT = "taxi-20261201T101500Z-3fa9c2"
SPEC = {"name": "taxi", "command": "true"}


@pytest.fixture
def store(runner_home):
    return FileStore(f"file://{runner_home}/store")


def test_each_kind_names_its_children_with_its_letter():
    assert children.child_id(PARENT, SHARDS, 12) == "taxi--s12-20261201T101500Z-3fa9c2" == shard_ids.shard_id(PARENT, 12)
    assert children.child_id(PARENT, NODES, 0) == "taxi--n0-20261201T101500Z-3fa9c2" == node_ids.node_id(PARENT, 0)
    assert children.parent_of("taxi--n63-20261201T101500Z-3fa9c2") == (PARENT, NODES, 63)
    assert children.parent_of("taxi--s999999-20261201T101500Z-3fa9c2") == (PARENT, SHARDS, 999999)
    assert shard_ids.parent_of("taxi--n1-20261201T101500Z-3fa9c2") is None and node_ids.parent_of("taxi--s1-20261201T101500Z-3fa9c2") is None
    assert shard_ids.MAX_SHARD == 999_999 and node_ids.MAX_NODES == 64


@pytest.mark.parametrize("kind, k, message", [
    (SHARDS, 1_000_000, "shard 1000000 of taxi-20261201T101500Z-3fa9c2: a shard number is an integer from 0 to 999999"),
    (NODES, 64, "node 64 of taxi-20261201T101500Z-3fa9c2: a node number is an integer from 0 (the head) to 63"),
    (NODES, -1, "node -1 of"), (SHARDS, True, "shard True of"), (NODES, 1.0, "node 1.0 of"), (SHARDS, "1", "shard '1' of"),
])
def test_a_number_out_of_the_kinds_bound_is_refused_with_the_bound(kind, k, message):
    with pytest.raises(SpecError, match="^" + message.replace("(", r"\(").replace(")", r"\)")):
        children.child_id(PARENT, kind, k)


@pytest.mark.parametrize("kind", [SHARDS, NODES])
@pytest.mark.parametrize("parent", ["taxi--s1-20261201T101500Z-3fa9c2", "taxi--n1-20261201T101500Z-3fa9c2", PARENT + "\n", "../x", ""])
def test_a_child_or_a_non_id_is_no_parent(kind, parent):
    with pytest.raises(SpecError, match=f"is not the id of a {kind.parent}"):
        children.child_id(parent, kind, 0)


@pytest.mark.parametrize("bad", ["taxi--n64-20261201T101500Z-3fa9c2", "taxi--n01-20261201T101500Z-3fa9c2", "taxi--s0000000-20261201T101500Z-3fa9c2",
                                 "taxi--s1000000-20261201T101500Z-3fa9c2", "a--b--n1-20261201T101500Z-3fa9c2", "taxi--x1-20261201T101500Z-3fa9c2",
                                 "taxi--n1-20261201T101500Z-3fa9c2\n", PARENT, "taxi--n1"])
def test_near_child_ids_are_no_children(bad):
    assert children.parent_of(bad) is None


NAMES = st.from_regex(r"[a-z]([a-z0-9]|-(?=[a-z0-9])){0,38}", fullmatch=True).filter(lambda n: not n.endswith("-"))


@given(name=NAMES, ts=st.from_regex(r"\d{8}T\d{6}Z", fullmatch=True), rand=st.from_regex(r"[0-9a-f]{6}", fullmatch=True),
       kind=st.sampled_from(children.KINDS), data=st.data())
def test_child_ids_of_both_kinds_round_trip(name, ts, rand, kind, data):
    parent, k = f"{name}-{ts}-{rand}", data.draw(st.integers(0, kind.bound - 1))
    child = children.child_id(parent, kind, k)
    assert jobs.check_job_id(child) == child and children.parent_of(parent) is None
    assert children.parent_of(child) == (parent, kind, k)


def test_numbers_come_from_the_kinds_folder_and_nothing_else_there(store):
    for leaf in ("0", "2", "10", "1000000", "x", "-1", "٣", "2a"):
        store.put_bytes(jobs.job_key(PARENT, "shards", leaf), b"{}")
    for leaf in ("1", "63", "64", "100"):
        store.put_bytes(jobs.job_key(PARENT, "nodes", leaf), b"{}")
    assert children.numbers(store, PARENT, SHARDS) == [0, 2, 10]
    assert children.numbers(store, PARENT, NODES) == [1, 63]
    assert children.numbers(store, "other-20261201T101500Z-3fa9c2", SHARDS) == []


@pytest.mark.parametrize("record, kind", [({"fanout": {"vms": 2}}, SHARDS), ({"cluster": {"nodes": 2}}, NODES),
                                          ({"fanout": {}, "cluster": {}}, SHARDS), ({"fanout": [1]}, None), ({}, None)])
def test_the_parents_kind_is_the_first_record_that_is_a_dict(store, record, kind):
    jobs.write_json(store, PARENT, "job.json", record)
    assert children.parent_kind(store, PARENT) is kind
    assert children.record_of(store, PARENT, NODES) == (record.get("cluster") if isinstance(record.get("cluster"), dict) else None)


def test_a_missing_or_garbage_job_json_makes_no_parent(store):
    assert children.parent_kind(store, PARENT) is None and children.record_of(store, PARENT, SHARDS) is None
    store.put_bytes(jobs.job_key(PARENT, "job.json"), b"\xff not json")
    assert children.parent_kind(store, PARENT) is None and children.record_of(store, PARENT, SHARDS) is None


def test_read_parent_refuses_another_kind_and_a_record_without_spec(store):
    jobs.write_json(store, PARENT, "job.json", {"cluster": {"nodes": 2}, "spec": SPEC, "cloud": "sandbox"})
    record, spec = children.read_parent(store, PARENT, NODES, lambda c: c["nodes"] == 2, "no")
    assert record["cluster"] == {"nodes": 2} and spec.name == "taxi"
    with pytest.raises(SpecError, match="^not a fan-out$"):
        children.read_parent(store, PARENT, SHARDS, lambda f: True, "not a fan-out")
    with pytest.raises(SpecError, match="^too few$"):
        children.read_parent(store, PARENT, NODES, lambda c: False, "too few")
    jobs.write_json(store, PARENT, "job.json", {"cluster": {"nodes": 2}, "spec": "rm -rf /", "cloud": "sandbox"})
    with pytest.raises(SpecError, match=f"job.json of {PARENT} holds no spec \\(a str\\)"):
        children.read_parent(store, PARENT, NODES, lambda c: True, "no")


@pytest.mark.parametrize("cloud, shown", [(["aws"], "['aws']"), ("azure", "azure"), (None, "None"), ({"a": 1}, "{'a': 1}")])
def test_read_parent_refuses_a_record_naming_no_known_backend(store, cloud, shown):
    jobs.write_json(store, PARENT, "job.json", {"cluster": {"nodes": 2}, "spec": SPEC, "cloud": cloud})
    with pytest.raises(SpecError) as e:
        children.read_parent(store, PARENT, NODES, lambda c: True, "no")
    assert str(e.value) == f"job.json of {PARENT} names an unknown cloud {shown!r}"


@pytest.mark.parametrize("kind, order", [(SHARDS, [0, 1, 5]), (NODES, [5, 1, 0])])
def test_cancel_children_cancels_each_in_the_kinds_order_then_the_parent(store, kind, order):
    for k in (1, 5, 0):
        store.put_bytes(jobs.job_key(PARENT, kind.folder, str(k)), b"{}")
    jobs.write_status(store, PARENT, jobs.Status(jobs.RUNNING, started_at="2026-12-01T10:15:00Z"))
    seen = []

    def cancel_one(child):
        seen.append(child)
        if child.startswith(f"taxi--{kind.letter}1-"):
            raise RunnerError("the store said no")
        return [f"{child}: CANCELLED"]

    state, lines = children.cancel_children(store, PARENT, jobs.read_status(store, PARENT), kind, "told to", cancel_one)
    assert seen == [children.child_id(PARENT, kind, k) for k in order]
    assert f"{PARENT}: {kind.noun} 1 could not be cancelled: the store said no" in lines
    assert state == jobs.CANCELLED and lines[-1] == f"{PARENT}: CANCELLED"
    st = jobs.read_status(store, PARENT)
    assert (st.state, st.exit_code, st.reason, st.started_at) == (jobs.CANCELLED, 130, "told to", "2026-12-01T10:15:00Z")


def test_a_parent_that_ended_while_its_children_were_cancelled_keeps_its_state(store):
    store.put_bytes(jobs.job_key(PARENT, "nodes", "0"), b"{}")
    started = jobs.Status(jobs.RUNNING)
    jobs.write_status(store, PARENT, started)

    def head_ends(child):
        jobs.write_status(store, PARENT, jobs.Status(jobs.SUCCEEDED, exit_code=0, ended_at=jobs.utcnow()))
        return []

    state, lines = children.cancel_children(store, PARENT, started, NODES, "told to", head_ends)
    assert state == jobs.SUCCEEDED and jobs.read_status(store, PARENT).state == jobs.SUCCEEDED
    assert lines == [f"{PARENT} already ended: SUCCEEDED (it had already finished, while being cancelled); it stays SUCCEEDED"]


def test_a_childs_rate_is_its_vms_else_the_planned_one_and_only_a_number(store):
    child = children.child_id(PARENT, NODES, 1)
    assert children.rate(store, child, None) is None
    jobs.write_json(store, child, "job.json", {"usd_per_hour": 0.5})
    assert children.rate(store, child, None) == 0.5
    assert children.rate(store, child, Instance("aws", "i-1", child, data={"usd_per_hour": 2})) == 2.0
    for hostile in (True, "3", [1]):
        jobs.write_json(store, child, "job.json", {"usd_per_hour": hostile})
        assert children.rate(store, child, None) is None
    store.put_bytes(jobs.job_key(child, "job.json"), json.dumps([1]).encode())
    assert children.rate(store, child, None) is None
