"""The shape of the code, kept by tests: what docs/explanation/architecture.md promises a reader.

The layers themselves (every import points down) are checked by import-linter (``make lint``
runs ``lint-imports`` on ``.importlinter``); these tests keep the rest of the promise: small
modules and classes, no module found by an import string, no import inside a function unless it
says why (an optional extra, start-up time), SQL only in ``sync/state/``, and tests that do not
lean on benchmarks/.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("mappings", "sync")
MODULE_MAX, CLASS_MAX = 600, 300

#: Modules allowed over the limits, each with the reason (the architecture page repeats it).
LARGER_ON_PURPOSE: dict[str, str] = {}

#: SQLAlchemy names that build statements: only sync/state/ may import them.
STATEMENT_BUILDERS = {"select", "insert", "update", "delete", "text", "func", "and_", "or_"}


def source_files(*roots: str) -> Iterator[Path]:
    for root in roots:
        for path in sorted((ROOT / root).rglob("*.py")):
            if "migrations" not in path.parts:
                yield path


def relative(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def parsed(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def test_no_module_or_class_is_larger_than_a_reader_can_hold() -> None:
    too_large = []
    for path in source_files(*PACKAGES):
        name = relative(path)
        if name in LARGER_ON_PURPOSE:
            continue
        lines = path.read_text(encoding="utf-8").count("\n") + 1
        if lines > MODULE_MAX:
            too_large.append(f"{name}: {lines} lines")
        for node in ast.walk(parsed(path)):
            if isinstance(node, ast.ClassDef):
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                if length > CLASS_MAX:
                    too_large.append(f"{name}: class {node.name} {length} lines")
    assert too_large == []


def test_no_module_is_found_by_an_import_string() -> None:
    found = []
    for path in source_files(*PACKAGES):
        for node in ast.walk(parsed(path)):
            if isinstance(node, ast.Call):
                func = node.func
                name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
                if name in {"import_module", "__import__"}:
                    found.append(f"{relative(path)}:{node.lineno}")
    assert found == []


def says_why(text: str) -> bool:
    return "optional extra" in text or "lazy:" in text


def test_imports_inside_functions_only_load_optional_extras() -> None:
    """A lazy import says why on its line or the one above: an optional extra, or start-up time.

    An import inside a function to dodge a cycle is what this rules out: it hides an arrow
    pointing up from the reader and from import-linter.
    """
    unexplained = []
    for path in source_files(*PACKAGES):
        lines = path.read_text(encoding="utf-8").splitlines()
        for node in ast.walk(parsed(path)):
            if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            explained = {
                inner.lineno
                for block in ast.walk(node)
                if isinstance(block, ast.Try) and says_why(lines[block.lineno - 1])
                for inner in ast.walk(block)
                if isinstance(inner, ast.Import | ast.ImportFrom)
            }
            for inner in ast.walk(node):
                if isinstance(inner, ast.Import | ast.ImportFrom):
                    text = " ".join(lines[inner.lineno - 2 : inner.lineno])
                    if not says_why(text) and inner.lineno not in explained:
                        unexplained.append(f"{relative(path)}:{inner.lineno}")
    assert sorted(set(unexplained)) == []


def test_sql_is_written_only_in_the_state_package() -> None:
    outside = []
    for path in source_files(*PACKAGES):
        if path.is_relative_to(ROOT / "sync" / "state"):
            continue
        for node in ast.walk(parsed(path)):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("sqlalchemy"):
                builders = {alias.name for alias in node.names} & STATEMENT_BUILDERS
                if builders:
                    outside.append(f"{relative(path)}: {', '.join(sorted(builders))}")
    assert outside == []


@pytest.mark.parametrize("root", ["tests"])
def test_tests_do_not_import_the_benchmarks(root: str) -> None:
    leaning = []
    for path in sorted((ROOT / root).rglob("*.py")):
        for node in ast.walk(parsed(path)):
            module = ""
            if isinstance(node, ast.ImportFrom):
                module = node.module or ""
            elif isinstance(node, ast.Import):
                module = node.names[0].name
            if module.split(".")[0] == "benchmarks":
                leaning.append(relative(path))
    assert leaning == []
