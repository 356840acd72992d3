"""Horizontal scaling: throughput of 1 and 2 worker processes under the same load, one run.

One stack (redis-server, memory service, gateway, two Celery workers with one torch thread
each, `MEMQ_TORCH_THREADS=1`) serves GPT-2 124M with random weights (the compute of the real
model; the saved model declares no EOS, so every job generates exactly `--new-tokens`). For
the 1-worker windows the second worker is stopped; for the 2-worker windows it is started
again and warmed up. Windows alternate (1, 2, 1, 2, ...) so machine noise hits both alike.

A window submits a burst of `--jobs` generate jobs at once (the same prompts every window)
and measures from the first submit to the last job's end, read from the job records in Redis.
Each worker batches up to `--batch` jobs (`MEMQ_MAX_BATCH_SIZE`), so one and two workers run
the same batch shapes and the ratio measures scaling, not batching. Jobs retrieve nothing
(`--retrieval` adds a memory search to every job).

Beside throughput, each window records where the CPU went: the CPU seconds of each worker and
of the rest of the stack (from /proc/PID/stat), the machine's busy CPU seconds (/proc/stat),
and what other processes used (machine − stack), with the load average before the window.

    .venv/bin/python -m bench.scaling_bench            # 3 rounds of each (~5 min on 2 quiet cores)
    .venv/bin/python -m bench.scaling_bench --quick    # smoke run
Writes bench/results/scaling.md, scaling.json and scaling.png.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import statistics
import sys
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import redis

from bench._harness import (
    RESULTS,
    machine,
    machine_busy_s,
    process_cpu_s,
    subplots,
    table,
    write_result,
)
from bench._models import save_gpt2_124m_random
from bench._workload import MEMORIES, NAMESPACE, word_prompt
from memq.contracts import JobStatus
from memq.ops.launcher import Stack, start_stack
from memq.ops.process import Child
from memq.store.jobs import JobStore

if TYPE_CHECKING:
    from matplotlib.figure import Figure


@dataclass
class Window:
    workers: int
    round: int
    jobs: int
    seconds: float
    jobs_per_s: float
    tokens_per_s: float
    jobs_per_worker: list[int]
    worker_cpu_s: list[float]
    """CPU seconds each worker process used during the window."""
    stack_other_cpu_s: float
    """CPU seconds of Redis, the memory service and the gateway."""
    machine_busy_cpu_s: float
    outside_cpu_s: float
    """Busy CPU seconds of processes outside the stack (other users of the machine)."""
    load_avg_1m: float
    cpus: int = field(default_factory=lambda: os.cpu_count() or 1)
    nice: int = field(default_factory=lambda: os.nice(0))
    """Niceness the stack ran at (`nice -n -10 python -m bench.scaling_bench` on a shared
    machine gives the stack's processes priority over everyone else's)."""


def prompts(count: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [word_prompt(rng, 12, 40) for _ in range(count)]


def run_burst(
    stack: Stack, store: JobStore, texts: list[str], new_tokens: int, retrieval: bool
) -> tuple[float, list[dict[str, Any]]]:
    """Submit every prompt at once, wait until all jobs ended: (seconds, job records)."""
    ids: list[str] = []
    with httpx.Client(base_url=stack.gateway_url, timeout=120) as http:
        start = time.perf_counter()
        for text in texts:
            body: dict[str, object] = {
                "type": "generate",
                "prompt": text,
                "params": {"max_new_tokens": new_tokens},
            }
            if retrieval:
                body["memory"] = {"namespace": NAMESPACE, "top_k": 3}
            resp = http.post("/v1/jobs", json=body)
            resp.raise_for_status()
            ids.append(resp.json()["id"])
        pending = set(ids)
        ended_at = start
        deadline = start + 1800
        while pending:
            for job_id in list(pending):
                record = store.get("default", job_id)
                if record is not None and record.status.terminal:
                    pending.discard(job_id)
                    ended_at = time.perf_counter()
            if time.perf_counter() > deadline:
                raise TimeoutError(f"{len(pending)} jobs did not end within 30 min")
            time.sleep(0.05)
        jobs = [http.get(f"/v1/jobs/{i}").json() for i in ids]
    failed = [j for j in jobs if j["status"] != JobStatus.succeeded.value]
    if failed:
        raise RuntimeError(f"{len(failed)} jobs did not succeed: {failed[0].get('error')}")
    return ended_at - start, jobs


def wait_heartbeat(store: JobStore, worker: Child, timeout_s: float = 300) -> str:
    """The worker id of `worker` once it heartbeats (its model is loaded)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for worker_id in store.leases.live_workers(within_s=30):
            if worker_id.split(":")[1] == str(worker.pid):
                return worker_id
        time.sleep(0.2)
    raise TimeoutError(f"{worker.name} (pid {worker.pid}) sent no heartbeat in {timeout_s:.0f} s")


def measure(
    stack: Stack,
    store: JobStore,
    workers: int,
    round_: int,
    args: argparse.Namespace,
) -> Window:
    active = stack.workers[:workers]
    others = [c for c in stack.procs.values() if not c.name.startswith("worker")]
    load = os.getloadavg()[0]
    before_workers = [process_cpu_s(w.pid) for w in active]
    before_others = sum(process_cpu_s(c.pid) for c in others)
    before_machine = machine_busy_s()
    seconds, jobs = run_burst(stack, store, prompts(args.jobs), args.new_tokens, args.retrieval)
    worker_cpu = [process_cpu_s(w.pid) - b for w, b in zip(active, before_workers, strict=True)]
    other_cpu = sum(process_cpu_s(c.pid) for c in others) - before_others
    busy = machine_busy_s() - before_machine
    by_pid = Counter(str(j["worker"]).split(":")[1] for j in jobs)
    tokens = sum(int(j["result"]["usage"]["completion_tokens"]) for j in jobs)
    return Window(
        workers=workers,
        round=round_,
        jobs=len(jobs),
        seconds=seconds,
        jobs_per_s=len(jobs) / seconds,
        tokens_per_s=tokens / seconds,
        jobs_per_worker=[by_pid.get(str(w.pid), 0) for w in active],
        worker_cpu_s=worker_cpu,
        stack_other_cpu_s=other_cpu,
        machine_busy_cpu_s=busy,
        outside_cpu_s=max(busy - sum(worker_cpu) - other_cpu, 0.0),
        load_avg_1m=load,
    )


def write_report(
    windows: list[Window],
    args: argparse.Namespace,
    out: Path,
    measured_on: dict[str, Any] | None,
) -> None:
    one = [w for w in windows if w.workers == 1]
    two = [w for w in windows if w.workers == 2]
    ratio = statistics.median(w.jobs_per_s for w in two) / statistics.median(
        w.jobs_per_s for w in one
    )
    pairs = [b.jobs_per_s / a.jobs_per_s for a, b in zip(one, two, strict=False)]
    shares = [
        (sum(b.worker_cpu_s) / b.seconds) / (sum(a.worker_cpu_s) / a.seconds)
        for a, b in zip(one, two, strict=False)
    ]
    cpus = windows[0].cpus

    def cpu_per_job(ws: list[Window]) -> float:
        return statistics.median(sum(w.worker_cpu_s) / w.jobs for w in ws)

    overhead = cpu_per_job(two) / cpu_per_job(one)
    quiet = [w for w in windows if w.outside_cpu_s < 0.25 * w.seconds]
    lines = [
        "# Horizontal scaling: 1 vs 2 worker processes",
        "",
        f"GPT-2 124M architecture, random weights; a burst of {args.jobs} generate jobs of "
        f"{args.new_tokens} new tokens, submitted at once; each worker one torch thread "
        f"(`MEMQ_TORCH_THREADS=1`) and up to {args.batch} jobs per batch "
        f"(`MEMQ_MAX_BATCH_SIZE={args.batch}`); "
        + ("retrieval before every job; " if args.retrieval else "no retrieval; ")
        + f"one stack, the second worker stopped for the 1-worker windows; windows alternate. "
        f"Machine: {cpus} CPUs"
        + (
            f"; the stack ran at niceness {windows[0].nice}, ahead of the machine's other "
            "processes (nice 0)."
            if windows[0].nice < 0
            else "."
        ),
        "",
        f"**2 workers ÷ 1 worker: {ratio:.2f}× jobs/s** (median of each; per round: "
        + ", ".join(f"{p:.2f}×" for p in pairs)
        + "). Target on the 2-core machine: ≥ 1.8×.",
        "",
        f"Worker CPU seconds per job, 2 workers ÷ 1 worker: **{overhead:.2f}** (1.00: the "
        "second worker costs no extra CPU per job, so throughput scales with the CPU the "
        "workers get). CPU the workers got (cores, averaged over the window), 2 ÷ 1 per "
        "round: "
        + ", ".join(f"{r:.2f}×" for r in shares)
        + ". "
        + (
            f"{len(quiet)} of {len(windows)} windows ran with other processes using less "
            "than a quarter of a core."
            if quiet
            else "**No window ran on a quiet machine**: other processes kept the cores busy "
            "(column *outside the stack*), so the ratio shows how the workers' CPU share "
            "changed, not what a free second core gives. (Linux shares the CPU between "
            "sessions — autogroup scheduling — and every stack process, like every other "
            "test run on the machine, has its own: niceness does not buy a worker more.)"
        ),
        "",
        *table(
            [
                *("round", "workers", "jobs/s", "tokens/s", "s", "jobs per worker"),
                *("worker CPU s", "worker CPU s / job", "worker CPU ÷ wall"),
                *("rest of stack CPU s", "outside the stack CPU s", "machine busy ÷ capacity"),
                "load avg (1 min) before",
            ],
            (
                [
                    *(w.round, w.workers, f"{w.jobs_per_s:.2f}", f"{w.tokens_per_s:.1f}"),
                    *(f"{w.seconds:.1f}", " / ".join(map(str, w.jobs_per_worker))),
                    " / ".join(f"{c:.1f}" for c in w.worker_cpu_s),
                    f"{sum(w.worker_cpu_s) / w.jobs:.3f}",
                    " + ".join(f"{c / w.seconds:.2f}" for c in w.worker_cpu_s),
                    *(f"{w.stack_other_cpu_s:.1f}", f"{w.outside_cpu_s:.1f}"),
                    f"{w.machine_busy_cpu_s / (w.seconds * w.cpus):.0%}",
                    f"{w.load_avg_1m:.2f}",
                ]
                for w in windows
            ),
        ),
        "",
        "Worker CPU ÷ wall is each worker's share of one core during the window (1.00 = a "
        "whole core). Outside the stack = the machine's busy CPU seconds minus the stack's: "
        "other processes competing for the same cores.",
    ]
    data = {"windows": [asdict(w) for w in windows]}
    figure = plot(windows, ratio)
    write_result(out / "scaling", lines, machine=measured_on, data=data, figure=figure)


def plot(windows: list[Window], ratio: float) -> Figure:
    cpus = windows[0].cpus
    fig, axes = subplots(1, 2, figsize=(12, 4.5))
    labels = [f"r{w.round}\n{w.workers}w" for w in windows]
    colors = ["tab:blue" if w.workers == 1 else "tab:orange" for w in windows]
    axes[0].bar(labels, [w.jobs_per_s for w in windows], color=colors)
    axes[0].set_title(f"jobs/s per window (2 ÷ 1 workers: {ratio:.2f}×)")
    axes[0].set_ylabel("jobs/s")
    bottom = [0.0] * len(windows)
    for name, values in (
        ("workers", [sum(w.worker_cpu_s) / w.seconds for w in windows]),
        ("rest of stack", [w.stack_other_cpu_s / w.seconds for w in windows]),
        ("outside the stack", [w.outside_cpu_s / w.seconds for w in windows]),
    ):
        axes[1].bar(labels, values, bottom=bottom, label=name)
        bottom = [b + v for b, v in zip(bottom, values, strict=True)]
    axes[1].axhline(cpus, color="black", linestyle="--", linewidth=1, label=f"{cpus} cores")
    axes[1].set_title("where the CPU went (cores busy, average over the window)")
    axes[1].legend()
    for ax in axes:
        ax.grid(alpha=0.3, axis="y")
    fig.suptitle(
        "memq horizontal scaling, GPT-2 124M (random weights), one torch thread per worker"
    )
    return fig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=32)
    parser.add_argument("--new-tokens", type=int, default=16)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--retrieval", action="store_true")
    parser.add_argument("--quick", action="store_true", help="one round, 16 jobs of 8 tokens")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument(
        "--report-only", action="store_true", help="rewrite the report from scaling.json"
    )
    args = parser.parse_args()
    if args.report_only:
        saved = json.loads((args.out / "scaling.json").read_text())
        if isinstance(saved, list):  # written before the machine was recorded
            saved = {"machine": None, "windows": saved}
        windows = [Window(**w) for w in saved["windows"]]
        write_report(windows, args, args.out, saved["machine"])
        return
    if args.quick:
        args.jobs, args.new_tokens, args.rounds = 16, 8, 1

    # SIGTERM unwinds like Ctrl-C, so the stack's processes are stopped on the way out.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    measured_on = machine()
    with tempfile.TemporaryDirectory(prefix="memq-scaling-bench-") as tmp:
        root = Path(tmp)
        print("building GPT-2 124M (random weights) …", flush=True)
        model_dir = save_gpt2_124m_random(root / "gpt2-124m-random")
        print("starting the stack with two workers …", flush=True)
        stack = start_stack(
            root / "stack",
            env={
                "MEMQ_MODEL": str(model_dir),
                "MEMQ_TORCH_THREADS": "1",
                "MEMQ_MAX_BATCH_SIZE": str(args.batch),
                "MEMQ_LOG_LEVEL": "WARNING",
                "HF_HUB_OFFLINE": "1",
            },
            workers=2,
        )
        store = JobStore(redis.Redis.from_url(stack.redis_url), prefix=stack.key_prefix)
        try:
            if args.retrieval:
                with httpx.Client(base_url=stack.gateway_url) as http:
                    for text in MEMORIES:
                        http.post("/v1/memories", json={"namespace": NAMESPACE, "text": text})
            second = stack.workers[1]
            windows: list[Window] = []
            for round_ in range(1, args.rounds + 1):
                for workers in (1, 2):
                    if workers == 1:
                        second.stop()
                    else:
                        second.start()
                    for w in stack.workers[:workers]:
                        wait_heartbeat(store, w)
                    # Warm up: the first forwards of a freshly started process are slower.
                    run_burst(stack, store, prompts(2 * args.batch, seed=1), 4, args.retrieval)
                    window = measure(stack, store, workers, round_, args)
                    print(json.dumps(asdict(window)), flush=True)
                    windows.append(window)
                    if len({w.workers for w in windows}) == 2:
                        write_report(windows, args, args.out, measured_on)
        finally:
            store.r.close()
            stack.stop()
    print(f"wrote {args.out / 'scaling.md'} and {args.out / 'scaling.png'}")


if __name__ == "__main__":
    main()
