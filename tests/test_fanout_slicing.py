"""Slices by bytes with no backend: largest first into the least-loaded VM, capped at the items, deterministic."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from runner.errors import SpecError
from runner.fanout.items import Item
from runner.fanout.slicing import slices, vm_count, weights


def _items(sizes):
    return [Item(f"s3://b/f{k}", f"f{k}", s) for k, s in enumerate(sizes)]


def _load(part, w, items):
    index = {it.name: k for k, it in enumerate(items)}
    return sum(w[index[it.name]] for it in part)


def test_bytes_not_counts_decide_the_slices():
    items = _items([3000, 100, 100, 100, 100, 100, 2500])
    got = slices(items, 2)
    assert [[it.name for it in s] for s in got] == [["f0"], ["f1", "f2", "f3", "f4", "f5", "f6"]]


def test_vms_are_capped_at_the_items_and_none_is_empty():
    items = _items([5, 0, 0])
    assert vm_count(items, 12) == 3
    got = slices(items, 12)
    assert len(got) == 3 and all(got)
    assert slices([], 4) == []


@pytest.mark.parametrize("vms", [0, -1, True, "2"])
def test_a_bad_vm_count_is_refused(vms):
    with pytest.raises(SpecError, match="whole number of VMs"):
        slices(_items([1]), vms)


def test_unknown_sizes_count_as_the_mean_of_the_known_or_one():
    assert weights(_items([10, None, 30])) == [10, 20, 30]
    assert weights(_items([None, None])) == [1, 1]
    got = slices(_items([None] * 7), 3)
    assert sorted(len(s) for s in got) == [2, 2, 3]


def test_slices_are_deterministic_and_keep_listing_order():
    items = _items([7, 3, 9, 1, 4, 4, 8, 2])
    assert slices(items, 3) == slices(list(items), 3)
    for s in slices(items, 3):
        assert s == sorted(s, key=items.index)


SIZES = st.lists(st.one_of(st.none(), st.integers(0, 3 * 10**9)), min_size=1, max_size=200)


@given(sizes=SIZES, vms=st.integers(1, 300))
def test_no_vm_holds_more_than_the_mean_plus_one_largest_item(sizes, vms):
    items = _items(sizes)
    got = slices(items, vms)
    w = weights(items)
    assert len(got) == min(vms, len(items))
    assert all(got)  # no empty slice
    assert sorted(it.name for s in got for it in s) == sorted(it.name for it in items)  # every item exactly once
    mean = sum(w) / len(got)
    assert max(_load(s, w, items) for s in got) <= mean + max(w)
