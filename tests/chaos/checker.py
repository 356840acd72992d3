"""A Jepsen-style history of operations and the checker every chaos test runs on it.

A test records each operation it attempts under a unique key (a memory's marker, a job id):
`invoke(key)`, then exactly one completion:

    ok    the system acknowledged it: it must be observed afterwards
    fail  it definitely did not happen (a 4xx, a refusal): it must never be observed
    info  ambiguous: the client cannot know (connection dropped, timeout, 5xx mid-fault)

An operation invoked and never completed counts as `info`. After the fault, a final read
records how many times each key is observed (`observe(key, count)`: results of a job,
copies of a memory). `check()` compares the two and prints the summary:

    lost        acknowledged, observed 0 times
    duplicated  observed more than once
    unexpected  observed, but never invoked or definitely failed

Ambiguous operations may be observed 0 or 1 times; the summary says how many came through.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import StrEnum


class Outcome(StrEnum):
    invoked = "invoked"
    ok = "ok"
    fail = "fail"
    info = "info"


@dataclass
class Operation:
    key: str
    kind: str
    outcome: Outcome = Outcome.invoked
    detail: str = ""


@dataclass(frozen=True)
class Summary:
    """What the checker found; `valid` when nothing was lost, duplicated or unexpected."""

    ok: int
    failed: int
    ambiguous: int
    ambiguous_observed: int
    lost: list[str] = field(default_factory=list)
    duplicated: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    by_kind: dict[str, dict[str, int]] = field(default_factory=dict)

    @property
    def valid(self) -> bool:
        return not (self.lost or self.duplicated or self.unexpected)

    def __str__(self) -> str:
        lines = [
            f"ok {self.ok}, failed {self.failed}, ambiguous {self.ambiguous} "
            f"({self.ambiguous_observed} observed)",
            f"lost {len(self.lost)}, duplicated {len(self.duplicated)}, "
            f"unexpected {len(self.unexpected)}",
        ]
        for kind, counts in sorted(self.by_kind.items()):
            lines.append(
                f"  {kind}: " + ", ".join(f"{name} {n}" for name, n in sorted(counts.items()))
            )
        for name, keys in (
            ("lost", self.lost),
            ("duplicated", self.duplicated),
            ("unexpected", self.unexpected),
        ):
            if keys:
                shown = ", ".join(keys[:10]) + (" ..." if len(keys) > 10 else "")
                lines.append(f"  {name}: {shown}")
        return "\n".join(lines)


class History:
    """Operations and observations, safe to record from several threads."""

    def __init__(self) -> None:
        self._ops: dict[str, Operation] = {}
        self._observed: dict[str, int] = {}
        self._lock = threading.Lock()

    def invoke(self, key: str, kind: str = "write") -> None:
        with self._lock:
            if key in self._ops:
                raise ValueError(f"operation {key!r} was already invoked; keys must be unique")
            self._ops[key] = Operation(key, kind)

    def ok(self, key: str, detail: str = "") -> None:
        self._complete(key, Outcome.ok, detail)

    def fail(self, key: str, detail: str = "") -> None:
        self._complete(key, Outcome.fail, detail)

    def info(self, key: str, detail: str = "") -> None:
        self._complete(key, Outcome.info, detail)

    def _complete(self, key: str, outcome: Outcome, detail: str) -> None:
        with self._lock:
            op = self._ops.get(key)
            if op is None:
                raise ValueError(f"operation {key!r} completed but never invoked")
            if op.outcome is not Outcome.invoked:
                raise ValueError(f"operation {key!r} already completed as {op.outcome}")
            op.outcome = outcome
            op.detail = detail

    @contextmanager
    def operation(self, key: str, kind: str = "write") -> Iterator[None]:
        """Invoke `key`; if the block raises before completing it, it is ambiguous."""
        self.invoke(key, kind)
        try:
            yield
        except BaseException as exc:
            with self._lock:
                op = self._ops[key]
                if op.outcome is Outcome.invoked:
                    op.outcome, op.detail = Outcome.info, f"{type(exc).__name__}: {exc}"
            raise

    def observe(self, key: str, count: int = 1) -> None:
        """The final read saw `key` `count` more times (call once per copy, or with a count)."""
        if count < 0:
            raise ValueError("an observation counts 0 or more copies")
        with self._lock:
            self._observed[key] = self._observed.get(key, 0) + count

    def observe_all(self, counts: Mapping[str, int]) -> None:
        for key, count in counts.items():
            self.observe(key, count)

    def operations(self, kind: str | None = None) -> list[Operation]:
        with self._lock:
            return [op for op in self._ops.values() if kind is None or op.kind == kind]

    def check(self) -> Summary:
        """Compare what was acknowledged with what was observed; prints the summary."""
        with self._lock:
            ops = list(self._ops.values())
            observed = dict(self._observed)
        outcome_of = {
            op.key: Outcome.info if op.outcome is Outcome.invoked else op.outcome for op in ops
        }
        by_kind: dict[str, Counter[str]] = {}
        for op in ops:
            by_kind.setdefault(op.kind, Counter())[outcome_of[op.key].value] += 1
        summary = Summary(
            ok=sum(o is Outcome.ok for o in outcome_of.values()),
            failed=sum(o is Outcome.fail for o in outcome_of.values()),
            ambiguous=sum(o is Outcome.info for o in outcome_of.values()),
            ambiguous_observed=sum(
                1 for k, o in outcome_of.items() if o is Outcome.info and observed.get(k, 0) > 0
            ),
            lost=sorted(
                k for k, o in outcome_of.items() if o is Outcome.ok and not observed.get(k)
            ),
            duplicated=sorted(k for k, n in observed.items() if n > 1),
            unexpected=sorted(
                k
                for k, n in observed.items()
                if n > 0 and outcome_of.get(k, Outcome.fail) is Outcome.fail
            ),
            by_kind={kind: dict(counts) for kind, counts in by_kind.items()},
        )
        print(f"\nchecker summary:\n{summary}")
        return summary
