"""Test modules have unique names: pytest's default (rootdir-less) import mode stops the
whole collection at the second ``test_x.py`` of the same name in another folder."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]


def test_no_two_test_modules_share_a_name():
    names = Counter(p.name for p in TESTS.rglob("*.py") if p.name != "conftest.py")
    shared = sorted(n for n, k in names.items() if k > 1)
    assert not shared, f"rename one of each: {shared}"
