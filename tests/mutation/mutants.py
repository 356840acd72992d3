"""Mutants of one Python module, generated from its AST.

Each mutant is one small change (an operator flipped, a constant moved by one, a
statement removed, ...) applied alone. A mutant is named by the function it sits in and
the code before and after, not by its line, so a mark "equivalent" survives edits
elsewhere in the module (see equivalent.toml).

Operators (see docs/testing.md):
- comparisons: `<` -> `<=`, `>=`; `<=` -> `<`, `>`; `>` -> `>=`, `<=`; `>=` -> `>`, `<`;
  `==` <-> `!=`; `is` <-> `is not`; `in` <-> `not in`
- arithmetic: `+` <-> `-`, `*` <-> `/`, `//` -> `/`, `*`, `%` -> `//`, `**` -> `*`
  (also in `+=` etc.); unary `-x` -> `x`
- booleans: `and` <-> `or`, `not x` -> `x`, `True` <-> `False`
- numbers: `n` -> `n + 1`, `n - 1`, `0`
- `return x` -> `return None` in functions with a return annotation
- slice bounds: `a[i:j]` -> `i ± 1`, `j ± 1`
- statement removal: a call statement (`xs.append(x)`), `raise`, `continue`, `break`,
  an augmented assignment
- strings (only for modules whose messages tests should pin): `"s"` -> `"XXsXX"`

Each mutant has a `kind`: `compare`, `arith`, `unary`, `bool`, `number`, `string`,
`return`, `slice` or `remove`. `number` is a written number changing value: a numeric
literal moved (`n -> n + 1`) or an operator inside an expression of numeric literals only
(`7 * 86400 -> 7 / 86400`, `-(2**63) -> 2**63`); a module can be run on some kinds only
(`Target.kinds` in run.py).
"""

from __future__ import annotations

import ast
import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from functools import partial

Edit = Callable[[ast.AST], ast.AST | None]
"""Mutates the node found at a site (in place, or returns a replacement)."""

KINDS = ("compare", "arith", "unary", "bool", "number", "string", "return", "slice", "remove")

_COMPARE: dict[type[ast.cmpop], list[type[ast.cmpop]]] = {
    ast.Lt: [ast.LtE, ast.GtE],
    ast.LtE: [ast.Lt, ast.Gt],
    ast.Gt: [ast.GtE, ast.LtE],
    ast.GtE: [ast.Gt, ast.Lt],
    ast.Eq: [ast.NotEq],
    ast.NotEq: [ast.Eq],
    ast.Is: [ast.IsNot],
    ast.IsNot: [ast.Is],
    ast.In: [ast.NotIn],
    ast.NotIn: [ast.In],
}
_ARITH: dict[type[ast.operator], list[type[ast.operator]]] = {
    ast.Add: [ast.Sub],
    ast.Sub: [ast.Add],
    ast.Mult: [ast.Div],
    ast.Div: [ast.Mult],
    ast.FloorDiv: [ast.Div, ast.Mult],
    ast.Mod: [ast.FloorDiv],
    ast.Pow: [ast.Mult],
}


@dataclass(frozen=True)
class Mutant:
    index: int
    line: int
    function: str
    before: str
    after: str
    source: str  # the whole mutated module
    kind: str  # one of KINDS

    @property
    def key(self) -> str:
        """Stable name: what equivalent.toml refers to."""
        return f"{self.function}: {self.before} -> {self.after}"


def _short(text: str, limit: int = 120) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _skipped_nodes(tree: ast.Module) -> set[int]:
    """Ids of nodes no mutant touches: docstrings, annotations, `__future__` imports,
    format specs of f-strings (`{n:,}`)."""
    skip: set[int] = set()

    def add(node: ast.AST | None) -> None:
        if node is not None:
            skip.update(id(n) for n in ast.walk(node))

    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if (
            isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
            and body
            and isinstance(body[0], ast.Expr)
            and isinstance(body[0].value, ast.Constant)
            and isinstance(body[0].value.value, str)
        ):
            add(body[0])
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            add(node.returns)
            for arg in [*node.args.args, *node.args.kwonlyargs, *node.args.posonlyargs]:
                add(arg.annotation)
            if node.args.vararg:
                add(node.args.vararg.annotation)
            if node.args.kwarg:
                add(node.args.kwarg.annotation)
        if isinstance(node, ast.AnnAssign):
            add(node.annotation)
        if isinstance(node, ast.ImportFrom | ast.Import):
            add(node)
        if isinstance(node, ast.FormattedValue):
            add(node.format_spec)
        # A string right after an assignment documents it (attribute docstring).
        for field in ("body", "orelse", "finalbody"):
            stmts = getattr(node, field, None)
            if not isinstance(stmts, list):
                continue
            for prev, stmt in itertools.pairwise(stmts):
                if (
                    isinstance(prev, ast.Assign | ast.AnnAssign)
                    and isinstance(stmt, ast.Expr)
                    and isinstance(stmt.value, ast.Constant)
                    and isinstance(stmt.value.value, str)
                ):
                    add(stmt)
    return skip


def _functions(tree: ast.Module) -> dict[int, str]:
    """Node id -> qualified name of the innermost function or class holding it."""
    owner: dict[int, str] = {}

    def visit(node: ast.AST, name: str) -> None:
        for child in ast.iter_child_nodes(node):
            inner = name
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                inner = f"{name}.{child.name}" if name != "<module>" else child.name
            owner[id(child)] = inner
            visit(child, inner)

    visit(tree, "<module>")
    return owner


def _returns_typed(tree: ast.Module) -> set[int]:
    """Ids of `return x` statements in functions annotated to return something."""
    out: set[int] = set()
    for func in ast.walk(tree):
        if not isinstance(func, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        returns = func.returns
        if returns is None or (isinstance(returns, ast.Constant) and returns.value is None):
            continue
        stack: list[ast.AST] = list(func.body)
        while stack:
            node = stack.pop()
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
                continue  # an inner function's returns belong to it
            value = node.value if isinstance(node, ast.Return) else None
            if value is not None and not (isinstance(value, ast.Constant) and value.value is None):
                out.add(id(node))
            stack.extend(ast.iter_child_nodes(node))
    return out


def _number_edits(value: int | float) -> list[int | float]:
    candidates = [value + 1, value - 1, 0 if not isinstance(value, float) else 0.0]
    seen: list[int | float] = []
    for c in candidates:
        if c != value and c not in seen:
            seen.append(c)
    return seen


def _plus(node: ast.expr, delta: int) -> ast.expr:
    op: ast.operator = ast.Add() if delta > 0 else ast.Sub()
    return ast.BinOp(left=node, op=op, right=ast.Constant(abs(delta)))


def _set_compare(k: int, op: type[ast.cmpop], n: ast.AST) -> None:
    assert isinstance(n, ast.Compare)
    n.ops[k] = op()


def _set_operator(op: type[ast.operator], n: ast.AST) -> None:
    assert isinstance(n, ast.BinOp | ast.AugAssign)
    n.op = op()


def _set_boolop(op: type[ast.boolop], n: ast.AST) -> None:
    assert isinstance(n, ast.BoolOp)
    n.op = op()


def _drop_unary(n: ast.AST) -> ast.AST:
    assert isinstance(n, ast.UnaryOp)
    return n.operand


def _constant(value: str | bool | int | float, _n: ast.AST) -> ast.AST:
    return ast.Constant(value)


def _return_none(n: ast.AST) -> None:
    assert isinstance(n, ast.Return)
    n.value = ast.Constant(None)


def _shift_bound(field: str, delta: int, n: ast.AST) -> None:
    setattr(n, field, _plus(getattr(n, field), delta))


def _remove(_n: ast.AST) -> ast.AST:
    return ast.Pass()


def _numeric(node: ast.AST) -> bool:
    """An expression of numeric literals only (`7 * 86400`, `-(2**63)`)."""
    if isinstance(node, ast.Constant):
        return isinstance(node.value, int | float) and not isinstance(node.value, bool)
    if isinstance(node, ast.BinOp):
        return _numeric(node.left) and _numeric(node.right)
    if isinstance(node, ast.UnaryOp):
        return isinstance(node.op, ast.USub | ast.UAdd) and _numeric(node.operand)
    return False


def _sites(tree: ast.Module, *, strings: bool) -> Iterator[tuple[int, Edit, str]]:
    """(index of the node in ast.walk order, the change, its kind) for every mutation
    site."""
    skip = _skipped_nodes(tree)
    typed_returns = _returns_typed(tree)
    for index, node in enumerate(ast.walk(tree)):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Compare):
            for k, op in enumerate(node.ops):
                for new in _COMPARE.get(type(op), []):
                    yield index, partial(_set_compare, k, new), "compare"
        elif isinstance(node, ast.BinOp | ast.AugAssign):
            for new_op in _ARITH.get(type(node.op), []):
                kind = "number" if _numeric(node) else "arith"
                yield index, partial(_set_operator, new_op), kind
        elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.Not):
            yield index, _drop_unary, "number" if _numeric(node) else "unary"
        elif isinstance(node, ast.BoolOp):
            new_bool = ast.Or if isinstance(node.op, ast.And) else ast.And
            yield index, partial(_set_boolop, new_bool), "bool"
        elif isinstance(node, ast.Constant):
            value = node.value
            if isinstance(value, bool):
                yield index, partial(_constant, not value), "bool"
            elif isinstance(value, int | float):
                for new_value in _number_edits(value):
                    yield index, partial(_constant, new_value), "number"
            elif isinstance(value, str) and strings:
                yield index, partial(_constant, f"XX{value}XX"), "string"
        elif isinstance(node, ast.Return) and id(node) in typed_returns:
            yield index, _return_none, "return"
        elif isinstance(node, ast.Slice):
            for field in ("lower", "upper"):
                if getattr(node, field) is not None:
                    for delta in (1, -1):
                        yield index, partial(_shift_bound, field, delta), "slice"
        if isinstance(node, ast.stmt) and _removable(node):
            yield index, _remove, "remove"


def _removable(stmt: ast.stmt) -> bool:
    if isinstance(stmt, ast.Expr):
        return isinstance(stmt.value, ast.Call)
    return isinstance(stmt, ast.Raise | ast.Continue | ast.Break | ast.AugAssign)


def _replace(tree: ast.Module, index: int, edit: Edit) -> ast.AST:
    """Apply `edit` to the index-th node of `tree` (ast.walk order); return the new node."""
    target = list(ast.walk(tree))[index]
    replacement = edit(target)
    if replacement is None:
        return target
    for parent in ast.walk(tree):
        for field, value in ast.iter_fields(parent):
            if value is target:
                setattr(parent, field, replacement)
                return replacement
            if isinstance(value, list):
                for pos, child in enumerate(value):
                    if child is target:
                        value[pos] = replacement
                        return replacement
    raise LookupError(f"node #{index} has no parent")


def identity_source(source: str) -> str:
    """The module as every mutant is written (unparsed, comments dropped): the baseline
    runs this, so a failure can only come from the mutation."""
    return ast.unparse(ast.parse(source))


def _parents(tree: ast.AST) -> dict[int, ast.AST]:
    return {id(c): p for p in ast.walk(tree) for c in ast.iter_child_nodes(p)}


_SMALL = (ast.Constant, ast.UnaryOp, ast.Name, ast.Slice, ast.Tuple, ast.keyword, ast.Starred)


def _shown(node: ast.AST, parents: dict[int, ast.AST]) -> ast.AST:
    """What a mutant's name shows: a small node (a number, `-x`, a slice) with the
    expression around it, so `1 -> 2` reads `prompt_room >= 1 -> prompt_room >= 2`."""
    while isinstance(node, _SMALL):
        parent = parents.get(id(node))
        if not isinstance(parent, ast.expr | ast.keyword) or isinstance(parent, ast.JoinedStr):
            break
        node = parent
    return node


def generate(source: str, *, strings: bool = False) -> list[Mutant]:
    """Every distinct mutant of `source` in source order (two changes giving the same
    module count once)."""
    tree = ast.parse(source)
    owners = _functions(tree)
    nodes = list(ast.walk(tree))
    parents = _parents(tree)
    seen = {ast.unparse(tree)}
    found: list[tuple[tuple[int, int, int], Mutant]] = []
    for order, (index, edit, kind) in enumerate(_sites(tree, strings=strings)):
        node = nodes[index]
        shown_old = _shown(node, parents)
        before = _before(source, shown_old)
        work = ast.parse(source)
        work_nodes = list(ast.walk(work))
        shown_index = nodes.index(shown_old) if shown_old is not node else index
        shown_work = work_nodes[shown_index]
        new = _replace(work, index, edit)
        ast.fix_missing_locations(work)
        text = ast.unparse(work)
        if text in seen:
            continue
        seen.add(text)
        if isinstance(new, ast.Pass):
            after = "(removed)"
        elif shown_work is work_nodes[index]:
            after = _after(new)
        else:
            after = _after(shown_work)
        position = (getattr(node, "lineno", 0), getattr(node, "col_offset", 0), order)
        mutant = Mutant(
            index=0,
            line=position[0],
            function=owners.get(id(node), "<module>"),
            before=before,
            after=after,
            source=text,
            kind=kind,
        )
        found.append((position, mutant))
    found.sort(key=lambda item: item[0])
    keys: dict[str, int] = {}
    mutants: list[Mutant] = []
    for number, (_, m) in enumerate(found, start=1):
        keys[m.key] = keys.get(m.key, 0) + 1
        suffix = f" #{keys[m.key]}" if keys[m.key] > 1 else ""
        mutants.append(replace(m, index=number, after=m.after + suffix))
    return mutants


def _before(source: str, node: ast.AST) -> str:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return _short(repr(node.value))  # f-string parts have no position of their own
    return _short(ast.get_source_segment(source, node) or ast.unparse(node))


def _after(node: ast.AST) -> str:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return _short(repr(node.value))
    return _short(ast.unparse(node))
