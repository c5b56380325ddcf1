"""Gitignore patterns as git reads them: a table of pattern, path and verdict, with no folder on disk."""

from __future__ import annotations

import pytest

from runner.ignore import Ignore, Patterns, parse, parse_line

# (pattern, path, is_dir, matches)
TABLE = [
    ("*.log", "a.log", False, True),
    ("*.log", "deep/er/a.log", False, True),
    ("*.log", "a.log.txt", False, False),
    ("/top.txt", "top.txt", False, True),
    ("/top.txt", "sub/top.txt", False, False),
    ("doc/frotz", "doc/frotz", True, True),
    ("doc/frotz", "a/doc/frotz", True, False),  # a middle '/' anchors
    ("build/", "build", True, True),
    ("build/", "build", False, False),  # folders only
    ("build/", "src/build", True, True),
    ("**/cache", "cache", True, True),
    ("**/cache", "x/y/cache", True, True),
    ("logs/**", "logs/a/b.txt", False, True),
    ("logs/**", "logs", True, False),
    ("a/**/b", "a/b", False, True),
    ("a/**/b", "a/x/y/b", False, True),
    ("a/**/b", "ab", False, False),
    ("a*b", "a/b", False, False),  # '*' stops at '/'
    ("file?.txt", "file1.txt", False, True),
    ("file?.txt", "file/.txt", False, False),
    ("data[0-9].csv", "data7.csv", False, True),
    ("data[!0-9].csv", "data7.csv", False, False),
    ("data[!0-9].csv", "datax.csv", False, True),
    ("\\#notes", "#notes", False, True),
    ("\\!bang", "!bang", False, True),
    ("trailing   ", "trailing", False, True),
    ("space\\ ", "space ", False, True),
    ("[unclosed", "[unclosed", False, True),
    ("name\n", "name\n", False, False),
]


@pytest.mark.parametrize("pattern, path, is_dir, expected", TABLE)
def test_pattern_table(pattern, path, is_dir, expected):
    rule = parse_line(pattern)
    assert rule is not None
    assert rule.matches(path, is_dir) is expected


@pytest.mark.parametrize("line", ["", "   ", "# a comment", "!", "/"])
def test_blanks_and_comments_are_no_rules(line):
    assert parse_line(line) is None


def test_the_last_match_wins_and_negation_re_includes():
    ignore = Ignore()
    ignore.add("git", Patterns(parse("*.log\n!keep.log\n# note\nkeep.log.old\n")))
    assert ignore.ignored("a.log", False) and not ignore.ignored("keep.log", False)
    assert not ignore.ignored("main.py", False)


def test_a_deeper_file_beats_a_shallower_one_and_sees_paths_from_its_folder():
    ignore = Ignore()
    ignore.add("git", Patterns(parse("*.csv\n")))
    ignore.add("git", Patterns(parse("!keep.csv\n/local.txt\n"), base="sub/"))
    assert ignore.ignored("sub/x.csv", False) and not ignore.ignored("sub/keep.csv", False)
    assert ignore.ignored("keep.csv", False)  # the deeper file speaks only for its folder
    assert ignore.ignored("sub/local.txt", False) and not ignore.ignored("local.txt", False)


def test_runnerignore_beats_gitignore_which_beats_the_defaults():
    ignore = Ignore()
    ignore.add("default", Patterns(parse("node_modules/\n")))
    ignore.add("git", Patterns(parse("*.bin\n!node_modules/\n")))
    ignore.add("runner", Patterns(parse("!model.bin\n")))
    assert not ignore.ignored("model.bin", False) and ignore.ignored("other.bin", False)
    assert not ignore.ignored("node_modules", True)


def test_a_repository_file_above_the_folder_sees_the_folder_by_its_path():
    ignore = Ignore()
    ignore.add("git", Patterns(parse("/jobs/taxi/out.csv\n/out.csv\n"), outside="jobs/taxi/"))
    assert ignore.ignored("out.csv", False)
    assert not ignore.ignored("sub/out.csv", False)
