"""Batch API benchmark: how fast a batch is accepted, and a batch against the same prompts
submitted as individual jobs, end to end, on one stack in one run.

1. Acceptance: upload a `--accept-lines` (10,000) line JSONL file, create the batch, and
   time until it is `in_progress` (every line validated, its job recorded and its message
   sent): lines/s accepted. The batch is then cancelled (timed too) so its lines do not
   run. The worker is paused meanwhile (SIGSTOP), so this times the gateway alone.
2. Throughput: the same `--lines` (1,000) generate requests, greedy, `--new-tokens` each,
   run once as a batch (upload → batch `completed`, output file downloaded) and once as
   individual `POST /v1/jobs` (4 client threads submitting, done when the last job ends),
   in `--rounds` alternating rounds so machine noise hits both alike.

The stack is the real one (redis-server, memory service, one Celery worker with the
batched engine, gateway). `--model tiny` (default) is the 2-layer GPT-2 the tests use: the
model costs little, so the numbers show the queueing and bookkeeping of each way in;
`--model gpt2` is GPT-2 124M with random weights (the compute of the real model).

    .venv/bin/python -m bench.batch_bench                  # ~10 min on 2 cores
    .venv/bin/python -m bench.batch_bench --lines 200 --rounds 4   # the committed run
Writes bench/results/batch.md, batch.json and batch.png.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import statistics
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import redis

from bench._harness import RESULTS, machine, subplots, table, write_result
from bench._models import build_tiny_gpt2, save_gpt2_124m_random
from bench._workload import word_prompt
from memq.ops.launcher import Stack, start_stack

if TYPE_CHECKING:
    from matplotlib.figure import Figure
from memq.store.jobs import JobStore

QUEUE = "memq.jobs"  # MEMQ_QUEUE's default: the stack runs with it


@dataclass
class Acceptance:
    lines: int
    upload_s: float
    accept_s: float
    lines_per_s: float
    cancel_s: float


@dataclass
class Throughput:
    mode: str
    round: int
    lines: int
    seconds: float
    lines_per_s: float
    tokens_per_s: float
    timeline: list[tuple[float, int]] = field(default_factory=list)
    """(seconds since start, lines finished)."""


LOAD: list[float] = []
"""1-minute load averages sampled during the run."""


def sample_load() -> None:
    LOAD.append(os.getloadavg()[0])


def job_body(i: int, new_tokens: int, rng: random.Random) -> dict[str, Any]:
    prompt = word_prompt(rng, 8, 24)
    return {
        "type": "generate",
        "prompt": f"{i}: {prompt}",
        "params": {"max_new_tokens": new_tokens, "temperature": 0},
    }


def jsonl(bodies: list[dict[str, Any]]) -> bytes:
    rows = [
        json.dumps({"custom_id": f"r{i}", "method": "POST", "url": "/v1/jobs", "body": b})
        for i, b in enumerate(bodies)
    ]
    return ("\n".join(rows) + "\n").encode()


def wait_batch(http: httpx.Client, batch_id: str, statuses: set[str], timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        batch = http.get(f"/v1/batches/{batch_id}").json()
        if batch["status"] in statuses:
            return batch
        if batch["status"] == "failed":
            raise RuntimeError(f"batch failed: {batch['errors']}")
        time.sleep(0.05)
    raise TimeoutError(f"batch {batch_id} not {statuses} within {timeout:.0f} s")


def upload(http: httpx.Client, data: bytes) -> str:
    resp = http.post(
        "/v1/files",
        files={"file": ("bench.jsonl", data, "application/jsonl")},
        data={"purpose": "batch"},
    )
    resp.raise_for_status()
    return str(resp.json()["id"])


def drain(stack: Stack, timeout: float = 900) -> None:
    """Wait until no job message waits in any queue."""
    client = redis.Redis.from_url(stack.redis_url)
    queues = [f"{QUEUE}.high", QUEUE, f"{QUEUE}.low"]
    deadline = time.monotonic() + timeout
    try:
        while sum(int(client.llen(q)) for q in queues):
            if time.monotonic() > deadline:
                raise TimeoutError("the job queues did not drain")
            time.sleep(0.5)
    finally:
        client.close()


def measure_acceptance(http: httpx.Client, lines: int, new_tokens: int) -> Acceptance:
    rng = random.Random(1)
    data = jsonl([job_body(i, new_tokens, rng) for i in range(lines)])
    t0 = time.perf_counter()
    file_id = upload(http, data)
    t1 = time.perf_counter()
    created = http.post("/v1/batches", json={"input_file_id": file_id, "endpoint": "/v1/jobs"})
    created.raise_for_status()
    batch_id = created.json()["id"]
    running = wait_batch(http, batch_id, {"in_progress", "finalizing", "completed"}, 600)
    t2 = time.perf_counter()
    assert running["request_counts"]["total"] == lines, running["request_counts"]
    http.post(f"/v1/batches/{batch_id}/cancel").raise_for_status()
    done = wait_batch(http, batch_id, {"cancelled", "completed"}, 900)
    t3 = time.perf_counter()
    counts = done["request_counts"]
    assert counts["completed"] + counts["failed"] == lines, counts
    return Acceptance(lines, t1 - t0, t2 - t1, lines / (t2 - t1), t3 - t2)


def run_batch(http: httpx.Client, bodies: list[dict[str, Any]], rnd: int) -> Throughput:
    data = jsonl(bodies)
    timeline: list[tuple[float, int]] = []
    t0 = time.perf_counter()
    file_id = upload(http, data)
    created = http.post("/v1/batches", json={"input_file_id": file_id, "endpoint": "/v1/jobs"})
    created.raise_for_status()
    batch_id = created.json()["id"]
    while True:
        batch = http.get(f"/v1/batches/{batch_id}").json()
        counts = batch["request_counts"]
        timeline.append((time.perf_counter() - t0, counts["completed"] + counts["failed"]))
        if batch["status"] == "completed":
            break
        if batch["status"] in ("failed", "cancelled", "expired"):
            raise RuntimeError(f"batch ended {batch['status']}")
        time.sleep(0.2)
    output = http.get(f"/v1/files/{batch['output_file_id']}/content")
    output.raise_for_status()
    seconds = time.perf_counter() - t0
    results = [json.loads(raw) for raw in output.text.splitlines()]
    if len(results) != len(bodies):
        raise RuntimeError(f"{len(results)} output lines for {len(bodies)} requests")
    tokens = sum(r["response"]["body"]["result"]["usage"]["completion_tokens"] for r in results)
    return Throughput(
        "batch", rnd, len(bodies), seconds, len(bodies) / seconds, tokens / seconds, timeline
    )


def run_individual(stack: Stack, bodies: list[dict[str, Any]], rnd: int) -> Throughput:
    ids: list[str] = []
    lock = threading.Lock()
    queue = list(bodies)
    t0 = time.perf_counter()

    def submitter() -> None:
        with httpx.Client(base_url=stack.gateway_url, timeout=60) as http:
            while True:
                with lock:
                    if not queue:
                        return
                    body = queue.pop()
                resp = http.post("/v1/jobs", json=body)
                resp.raise_for_status()
                with lock:
                    ids.append(resp.json()["id"])

    threads = [threading.Thread(target=submitter) for _ in range(4)]
    for t in threads:
        t.start()
    store = JobStore(redis.Redis.from_url(stack.redis_url), prefix=stack.key_prefix)
    timeline: list[tuple[float, int]] = []
    try:
        while True:
            with lock:
                submitted = list(ids)
            done = sum(
                1 for s in store.statuses([("default", i) for i in submitted]) if s and s.terminal
            )
            timeline.append((time.perf_counter() - t0, done))
            if done == len(bodies):
                break
            time.sleep(0.2)
        seconds = time.perf_counter() - t0
        tokens = 0
        for job_id in ids:
            record = store.get("default", job_id)
            if record is None or record.result is None:
                raise RuntimeError(f"job {job_id} has no result")
            tokens += record.result.usage.completion_tokens
    finally:
        for t in threads:
            t.join()
        store.r.close()
    return Throughput(
        "individual", rnd, len(bodies), seconds, len(bodies) / seconds, tokens / seconds, timeline
    )


def write_report(
    acceptance: Acceptance,
    runs: list[Throughput],
    args: argparse.Namespace,
    out: Path,
    measured_on: dict[str, Any] | None,
) -> None:
    sample_load()
    model = "the tests' 2-layer GPT-2" if args.model == "tiny" else "GPT-2 124M, random weights"
    lines = [
        "# Batch API benchmark",
        "",
        f"One stack (redis-server, memory service, 1 Celery worker with the batched engine, "
        f"gateway), model: {model}; {args.new_tokens} new tokens per line, greedy. "
        "`python -m bench.batch_bench` "
        f"(`--lines {args.lines} --accept-lines {args.accept_lines} --rounds {args.rounds} "
        f"--model {args.model}`).",
        "",
        "## Acceptance",
        "",
        *table(
            [
                *("lines", "upload s", "accepted (created → in_progress) s"),
                *("lines/s accepted", "cancel of the queued batch s"),
            ],
            [
                [
                    f"{acceptance.lines:,}",
                    f"{acceptance.upload_s:.2f}",
                    f"{acceptance.accept_s:.2f}",
                    f"{acceptance.lines_per_s:,.0f}",
                    f"{acceptance.cancel_s:.2f}",
                ]
            ],
        ),
        "",
        "## End-to-end throughput: one batch vs the same prompts as individual jobs",
        "",
        *table(
            ["round", "mode", "lines", "seconds", "lines/s", "tokens/s"],
            (
                [
                    *(r.round, r.mode, f"{r.lines:,}", f"{r.seconds:.1f}"),
                    *(f"{r.lines_per_s:.1f}", f"{r.tokens_per_s:.0f}"),
                ]
                for r in runs
            ),
        ),
    ]
    by_round = {(r.round, r.mode): r.lines_per_s for r in runs}
    ratios = [
        by_round[(n, "batch")] / by_round[(n, "individual")]
        for n in sorted({r.round for r in runs})
        if (n, "batch") in by_round and (n, "individual") in by_round
    ]
    if ratios:
        shown = ", ".join(f"{x:.2f}×" for x in ratios)
        lines += [
            "",
            f"Batch ÷ individual lines/s per round: {shown}; median "
            f"**{statistics.median(ratios):.2f}×**.",
        ]
    low, high = min(LOAD), max(LOAD)
    lines += [
        "",
        "Batch time runs from the upload to the downloaded output file (validation, "
        "finalization and the file included); individual time from the first `POST /v1/jobs` "
        "to the last job's end (4 client threads submitting). Both are bound by the one "
        "worker (it runs `MEMQ_MAX_BATCH_SIZE` = 32 lines at a time: the steps in the plot): "
        "a batch does not make generation faster, it takes the per-request work off the "
        "client and keeps interactive jobs ahead of it (low priority).",
        "",
        f"Machine: 2 cores shared with other processes; 1-minute load average during the run "
        f"{low:.1f}–{high:.1f}, so absolute numbers are lower than on a quiet machine; the "
        "modes alternate per round so the load hits both alike.",
        "",
    ]
    data = {"acceptance": asdict(acceptance), "runs": [asdict(r) for r in runs]}
    figure = plot(acceptance, runs)
    write_result(out / "batch", lines, machine=measured_on, data=data, figure=figure)


def plot(acceptance: Acceptance, runs: list[Throughput]) -> Figure:
    fig, (left, right) = subplots(1, 2, figsize=(11, 4))
    for r in runs:
        xs = [t for t, _ in r.timeline]
        ys = [n for _, n in r.timeline]
        style = "-" if r.mode == "batch" else "--"
        left.plot(xs, ys, style, label=f"{r.mode} (round {r.round})")
    left.set_xlabel("seconds since submission started")
    left.set_ylabel("lines finished")
    left.set_title("1 batch vs individual jobs")
    left.legend()
    modes = ["batch", "individual"]
    means = []
    for mode in modes:
        rates = [r.lines_per_s for r in runs if r.mode == mode]
        means.append(sum(rates) / len(rates) if rates else 0.0)
    right.bar(modes, means, color=["tab:blue", "tab:orange"])
    right.set_ylabel("lines/s end to end")
    right.set_title(
        f"acceptance: {acceptance.lines:,} lines in {acceptance.accept_s:.1f} s "
        f"({acceptance.lines_per_s:,.0f}/s)"
    )
    return fig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lines", type=int, default=1000)
    parser.add_argument("--accept-lines", type=int, default=10_000)
    parser.add_argument("--new-tokens", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--model", choices=["tiny", "gpt2"], default="tiny")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    measured_on = machine()

    with tempfile.TemporaryDirectory(prefix="memq-batch-bench-") as tmp:
        root = Path(tmp)
        if args.model == "tiny":
            model_dir = build_tiny_gpt2(root / "tiny-gpt2")
        else:
            model_dir = save_gpt2_124m_random(root / "gpt2-124m-random")
        print("starting the stack …", flush=True)
        stack = start_stack(
            root / "stack",
            env={
                "MEMQ_MODEL": str(model_dir),
                "MEMQ_LOG_LEVEL": "WARNING",
                "HF_HUB_OFFLINE": "1",
                "MEMQ_MAX_FILE_BYTES": str(512 * 1024 * 1024),
            },
        )
        try:
            with httpx.Client(base_url=stack.gateway_url, timeout=600) as http:
                # The worker is paused while the big batch is accepted and cancelled: on two
                # shared cores it would otherwise run its lines and slow the gateway it is
                # timing (in production the workers have their own machines).
                worker = stack.procs["worker"].pid
                assert worker is not None
                os.kill(worker, signal.SIGSTOP)
                try:
                    acceptance = measure_acceptance(http, args.accept_lines, args.new_tokens)
                finally:
                    os.kill(worker, signal.SIGCONT)
                # The cancelled lines' messages are still queued (the worker skips each):
                # let it drain them before timing anything else.
                drain(stack)
                print(json.dumps(asdict(acceptance)), flush=True)
                rng = random.Random(2)
                bodies = [job_body(i, args.new_tokens, rng) for i in range(args.lines)]
                runs: list[Throughput] = []
                sample_load()
                for rnd in range(1, args.rounds + 1):
                    order = ["batch", "individual"] if rnd % 2 else ["individual", "batch"]
                    for mode in order:
                        sample_load()
                        run = (
                            run_batch(http, bodies, rnd)
                            if mode == "batch"
                            else run_individual(stack, bodies, rnd)
                        )
                        summary = {k: v for k, v in asdict(run).items() if k != "timeline"}
                        print(json.dumps(summary), flush=True)
                        runs.append(run)
                        write_report(acceptance, runs, args, args.out, measured_on)
        finally:
            stack.stop()
    print(f"wrote {args.out / 'batch.md'} and {args.out / 'batch.png'}")


if __name__ == "__main__":
    main()
