"""Slices: the items split over the VMs by bytes, largest first into the least-loaded VM; deterministic."""

from __future__ import annotations

import heapq

from runner.errors import SpecError
from runner.fanout.items import Item


def vm_count(items: list[Item], vms: int) -> int:
    """The VMs a run starts: `vms`, capped at the number of items (a VM with nothing to do is not started)."""
    if isinstance(vms, bool) or not isinstance(vms, int) or vms < 1:
        raise SpecError(f"vms {vms!r}: give a whole number of VMs, at least 1")
    return min(vms, len(items))


def weights(items: list[Item]) -> list[int]:
    """Each item's weight: its size, or the mean of the known sizes when unknown (1 when none is known)."""
    known = [it.size for it in items if it.size is not None]
    fill = max(1, round(sum(known) / len(known))) if known else 1
    return [fill if it.size is None else it.size for it in items]


def slices(items: list[Item], vms: int) -> list[list[Item]]:
    """The items over min(vms, len(items)) VMs, none empty, each in listing order; len(result) is the cap."""
    n = vm_count(items, vms)
    if n == 0:
        return []
    w = weights(items)
    order = sorted(range(len(items)), key=lambda i: (-w[i], i))  # largest first, ties in listing order
    loads = [(0, 0, k) for k in range(n)]  # (bytes, items, vm): least bytes, then fewest items, then lowest vm
    chosen: list[list[int]] = [[] for _ in range(n)]
    for i in order:
        load, count, k = heapq.heappop(loads)
        chosen[k].append(i)
        heapq.heappush(loads, (load + w[i], count + 1, k))
    return [[items[i] for i in sorted(idx)] for idx in chosen]
