"""Mutation testing: apply each mutant alone, run the module's own tests, count survivors.

    .venv/bin/python -m tests.mutation.run                       # every module in MODULES
    .venv/bin/python -m tests.mutation.run memq/budget.py        # one module
    .venv/bin/python -m tests.mutation.run memq/budget.py --list # the mutants, not run
    .venv/bin/python -m tests.mutation.run worker/prompting.py --only 12 --only 40 -j 2

The working tree is never touched: the tracked and untracked-but-not-ignored files are
copied into a temporary directory (one per job), and each mutant is written over the
module in that copy. The baseline first runs the tests on the module as every mutant is
written (unparsed, comments dropped); it must pass. A mutant is *killed* when its tests
fail, crash, hang past the time limit or grow past the memory limit. Survivors listed
in equivalent.toml (with the reason) are left out of the score; see docs/testing.md.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import tomllib
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from queue import Queue
from typing import Literal

from tests.mutation.mutants import KINDS, Mutant, generate, identity_source

ROOT = Path(__file__).resolve().parents[2]
EQUIVALENT_FILE = Path(__file__).with_name("equivalent.toml")


@dataclass(frozen=True)
class Target:
    tests: tuple[str, ...]
    """Run in this order with -x: put the fast, focused file first."""
    strings: bool = False
    """Mutate string literals too (for modules whose messages the tests should pin)."""
    pytest_args: tuple[str, ...] = ()
    """More pytest arguments, e.g. `--deselect` for engine tests in a unit test file."""
    kinds: frozenset[str] | None = None
    """Run only mutants of these kinds (`mutants.KINDS`), e.g. the numbers a table of
    bounds pins; None: every kind."""

    def __post_init__(self) -> None:
        unknown = sorted(set(self.kinds or ()) - set(KINDS))
        if unknown:
            raise ValueError(f"unknown mutant kinds {unknown}; known: {', '.join(KINDS)}")

    def select(self, mutants: list[Mutant]) -> list[Mutant]:
        return [m for m in mutants if self.kinds is None or m.kind in self.kinds]


def _store_tests(first: str) -> tuple[str, ...]:
    """The store's test files, the module's own first: JobStore composes the smaller stores,
    so a mutant of one may only show in another's tests."""
    files = [f"tests/memq/store/test_{n}.py" for n in _STORE_MODULES]
    return (first, *(f for f in files if f != first))


_STORE_MODULES = ("jobs", "keys", "leases", "sessions", "webhooks", "metrics")

MODULES: dict[str, Target] = {
    "memq/budget.py": Target(("tests/memq/test_budget.py",), strings=True),
    "memory_service/services/chunking.py": Target(
        ("tests/memory_service/test_chunking.py",), strings=True
    ),
    **{
        f"memq/store/{name}.py": Target(_store_tests(f"tests/memq/store/test_{name}.py"))
        for name in _STORE_MODULES
    },
    # The contracts' numbers only: the bounds, limits and defaults the table of edges pins
    # (their other logic is tested through the services that use them).
    **{
        f"memq/contracts/{domain}.py": Target(
            ("tests/memq/test_contracts_bounds.py",), kinds=frozenset({"number"})
        )
        for domain in ("memories", "jobs", "adapters", "batches")
    },
    "worker/prompting.py": Target(
        ("tests/worker/test_prompting.py", "tests/worker/test_pipeline.py"), strings=True
    ),
    "worker/engine/sampling.py": Target(
        ("tests/worker/engine/test_sampling.py", "tests/worker/engine/test_no_repeat_ngram.py"),
        # These two run both engines end to end; the file's unit tests pin NGramBans.
        pytest_args=(
            "--deselect=tests/worker/engine/test_no_repeat_ngram.py::"
            "test_greedy_with_no_repeat_ngram_matches_simple_engine",
            "--deselect=tests/worker/engine/test_no_repeat_ngram.py::"
            "test_seeded_sampling_with_no_repeat_ngram_matches_simple_engine",
        ),
    ),
}

Outcome = Literal["killed", "timeout", "memory", "survived"]

_STOP = threading.Event()
"""Set by SIGINT/SIGTERM: running tests are killed, nothing more starts, temp dirs go."""


class Interrupted(Exception):
    """The run was stopped (SIGINT/SIGTERM) while a mutant's tests ran."""


def _stop(signum: int, _frame: object) -> None:
    _STOP.set()
    raise SystemExit(128 + signum)


@dataclass
class Result:
    mutant: Mutant
    outcome: Outcome
    seconds: float


@dataclass
class Report:
    module: str
    results: list[Result] = field(default_factory=list)
    equivalent: dict[str, str] = field(default_factory=dict)
    complete: bool = True  # every mutant ran (not --only)
    kinds: frozenset[str] | None = None  # only these kinds were generated (Target.kinds)

    @property
    def label(self) -> str:
        return (
            f"{self.module} ({', '.join(sorted(self.kinds))} only)" if self.kinds else self.module
        )

    @property
    def survivors(self) -> list[Result]:
        return [r for r in self.results if r.outcome == "survived"]

    def counts(self) -> tuple[int, int, int, int]:
        """(mutants, killed, survived, survivors marked equivalent)."""
        survived = self.survivors
        marked = sum(1 for r in survived if r.mutant.key in self.equivalent)
        return len(self.results), len(self.results) - len(survived), len(survived), marked

    def score(self) -> float:
        total, killed, _, marked = self.counts()
        scored = total - marked
        return killed / scored if scored else 1.0


def load_equivalent(module: str) -> dict[str, str]:
    """Mutant key -> why it cannot change behaviour, for `module`."""
    if not EQUIVALENT_FILE.exists():
        return {}
    data = tomllib.loads(EQUIVALENT_FILE.read_text())
    entries = data.get(module, [])
    return {str(e["mutant"]): str(e["reason"]) for e in entries}


def snapshot(into: Path) -> None:
    """Copy the working tree as git sees it (tracked + untracked, not ignored)."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        check=True,
        capture_output=True,
    ).stdout.split(b"\0")
    for raw in listed:
        if not raw:
            continue
        rel = raw.decode()
        src = ROOT / rel
        if not src.is_file():
            continue
        dst = into / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dst)


def _env(copy: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(copy)
    # Same-size mutants written within a second would otherwise reuse a stale .pyc.
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env.setdefault("HF_HUB_OFFLINE", "1")
    return env


def _group_rss(pgid: int) -> int:
    """Resident bytes of every process in the group (Linux /proc)."""
    total = 0
    page = os.sysconf("SC_PAGE_SIZE")
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            fields = stat[stat.rindex(")") + 2 :].split()
            if int(fields[2]) == pgid:  # field 5 of stat: the process group
                total += int(fields[21]) * page  # field 24: rss in pages
        except (OSError, ValueError, IndexError):
            continue
    return total


def _descendants(pid: int) -> list[int]:
    """Every live process below `pid` (Linux /proc): also those that started a session of
    their own, as the redis-server of tests/conftest.py does."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            parent = int(stat[stat.rindex(")") + 2 :].split()[1])  # field 4: ppid
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(parent, []).append(int(entry.name))
    found: list[int] = []
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def run_tests(
    copy: Path, target: Target, *, timeout: float, memory_limit: int
) -> tuple[Outcome | Literal["passed"], float, str]:
    """Run the target's tests in `copy`; ("passed" | how it was killed, seconds, output)."""
    command = [
        sys.executable,
        "-m",
        "pytest",
        *target.tests,
        *target.pytest_args,
        "-x",
        "-q",
        "-p",
        "no:cacheprovider",
        "-p",
        "tests.mutation.pytest_plugin",
    ]
    start = time.monotonic()
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(
            command,
            cwd=copy,
            env=_env(copy),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        outcome: Outcome | Literal["passed"] | None = None
        try:
            while proc.poll() is None and outcome is None:
                if _STOP.is_set():
                    raise Interrupted
                if time.monotonic() - start > timeout:
                    outcome = "timeout"
                elif _group_rss(proc.pid) > memory_limit:
                    outcome = "memory"
                else:
                    time.sleep(0.2)
        finally:
            # Killed, stopped or done: nothing of the run outlives it, neither the group
            # nor a server a test started in a session of its own (its fixture never ran
            # its teardown when pytest was killed).
            escaped = _descendants(proc.pid)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            for pid in escaped:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            proc.wait()
        log.seek(0)
        tail = log.read()[-3000:].decode(errors="replace")
    if outcome is None:
        outcome = "passed" if proc.returncode == 0 else "killed"
    return outcome, time.monotonic() - start, tail


def _check_imports_copy(copy: Path, module: str) -> None:
    name = module.removesuffix(".py").replace("/", ".")
    found = subprocess.run(
        [
            sys.executable,
            "-c",
            f"import importlib.util; print(importlib.util.find_spec({name!r}).origin)",
        ],
        cwd=copy,
        env=_env(copy),
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    if Path(found).resolve() != (copy / module).resolve():
        raise SystemExit(f"{name} imports from {found}, not from the copy {copy}")


def mutate_module(
    module: str,
    *,
    jobs: int,
    only: set[int] | None,
    memory_limit: int,
    progress: bool = True,
) -> Report:
    target = MODULES[module]
    source = (ROOT / module).read_text()
    mutants = target.select(generate(source, strings=target.strings))
    if only:
        mutants = [m for m in mutants if m.index in only]
    report = Report(
        module, equivalent=load_equivalent(module), complete=not only, kinds=target.kinds
    )
    with tempfile.TemporaryDirectory(prefix="memq-mutation-") as tmp:
        copies = [Path(tmp) / f"repo{k}" for k in range(max(jobs, 1))]
        for copy in copies:
            snapshot(copy)
        _check_imports_copy(copies[0], module)
        (copies[0] / module).write_text(identity_source(source))
        outcome, baseline, tail = run_tests(
            copies[0], target, timeout=1800, memory_limit=memory_limit
        )
        if outcome != "passed":
            raise SystemExit(f"baseline of {module} does not pass ({outcome}):\n{tail}")
        timeout = max(60.0, 4 * baseline)
        if progress:
            print(
                f"{module}: {len(mutants)} mutants, baseline {baseline:.0f} s, "
                f"limit {timeout:.0f} s each",
                file=sys.stderr,
            )
        free: Queue[Path] = Queue()
        for copy in copies:
            free.put(copy)

        def run_one(mutant: Mutant) -> Result:
            if _STOP.is_set():
                raise Interrupted
            copy = free.get()
            path = copy / module
            try:
                path.write_text(mutant.source)
                outcome, seconds, _ = run_tests(
                    copy, target, timeout=timeout, memory_limit=memory_limit
                )
            finally:
                path.write_text(identity_source(source))
                free.put(copy)
            result = Result(mutant, "survived" if outcome == "passed" else outcome, seconds)
            if progress:
                mark = "SURVIVED" if result.outcome == "survived" else result.outcome
                print(
                    f"  [{mutant.index:3}] {mark:8} {seconds:5.0f}s L{mutant.line} {mutant.key}",
                    file=sys.stderr,
                )
            return result

        with ThreadPoolExecutor(max_workers=max(jobs, 1)) as pool:
            report.results = list(pool.map(run_one, mutants))
    return report


def render(reports: Iterable[Report]) -> str:
    reports = list(reports)
    lines = [
        "| module | mutants | killed | survived | equivalent | score |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in reports:
        total, killed, survived, marked = r.counts()
        lines.append(
            f"| {r.label} | {total} | {killed} | {survived} | {marked} | {r.score():.0%} |"
        )
    for r in reports:
        lines.append("")
        lines.append(f"### Survivors in {r.label}")
        if not r.survivors:
            lines.append("none")
        for res in r.survivors:
            m = res.mutant
            why = r.equivalent.get(m.key)
            note = f" — equivalent: {why}" if why else ""
            lines.append(f"- [{m.index}] L{m.line} `{m.key}`{note}")
        keys = {res.mutant.key for res in r.results}
        killed_marked = [
            res.mutant.key
            for res in r.results
            if res.outcome != "survived" and res.mutant.key in r.equivalent
        ]
        stale = [k for k in r.equivalent if k not in keys]
        for k in killed_marked:
            lines.append(f"- marked equivalent but killed (fix equivalent.toml): `{k}`")
        if r.complete:
            for k in stale:
                lines.append(f"- equivalent.toml names no current mutant: `{k}`")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("modules", nargs="*", help=f"default: all of {', '.join(MODULES)}")
    parser.add_argument("-j", "--jobs", type=int, default=1, help="mutants run at once")
    parser.add_argument("--only", type=int, action="append", help="run only mutant N")
    parser.add_argument("--list", action="store_true", help="list the mutants, run nothing")
    parser.add_argument("--memory-gib", type=float, default=4.0, help="per-mutant RSS limit")
    parser.add_argument("--markdown", type=Path, help="also write the report here")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    modules = args.modules or list(MODULES)
    unknown = [m for m in modules if m not in MODULES]
    if unknown:
        parser.error(f"no test selection for {unknown}; add them to MODULES in {__file__}")
    if args.list:
        for module in modules:
            print(f"# {module}")
            target = MODULES[module]
            for m in target.select(generate((ROOT / module).read_text(), strings=target.strings)):
                print(f"[{m.index}] L{m.line} {m.kind} {m.key}")
        return 0
    reports = [
        mutate_module(
            module,
            jobs=args.jobs,
            only=set(args.only) if args.only else None,
            memory_limit=int(args.memory_gib * 2**30),
        )
        for module in modules
    ]
    text = render(reports)
    print(text)
    if args.markdown:
        args.markdown.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
