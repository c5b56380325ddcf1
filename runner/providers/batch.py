"""A batch: the shards of one fan-out launched together, in as few cloud calls as the cloud allows (`launch_batch`)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from runner.errors import CapacityError, QuotaError, SpecError
from runner.providers.base import Instance, LaunchRequest


@dataclass(frozen=True)
class Batch:
    """Shards `numbers[i]` of the fan-out `parent`, each with its request `reqs[i]` (the same machine, market and place).

    `user_data(shards)` renders the bootstrap every VM of one call shares: the VM finds its own shard number in
    `shards` (a range of shard numbers) at boot, from its launch index (EC2) or its name (GCE).
    """

    parent: str
    numbers: tuple[int, ...]
    reqs: tuple[LaunchRequest, ...]
    user_data: Callable[[range], str]

    def __post_init__(self) -> None:
        if not self.reqs or len(self.numbers) != len(self.reqs) or len(set(self.numbers)) != len(self.numbers):
            raise SpecError(f"a batch of {self.parent} needs one request per distinct shard number "
                            f"(got {len(self.numbers)} numbers, {len(self.reqs)} requests)")

    def request(self, k: int) -> LaunchRequest:
        """Shard k's request."""
        return self.reqs[self.numbers.index(k)]


Result = Instance | Exception  # a shard's VM, or why it has none (a RunnerError)


def runs(numbers: Sequence[int]) -> list[list[int]]:
    """Sorted shard numbers split where they are not consecutive: [0, 1, 2, 5, 6] -> [[0, 1, 2], [5, 6]]."""
    out: list[list[int]] = []
    for k in sorted(numbers):
        if out and k == out[-1][-1] + 1:
            out[-1].append(k)
        else:
            out.append([k])
    return out


def span(numbers: Sequence[int]) -> range:
    """The smallest range holding every number."""
    return range(min(numbers), max(numbers) + 1)


def tried(failed: Iterable[tuple[object, Exception]]) -> list[str]:
    """Each failed zone attempt as `<attempt>: <its error's code>`."""
    return [f"{f}: {getattr(e, 'code', '')}" for f, e in failed]


def unplaced(left: Sequence[int], failed: list[tuple[object, Exception]], req: LaunchRequest, fallback: bool, where: str,
             instead: str, scope: str) -> dict[int, Result]:
    """Why each shard still `left` after every zone attempt has no VM: QuotaError when only quotas refused, else
    CapacityError; `where` follows the instance type ("" or " in <region>"), `instead` what else to try."""
    done = "; ".join(tried(failed)) or "no attempt"
    hint = "allow on-demand with --spot-fallback, or " if req.spot and not fallback else ""
    kind = QuotaError if failed and all(isinstance(e, QuotaError) for _, e in failed) else CapacityError
    return {k: kind(f"could not start a {req.instance_type}{where} for shard {k}: tried {done}; {hint}try another {instead}, "
                    "or fewer VMs (--vms)", scope=scope) for k in left}
