"""What every message of the package may name: nothing a user of it does not have."""

from __future__ import annotations

import ast
from pathlib import Path

import discodsl

PACKAGE = Path(discodsl.__file__).parent


def _strings_said(path: Path) -> list[tuple[int, str]]:
    """The string constants of a module that are no docstrings, with their lines."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    return [
        (node.lineno, node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and id(node) not in docstrings
    ]


def test_no_message_sends_the_user_to_the_projects_own_contract() -> None:
    # "check the jobpack against disco-spec section 1": a document of the project's
    # makers, in neither the repository nor the package.
    found = [
        f"{path.relative_to(PACKAGE)}:{line}: {text[:60]!r}"
        for path in sorted(PACKAGE.rglob("*.py"))
        for line, text in _strings_said(path)
        if "disco-spec" in text or "../shared" in text
    ]
    assert found == []
