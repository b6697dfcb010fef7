"""Backup tasks run in threads, several at once: nothing they run may import a module.

Two threads importing one module (psycopg, via an import inside a function) raced into
``ImportError: cannot import name 'conninfo_attempts' from partially initialized module``;
every import of the backup code happens when the flow module is imported, before any task.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
BACKUP_MODULES = sorted(
    [
        *(ROOT / "tasks" / "backups").glob("*.py"),
        ROOT / "tasks" / "backup_verify.py",
        ROOT / "tasks" / "backup_records.py",
        ROOT / "tasks" / "backup_report.py",
        ROOT / "upkeep" / "domain" / "backups.py",
        ROOT / "upkeep" / "domain" / "retention.py",
        ROOT / "flows" / "backup_verification.py",
    ]
)


def imports_inside_functions(source: str) -> list[int]:
    """Line numbers of the imports inside a function or lambda of ``source``."""
    lines = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            for inner in ast.walk(node):
                if isinstance(inner, ast.Import | ast.ImportFrom):
                    lines.add(inner.lineno)
    return sorted(lines)


@pytest.mark.parametrize("path", BACKUP_MODULES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_import_inside_a_function(path: Path) -> None:
    assert imports_inside_functions(path.read_text()) == [], path


def test_the_check_finds_imports_in_functions_and_methods() -> None:
    source = (
        "import os\n"
        "def f():\n    from psycopg import sql\n    return sql\n"
        "class C:\n    def m(self):\n        if os:\n            import psycopg\n"
    )
    assert imports_inside_functions(source) == [3, 8]
