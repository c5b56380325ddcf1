"""Reading job.yaml: bounded, plain YAML (no anchors, aliases or repeated keys); every problem is one line."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from yaml.events import AliasEvent, CollectionStartEvent
from yaml.nodes import MappingNode

from runner.errors import SpecError

MAX_YAML_BYTES = 1 << 20  # a job.yaml is a few hundred bytes; data and code live beside it
MAX_DEPTH = 32  # a job spec nests three levels
MAX_INT_DIGITS = 30


class Refused(yaml.YAMLError):
    """A construct that a job.yaml never needs, with where it is."""

    def __init__(self, what: str, mark: Any, hint: str = "") -> None:
        super().__init__(what)
        self.what = f"{what} (line {mark.line + 1}, column {mark.column + 1}){hint}"


class JobLoader(yaml.SafeLoader):
    """SafeLoader without anchors/aliases (no billion laughs), repeated keys, deep nesting or huge integers."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent, index):
        event = self.peek_event()
        if isinstance(event, AliasEvent) or getattr(event, "anchor", None):
            sign = "*" if isinstance(event, AliasEvent) else "&"
            raise Refused(f"anchors and aliases ({sign}{event.anchor[:40]}) are not allowed in a job.yaml", event.start_mark, "; write the value out")
        if isinstance(event, CollectionStartEvent):
            self._depth += 1
            if self._depth > MAX_DEPTH:
                raise Refused(f"lists and mappings nested deeper than {MAX_DEPTH} levels", event.start_mark)
            try:
                return super().compose_node(parent, index)
            finally:
                self._depth -= 1
        return super().compose_node(parent, index)

    def construct_mapping(self, node: MappingNode, deep: bool = False) -> dict:
        seen: dict[Any, Any] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                raise Refused("merge keys (<<) are not allowed in a job.yaml", key_node.start_mark, "; write the keys out")
            key = self.construct_object(key_node, deep=True)
            try:
                first = seen.setdefault(key, key_node.start_mark)
            except TypeError:
                continue  # an unhashable key: the base class says so
            if first is not key_node.start_mark:
                raise Refused(f"duplicate key {repr(key)[:60]}", key_node.start_mark, f"; it is first on line {first.line + 1}: keep one")
        return super().construct_mapping(node, deep)

    def construct_yaml_int(self, node):
        digits = sum(c.isalnum() for c in str(node.value))  # 0x/0o/0b prefixes and hex digits count too
        if digits > MAX_INT_DIGITS:
            raise Refused(f"an integer of {digits} digits", node.start_mark, f"; no setting takes more than {MAX_INT_DIGITS}")
        return super().construct_yaml_int(node)


JobLoader.add_constructor("tag:yaml.org,2002:int", JobLoader.construct_yaml_int)


def _where(mark: Any) -> str:
    return f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def read_job_yaml(path: Path) -> Any:
    """The parsed document at `path` (a job.yaml); SpecError, one line naming the file, for anything else."""
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_YAML_BYTES + 1)
            if len(raw) > MAX_YAML_BYTES:
                f.seek(0, 2)
                size = f.tell()
                raise SpecError(
                    f"{path}: is {size / (1 << 20):.1f} MiB; a job.yaml holds at most {MAX_YAML_BYTES >> 10} KiB of settings "
                    "(put data and code beside it in the job's folder)"
                )
    except OSError as e:
        raise SpecError(f"{path}: cannot read it: {e.strerror or e}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise SpecError(f"{path}: not UTF-8 text (byte {e.start}: {raw[e.start:e.start + 1]!r}); save it as UTF-8") from None
    try:
        loader = JobLoader(text)
        try:
            return loader.get_single_data()
        finally:
            loader.dispose()
    except Refused as e:
        raise SpecError(f"{path}: {e.what}") from None
    except yaml.MarkedYAMLError as e:
        problem = _one_line(e.problem or e.context or "syntax error")
        raise SpecError(f"{path}: not valid YAML{_where(e.problem_mark)}: {problem}") from None
    except yaml.YAMLError as e:
        raise SpecError(f"{path}: not valid YAML: {_one_line(e)}"[:300]) from None
    except (RecursionError, MemoryError):
        raise SpecError(f"{path}: nested too deeply to read (at most {MAX_DEPTH} levels)") from None
    except (ValueError, OverflowError) as e:
        raise SpecError(f"{path}: a value cannot be read: {_one_line(e)}"[:300]) from None
