"""The contracts package: every public name of its domain modules is re-exported by
`memq.contracts`, and importing it loads nothing heavy."""

from __future__ import annotations

import ast
import importlib
import inspect
import subprocess
import sys

import memq.contracts

DOMAINS = ("common", "memories", "adapters", "jobs", "batches", "openai")
HEAVY = {
    "torch",
    "transformers",
    "qdrant_client",
    "redis",
    "celery",
    "httpx",
    "fastapi",
    "starlette",
}


def _defined(module_name: str) -> set[str]:
    """The public names a module defines itself (classes, functions, assignments)."""
    tree = ast.parse(inspect.getsource(importlib.import_module(module_name)))
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.ClassDef | ast.FunctionDef):
            names.add(node.name)
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
        elif isinstance(node, ast.Assign):
            for target in node.targets:
                elts = target.elts if isinstance(target, ast.Tuple) else [target]
                names.update(e.id for e in elts if isinstance(e, ast.Name))
    return {n for n in names if not n.startswith("_")}


def test_every_public_name_of_every_domain_is_re_exported_once() -> None:
    by_domain = {d: _defined(f"memq.contracts.{d}") for d in DOMAINS}
    defined = [name for names in by_domain.values() for name in names]
    assert len(defined) == len(set(defined)), "a name is defined in two domains"
    assert sorted(memq.contracts.__all__) == sorted(defined)
    for domain, names in by_domain.items():
        module = importlib.import_module(f"memq.contracts.{domain}")
        for name in names:
            assert getattr(memq.contracts, name) is getattr(module, name), (domain, name)


def test_importing_the_contracts_loads_nothing_heavy() -> None:
    code = (
        "import sys, memq.contracts; "
        f"print(sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r}))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"
