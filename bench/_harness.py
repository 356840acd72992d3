"""What every benchmark shares: quantiles, CPU accounting, starting a service, the machine a
result was measured on, markdown tables, plots, and writing the result files.

A benchmark writes NAME.md (the report), usually NAME.json (its numbers) and NAME.png (a
plot) under `--out` (bench/results/ by default) with `write_result`, which puts the machine
line under the report's title and the machine into the JSON: these 2-core machines differ
in CPU model and instruction set (bf16 and int8 kernels need avx512_bf16 / amx), so a
number without its CPU cannot be compared with another.

CPU accounting reads Linux's /proc: a process's CPU seconds (`process_cpu_s`, its reaped
children included), a process tree's (`tree_cpu_s`), the whole machine's busy seconds
(`machine_busy_s`); a window's share is the difference of two readings.
"""

from __future__ import annotations

import json
import math
import os
import platform
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from matplotlib.figure import Figure

RESULTS = Path(__file__).parent / "results"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
RELEVANT_FLAGS = (
    "avx2",
    "fma",
    "avx512f",
    "avx512_vnni",
    "avx512_bf16",
    "amx_tile",
    "amx_bf16",
    "amx_int8",
)
"""The instruction-set flags torch's CPU kernels choose by (fp32 matmuls: avx2/avx512f;
bf16: avx512_bf16 or amx_bf16; int8: avx512_vnni or amx_int8)."""


# ------------------------------------------------------------------------------- statistics


def quantile(values: Sequence[float], q: float) -> float:
    """The `q` quantile (0 <= q <= 1) by linear interpolation between the closest ranks (the
    "inclusive" method of `statistics.quantiles`, numpy's default); NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    position = (len(ordered) - 1) * q
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


# ----------------------------------------------------------------------------- CPU accounting


def _stat_fields(pid: int) -> list[str]:
    # The command name (field 2) may hold spaces and parentheses: split after its last ")".
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def process_cpu_s(pid: int | None) -> float:
    """User + system CPU seconds of a process and its reaped children (/proc/PID/stat); 0.0
    for no pid or a process that is gone."""
    if not pid:
        return 0.0
    try:
        fields = _stat_fields(pid)
    except OSError:
        return 0.0
    return sum(int(v) for v in fields[11:15]) / CLOCK_TICKS


def descendants(pid: int) -> list[int]:
    """The live processes below `pid` (children, their children, ...)."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int(_stat_fields(int(entry.name))[1])
        except (OSError, ValueError, IndexError):
            continue
        parents.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        children = parents.get(todo.pop(), [])
        found += children
        todo += children
    return found


def tree_cpu_s(pid: int | None) -> float:
    """CPU seconds of a process and every live process below it (an engine process, uvicorn's
    workers)."""
    if not pid:
        return 0.0
    return process_cpu_s(pid) + sum(process_cpu_s(p) for p in descendants(pid))


def machine_busy_s() -> float:
    """Busy (not idle, not iowait) CPU seconds of the whole machine since boot (/proc/stat)."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(values[:8]) - values[3] - values[4]) / CLOCK_TICKS


def own_cpu_s() -> float:
    """User + system CPU seconds of this process (its threads included)."""
    return time.process_time()


def load_average() -> str:
    """The 1, 5 and 15 minute load averages, e.g. "1.7 1.9 2.0"."""
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


# ---------------------------------------------------------------------------------- processes


class Process(Protocol):
    """What `start_and_wait` needs of a child process (memq.ops.process's `Child` has it)."""

    name: str

    def start(self) -> None: ...

    def alive(self) -> bool: ...

    def tail(self, lines: int = 40) -> str: ...


def start_and_wait(child: Process, url: str, timeout: float) -> None:
    """Start `child` and return once GET `url` answers 200; `RuntimeError` with the end of
    its log when it exits first or is not ready within `timeout` seconds."""
    import httpx

    child.start()
    deadline = time.monotonic() + timeout
    while True:
        if not child.alive():
            raise RuntimeError(f"{child.name} exited:\n{child.tail()}")
        try:
            if httpx.get(url, timeout=2.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{child.name} not ready in {timeout:.0f} s:\n{child.tail()}")
        time.sleep(0.2)


# ------------------------------------------------------------------------------------ machine


def machine(cpuinfo: str | None = None) -> dict[str, Any]:
    """The CPU this process runs on: model name, CPU count and the `RELEVANT_FLAGS` it has
    (from /proc/cpuinfo, or the text given)."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            cpuinfo = ""
    fields: dict[str, str] = {}
    for line in cpuinfo.splitlines():
        name, sep, value = line.partition(":")
        if sep and name.strip() not in fields:
            fields[name.strip()] = value.strip()
    flags = set(fields.get("flags", "").split())
    return {
        "cpu": fields.get("model name") or platform.processor() or platform.machine(),
        "cpus": os.cpu_count() or 1,
        "flags": [f for f in RELEVANT_FLAGS if f in flags],
        "python": platform.python_version(),
    }


def machine_line(info: Mapping[str, Any] | None) -> str:
    """One line naming the machine a result was measured on, e.g. "Machine: Intel(R) Xeon(R)
    ..., 2 CPUs; flags avx2 fma avx512f (not avx512_bf16 amx_bf16 ...); Python 3.11.9."."""
    if not info:
        return "Machine: not recorded (the result predates bench/_harness.py)."
    have = [f for f in RELEVANT_FLAGS if f in info["flags"]]
    missing = [f for f in RELEVANT_FLAGS if f not in info["flags"]]
    flags = " ".join(have) or "none of " + " ".join(RELEVANT_FLAGS)
    if have and missing:
        flags += f" (not {' '.join(missing)})"
    return f"Machine: {info['cpu']}, {info['cpus']} CPUs; flags {flags}; Python {info['python']}."


# ------------------------------------------------------------------------------------ reports


def table(header: Sequence[str], rows: Iterable[Sequence[object]], align: str = "") -> list[str]:
    """A markdown table: the header, the rule and one line per row (cells as `str()` gives
    them). `align` has one letter per column, `l` (default) or `r`."""
    rule = ["---:" if align[i : i + 1] == "r" else "---" for i in range(len(header))]
    return [
        "| " + " | ".join(header) + " |",
        "|" + "|".join(rule) + "|",
        *("| " + " | ".join(str(cell) for cell in row) + " |" for row in rows),
    ]


def subplots(*args: Any, **kwargs: Any) -> tuple[Figure, Any]:
    """`matplotlib.pyplot.subplots` on the Agg backend (no display)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(*args, **kwargs)
    return fig, axes


def write_result(
    stem: Path,
    markdown: Sequence[str],
    *,
    machine: Mapping[str, Any] | None,
    data: Mapping[str, Any] | None = None,
    figure: Figure | None = None,
    dpi: int = 110,
) -> None:
    """Write STEM.md, STEM.json when `data` is given, STEM.png when `figure` is given.

    The report's first line is its title; `machine_line(machine)` goes right below it, so
    every report names the CPU it was measured on. The JSON is `data` with the machine under
    "machine". The figure is laid out tightly, saved at `dpi` and closed.
    """
    stem.parent.mkdir(parents=True, exist_ok=True)
    title, *rest = markdown
    lines = [title, "", machine_line(machine), *(rest if rest and rest[0] == "" else ["", *rest])]
    _with_suffix(stem, ".md").write_text("\n".join(lines).rstrip("\n") + "\n")
    if data is not None:
        payload = {"machine": machine, **data}
        _with_suffix(stem, ".json").write_text(json.dumps(payload, indent=2) + "\n")
    if figure is not None:
        import matplotlib.pyplot as plt

        figure.tight_layout()
        figure.savefig(_with_suffix(stem, ".png"), dpi=dpi)
        plt.close(figure)


def _with_suffix(stem: Path, suffix: str) -> Path:
    # Not Path.with_suffix: a stem such as "engine-0.5" must keep its dot.
    return stem.parent / (stem.name + suffix)
