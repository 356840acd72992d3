"""Every error memq raises on purpose is a branch of `memq.errors.MemqError` (drawn in
memq/errors.py): no class in the shared package or the services derives from a built-in
exception alone."""

from __future__ import annotations

import ast
import builtins
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("memq", "gateway", "worker", "memory_service")
BUILTIN_ERRORS = {
    name
    for name, value in vars(builtins).items()
    if isinstance(value, type) and issubclass(value, BaseException)
}


def _base_name(node: ast.expr) -> str:
    return node.attr if isinstance(node, ast.Attribute) else getattr(node, "id", "")


def test_no_error_class_outside_the_memq_error_tree() -> None:
    outside = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if not isinstance(node, ast.ClassDef):
                    continue
                bases = [_base_name(b) for b in node.bases]
                if bases and all(b in BUILTIN_ERRORS for b in bases):
                    outside.append(f"{path.relative_to(ROOT)}: {node.name}({', '.join(bases)})")
    assert outside == ["memq/errors.py: MemqError(Exception)"]
