"""Gitignore patterns (.gitignore, .runnerignore): which paths of a job's folder stay on this machine.

The syntax is git's: '#' comments, '!' re-includes, a trailing '/' matches folders only, a '/' at the
start or in the middle anchors the pattern to the file's folder, '*' '?' '[a-z]' stop at '/', and
'**' spans folders ('**/x', 'x/**', 'a/**/b'). A later pattern beats an earlier one and a deeper
file beats a shallower one, as in git; a folder left out is not looked into, so nothing below it
can be re-included. Paths are relative to the folder that holds the patterns, '/'-separated.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Rule:
    """One pattern line: a path matcher, whether it re-includes, whether it matches folders only."""

    regex: re.Pattern
    negate: bool
    dir_only: bool
    where: str  # "FILE:LINE", for messages

    def matches(self, path: str, is_dir: bool) -> bool:
        return (is_dir or not self.dir_only) and self.regex.fullmatch(path) is not None


def _class(pattern: str, i: int) -> tuple[str, int] | None:
    """A '[...]' at `i` as a regex class (never matching '/') and the index after it; None if unclosed."""
    j = i + 1
    if j < len(pattern) and pattern[j] in "!^":
        j += 1
    if j < len(pattern) and pattern[j] == "]":
        j += 1
    j = pattern.find("]", j)
    if j < 0:
        return None
    body = pattern[i + 1:j]
    negate = body[:1] in ("!", "^")
    body = body[1:] if negate else body
    body = body.replace("\\", "\\\\").replace("[", "\\[")
    return f"(?!/)[{'^' if negate else ''}{body}]", j + 1


def translate(pattern: str) -> str:
    """A glob (without its leading '/' or trailing '/') as a regex over '/'-separated paths."""
    out, i, n = [], 0, len(pattern)
    while i < n:
        at_start = i == 0 or pattern[i - 1] == "/"
        if at_start and pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif at_start and pattern.startswith("**", i) and i + 2 == n:
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            while i < n and pattern[i] == "*":
                i += 1
            out.append("[^/]*")
        elif pattern[i] == "?":
            out.append("[^/]")
            i += 1
        elif pattern[i] == "[" and (cls := _class(pattern, i)):
            out.append(cls[0])
            i = cls[1]
        elif pattern[i] == "\\" and i + 1 < n:
            out.append(re.escape(pattern[i + 1]))
            i += 2
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return "".join(out)


def parse_line(line: str, where: str = "") -> Rule | None:
    """One line of an ignore file as a Rule; None for blanks and comments."""
    line = line.rstrip("\r\n")
    if not line.strip() or line.startswith("#"):
        return None
    line = re.sub(r"(?<!\\)[ \t]+\Z", "", line)  # trailing blanks count only when escaped
    negate = line.startswith("!")
    if negate:
        line = line[1:]
    dir_only = line.endswith("/")
    line = line.rstrip("/")
    if not line:
        return None
    anchored = "/" in line
    regex = translate(line.lstrip("/"))
    if not anchored:
        regex = "(?:.*/)?" + regex
    try:
        return Rule(re.compile(regex, re.DOTALL), negate, dir_only, where)
    except re.error:
        return None  # git ignores a pattern it cannot read, and so do we


def parse(text: str, source: str = "") -> list[Rule]:
    """Every pattern of an ignore file's text, in order."""
    rules = (parse_line(line, f"{source}:{n}") for n, line in enumerate(text.splitlines(), 1))
    return [r for r in rules if r]


@dataclass
class Patterns:
    """The rules of one ignore file, for the paths below `base` ('' : the job's folder; 'a/b/' : a subfolder).

    `outside` is the job folder's path relative to a file above it (e.g. 'jobs/taxi/' for the
    repository's own .gitignore), so that file's anchored patterns still see the paths it knows.
    """

    rules: list[Rule]
    base: str = ""
    outside: str = ""

    def verdict(self, path: str, is_dir: bool) -> Rule | None:
        """The last rule that matches `path` (relative to the job's folder), or None."""
        if not path.startswith(self.base):
            return None
        local = self.outside + path[len(self.base):]
        for rule in reversed(self.rules):
            if rule.matches(local, is_dir):
                return rule
        return None


KINDS = ("default", "git", "runner")  # lowest precedence first


@dataclass
class Ignore:
    """Ignore files by kind: .runnerignore files beat .gitignore files, which beat the defaults."""

    layers: dict[str, list[Patterns]] = field(default_factory=lambda: {k: [] for k in KINDS})

    def add(self, kind: str, patterns: Patterns) -> None:
        self.layers[kind].append(patterns)

    def rule_for(self, path: str, is_dir: bool) -> Rule | None:
        """The rule that decides `path`: within a kind, the deepest file with a match, its last match."""
        for kind in reversed(KINDS):
            for layer in reversed(self.layers[kind]):
                rule = layer.verdict(path, is_dir)
                if rule:
                    return rule
        return None

    def ignored(self, path: str, is_dir: bool) -> bool:
        rule = self.rule_for(path, is_dir)
        return bool(rule) and not rule.negate
