"""The name → object registries: one error naming the known entries, one file adds an entry."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from pmcurate.registry import DuplicateNameError, Registry, UnknownNameError


def test_an_unknown_name_is_one_error_listing_the_known_ones() -> None:
    registry: Registry[int] = Registry("widget")
    registry.register("a", 1)
    registry.register("b", 2)
    with pytest.raises(UnknownNameError, match=r"unknown widget 'c'; known: a, b"):
        registry.get("c")


def test_the_decorator_registers_what_it_wraps_and_returns_it() -> None:
    registry: Registry[object] = Registry("rule")

    @registry.register("double")
    def double(x: int) -> int:
        return 2 * x

    assert registry.get("double") is double and double(2) == 4


def test_two_entries_under_one_name_are_refused() -> None:
    registry: Registry[int] = Registry("preset")
    registry.register("a", 1)
    with pytest.raises(DuplicateNameError, match="preset 'a' is registered twice"):
        registry.register("a", 2)


def test_a_module_added_to_the_package_registers_its_entry(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    package = tmp_path / "widgets"
    package.mkdir()
    (package / "__init__.py").write_text(
        "from pmcurate.registry import Registry\nWIDGETS = Registry('widget', package=__name__)\n"
        "WIDGETS.register('builtin', 0)\n"
    )
    (package / "spanner.py").write_text("from widgets import WIDGETS\nWIDGETS.register('spanner', 42)\n")
    (package / "_private.py").write_text("raise AssertionError('modules starting with _ are not imported')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        from widgets import WIDGETS  # type: ignore[import-not-found]

        assert WIDGETS.names() == ("builtin", "spanner") and WIDGETS.get("spanner") == 42
    finally:
        for name in [m for m in sys.modules if m == "widgets" or m.startswith("widgets.")]:
            del sys.modules[name]
