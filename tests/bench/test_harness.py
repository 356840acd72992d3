"""bench/_harness.py, the part every benchmark shares: its quantiles, CPU clocks, machine line,
tables and result files; and the rule that bench never imports the tests."""

from __future__ import annotations

import ast
import http.server
import json
import math
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from bench._harness import (
    RELEVANT_FLAGS,
    descendants,
    load_average,
    machine,
    machine_line,
    process_cpu_s,
    quantile,
    start_and_wait,
    subplots,
    table,
    tree_cpu_s,
    write_result,
)

BENCH = Path(__file__).resolve().parents[2] / "bench"
CPUINFO = """\
processor\t: 0
model name\t: Intel(R) Xeon(R) Platinum 8481C CPU @ 2.70GHz
flags\t\t: fpu sse2 avx2 fma avx512f avx512_bf16 amx_bf16
processor\t: 1
model name\t: Intel(R) Xeon(R) Platinum 8481C CPU @ 2.70GHz
flags\t\t: fpu sse2 avx2 fma avx512f avx512_bf16 amx_bf16
"""


@pytest.mark.parametrize("q", [0.01, 0.25, 0.5, 0.9, 0.95, 0.99, 0.999])
def test_quantile_is_the_inclusive_method_of_statistics_and_numpy(q: float) -> None:
    values = [float(x) for x in np.random.default_rng(7).exponential(10.0, 257)]

    expected = statistics.quantiles(values, n=1000, method="inclusive")[round(q * 1000) - 1]

    assert quantile(values, q) == pytest.approx(expected)
    assert quantile(values, q) == pytest.approx(float(np.percentile(values, q * 100)))


def test_quantile_of_few_values() -> None:
    assert math.isnan(quantile([], 0.5))
    assert quantile([3.0], 0.95) == 3.0
    assert (quantile([4.0, 1.0, 2.0], 0.0), quantile([4.0, 1.0, 2.0], 1.0)) == (1.0, 4.0)
    assert quantile([1.0, 2.0], 0.5) == 1.5


def test_process_cpu_counts_this_process_and_zero_for_none_or_gone() -> None:
    before = process_cpu_s(os.getpid())
    deadline = time.process_time() + 0.2
    while time.process_time() < deadline:
        pass

    assert process_cpu_s(os.getpid()) - before >= 0.1
    assert process_cpu_s(None) == 0.0
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    assert process_cpu_s(gone.pid) == 0.0


def test_tree_cpu_adds_the_live_processes_below() -> None:
    """A parent that sleeps while its child spins: the child's CPU counts in the tree."""
    child = "import time\nt = time.process_time() + 0.3\nwhile time.process_time() < t: pass\n"
    child += "time.sleep(60)"
    parent = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"import subprocess, sys, time\nsubprocess.Popen([sys.executable, '-c', {child!r}])\n"
            "time.sleep(60)",
        ]
    )
    try:
        deadline = time.monotonic() + 30
        while not (found := descendants(parent.pid)) or process_cpu_s(found[0]) < 0.25:
            assert time.monotonic() < deadline, "the child never spun"
            time.sleep(0.05)

        assert tree_cpu_s(parent.pid) >= process_cpu_s(parent.pid) + 0.25
    finally:
        for pid in descendants(parent.pid):
            os.kill(pid, 9)
        parent.kill()
        parent.wait()


class FakeChild:
    def __init__(self, alive: bool) -> None:
        self.name, self.started, self._alive = "svc", False, alive

    def start(self) -> None:
        self.started = True

    def alive(self) -> bool:
        return self._alive

    def tail(self, lines: int = 40) -> str:
        return "last log line"


def test_start_and_wait_returns_once_the_url_answers_200() -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.SimpleHTTPRequestHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    child = FakeChild(alive=True)
    try:
        start_and_wait(child, f"http://127.0.0.1:{server.server_address[1]}/", timeout=10)
    finally:
        server.shutdown()
    assert child.started


def test_start_and_wait_reports_an_exit_or_a_timeout_with_the_log() -> None:
    with pytest.raises(RuntimeError, match="svc exited:\nlast log line"):
        start_and_wait(FakeChild(alive=False), "http://127.0.0.1:9/", timeout=10)
    with pytest.raises(RuntimeError, match="svc not ready in 0 s:\nlast log line"):
        start_and_wait(FakeChild(alive=True), "http://127.0.0.1:9/", timeout=0.3)


def test_machine_reads_the_model_and_the_flags_that_choose_kernels() -> None:
    found = machine(CPUINFO)

    assert found["cpu"] == "Intel(R) Xeon(R) Platinum 8481C CPU @ 2.70GHz"
    assert found["flags"] == ["avx2", "fma", "avx512f", "avx512_bf16", "amx_bf16"]
    assert found["cpus"] == os.cpu_count()
    assert set(machine()["flags"]) <= set(RELEVANT_FLAGS)


def test_machine_line_names_the_flags_present_and_missing() -> None:
    line = machine_line(machine(CPUINFO))

    assert line.startswith("Machine: Intel(R) Xeon(R) Platinum 8481C CPU @ 2.70GHz, ")
    assert "flags avx2 fma avx512f avx512_bf16 amx_bf16 (not avx512_vnni amx_tile amx_int8)" in line
    assert "not recorded" in machine_line(None)


def test_load_average_is_three_numbers() -> None:
    assert [float(x) for x in load_average().split()] == pytest.approx(os.getloadavg(), abs=0.5)


def test_table_aligns_columns_and_writes_each_cell() -> None:
    assert table(["N", "engine", "jobs/s"], [[1, "simple", "0.50"]], align="rlr") == [
        "| N | engine | jobs/s |",
        "|---:|---|---:|",
        "| 1 | simple | 0.50 |",
    ]
    assert table(["a", "b"], []) == ["| a | b |", "|---|---|"]


def test_write_result_puts_the_machine_under_the_title_and_into_the_json(tmp_path: Path) -> None:
    measured_on = machine(CPUINFO)
    fig, ax = subplots(figsize=(2, 2))
    ax.plot([1, 2], [3, 4])

    write_result(
        tmp_path / "engine-0.5",
        ["# Title", "", "Body.", ""],
        machine=measured_on,
        data={"runs": [1]},
        figure=fig,
    )

    md = (tmp_path / "engine-0.5.md").read_text()
    assert md == f"# Title\n\n{machine_line(measured_on)}\n\nBody.\n"
    payload = json.loads((tmp_path / "engine-0.5.json").read_text())
    assert payload == {"machine": measured_on, "runs": [1]}
    assert (tmp_path / "engine-0.5.png").read_bytes().startswith(b"\x89PNG")


def test_write_result_without_data_or_figure_writes_the_report_only(tmp_path: Path) -> None:
    write_result(tmp_path / "out" / "memory", ["# Title", "Body."], machine=None)

    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["memory.md"]
    assert (tmp_path / "out" / "memory.md").read_text().splitlines()[:4] == [
        "# Title",
        "",
        machine_line(None),
        "",
    ]


def _imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
    return found


def test_bench_never_imports_the_tests() -> None:
    offenders = {
        p.name: sorted(m for m in _imports(p) if m == "tests" or m.startswith("tests."))
        for p in BENCH.glob("*.py")
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_every_benchmark_writes_its_results_through_the_harness() -> None:
    benchmarks = [p for p in BENCH.glob("*.py") if not p.name.startswith("_")]
    without = [p.name for p in benchmarks if "bench._harness" not in _imports(p)]

    assert len(benchmarks) >= 17 and without == []
