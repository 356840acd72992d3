"""Stage-1 engine benchmark: simple vs batched, in process, closed-loop clients.

The model is the GPT-2 124M architecture (`GPT2Config()` defaults) with random weights
from a fixed seed: the same compute as real GPT-2, no Hugging Face Hub needed. Every job
generates exactly `--new-tokens` tokens: the served model declares no EOS token
(`eos_token_id=None`), so neither engine can stop early on random weights, and the
requests carry `stop=[]`.

For each N in `--clients` and each engine (interleaved), N client threads each submit a
job, wait for it and submit the next, like Celery's threads pool. A run has a warm-up
phase (until every client has finished one job, so queues are full) and a measured phase
(at least `--min-seconds`, and until every client has finished one job started inside
it). Throughput counts tokens whose `on_token` fell inside the measured phase; latency
and time to first token come from jobs started and finished inside it.

    .venv/bin/python -m bench.engine_bench            # full run (about 10 minutes)
    .venv/bin/python -m bench.engine_bench --quick    # smoke run (about 2 minutes)
"""

from __future__ import annotations

import argparse
import json
import os
import random
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from bench._harness import RESULTS, machine, own_cpu_s, quantile, subplots, table, write_result
from bench._models import gpt2_124m_random
from bench._workload import token_prompts
from memq.contracts import GenerationParams
from worker.config import WorkerSettings
from worker.engine import build_engine
from worker.engine.base import Engine, GenerationRequest

if TYPE_CHECKING:
    from matplotlib.figure import Figure


@dataclass
class RunStats:
    engine: str
    clients: int
    jobs: int
    jobs_per_s: float
    tokens_per_s: float
    p50_latency_s: float
    p95_latency_s: float
    p50_ttft_s: float
    p95_ttft_s: float
    measured_s: float
    cpu_share: float  # this process's CPU time / (window x cores): < ~0.9 means contention


def run_closed_loop(
    engine: Engine, clients: int, prompts: list[list[int]], new_tokens: int, min_seconds: float
) -> RunStats:
    params = GenerationParams(max_new_tokens=new_tokens, stop=[])
    lock = threading.Lock()
    token_times: list[float] = []
    finished_first = [0] * clients  # jobs finished per client, for the phase changes
    jobs: list[tuple[float, float, float]] = []  # (start, first token, end)
    phase = {"measure_from": float("inf"), "stop": False}
    started_in_measure = [False] * clients

    def client(index: int) -> None:
        rng = random.Random(index)
        while not phase["stop"]:
            ids = prompts[rng.randrange(len(prompts))]
            first: list[float] = []

            def on_token(n: int, _text: str, first: list[float] = first) -> None:
                now = time.monotonic()
                if n == 1:
                    first.append(now)
                with lock:
                    token_times.append(now)

            start = time.monotonic()
            out = engine.generate(GenerationRequest(ids, params, on_token=on_token))
            end = time.monotonic()
            if len(out.token_ids) != new_tokens:
                raise RuntimeError(f"{engine.name}: {len(out.token_ids)} tokens, not {new_tokens}")
            with lock:
                finished_first[index] += 1
                if start >= phase["measure_from"]:
                    jobs.append((start, first[0], end))
                    started_in_measure[index] = True

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(clients)]
    for t in threads:
        t.start()
    while min(finished_first) < 1:
        time.sleep(0.05)
    measure_from = time.monotonic()
    cpu_from = own_cpu_s()
    phase["measure_from"] = measure_from
    while time.monotonic() - measure_from < min_seconds or not all(started_in_measure):
        time.sleep(0.05)
    measure_to = time.monotonic()
    cpu_used = own_cpu_s() - cpu_from
    phase["stop"] = True
    for t in threads:
        t.join()
    window = measure_to - measure_from
    with lock:
        tokens = sum(1 for t in token_times if measure_from <= t < measure_to)
        done = [j for j in jobs if j[2] <= measure_to]
    latencies = [end - start for start, _, end in done]
    ttfts = [first - start for start, first, _ in done]
    return RunStats(
        engine=engine.name,
        clients=clients,
        jobs=len(done),
        jobs_per_s=tokens / window / new_tokens,
        tokens_per_s=tokens / window,
        p50_latency_s=quantile(latencies, 0.50),
        p95_latency_s=quantile(latencies, 0.95),
        p50_ttft_s=quantile(ttfts, 0.50),
        p95_ttft_s=quantile(ttfts, 0.95),
        measured_s=window,
        cpu_share=cpu_used / (window * (os.cpu_count() or 1)),
    )


def write_report(
    out: Path, runs: list[RunStats], meta: dict[str, Any], measured_on: dict[str, Any] | None
) -> None:
    """OUT.md, OUT.json and OUT.png."""
    by_key = {(r.engine, r.clients): r for r in runs}
    lines = [
        "# Engine benchmark (stage 1: in process)",
        "",
        "GPT-2 124M architecture, random weights (seed 0), "
        f"{meta['dtype']}, {meta['new_tokens']} new tokens per job (no EOS), prompts "
        f"{meta['prompt_tokens']} tokens, torch threads {meta['torch_threads']}, "
        f"batched knobs {meta['knobs']}. Closed-loop clients; generated by "
        f"`{meta['command']}` in {meta['wall_s']:.0f} s.",
        "",
        *table(
            [
                *("N", "engine", "jobs/s", "tokens/s", "p50 latency s", "p95 latency s"),
                *("p50 TTFT s", "p95 TTFT s", "jobs measured", "CPU share"),
            ],
            (
                [
                    *(r.clients, r.engine, f"{r.jobs_per_s:.2f}", f"{r.tokens_per_s:.1f}"),
                    *(f"{r.p50_latency_s:.2f}", f"{r.p95_latency_s:.2f}"),
                    *(f"{r.p50_ttft_s:.3f}", f"{r.p95_ttft_s:.3f}", r.jobs, f"{r.cpu_share:.0%}"),
                ]
                for r in runs
            ),
            align="rlrrrrrrrr",
        ),
        "",
        "CPU share: this process's CPU time over the measured window ÷ (window × cores). "
        "The simple engine sits near 50% from N = 4: its torch work hops between caller "
        "threads and runs on about one core (load average stayed near 1, so no other "
        "process was competing); check this column before trusting a run.",
        "",
        "## batched ÷ simple",
        "",
    ]
    ratios = []
    for n in sorted({r.clients for r in runs}):
        b, s = by_key.get(("batched", n)), by_key.get(("simple", n))
        if b is None or s is None:
            continue
        ratios.append(
            [
                n,
                f"{b.jobs_per_s / s.jobs_per_s:.2f}×",
                f"{b.tokens_per_s / s.tokens_per_s:.2f}×",
                f"{b.p50_latency_s / s.p50_latency_s:.2f}×",
                f"{b.p95_latency_s / s.p95_latency_s:.2f}×",
                f"{b.p50_ttft_s / s.p50_ttft_s:.2f}×",
            ]
        )
    lines += table(
        ["N", "jobs/s", "tokens/s", "p50 latency", "p95 latency", "p50 TTFT"], ratios, "rrrrrr"
    )
    data = {"meta": meta, "runs": [asdict(r) for r in runs]}
    write_result(out, lines, machine=measured_on, data=data, figure=plot(runs))


def plot(runs: list[RunStats]) -> Figure:
    fig, (ax_tps, ax_lat) = subplots(1, 2, figsize=(11, 4.2))
    for engine, marker in (("simple", "o"), ("batched", "s")):
        rs = sorted((r for r in runs if r.engine == engine), key=lambda r: r.clients)
        ns = [r.clients for r in rs]
        ax_tps.plot(ns, [r.tokens_per_s for r in rs], marker=marker, label=engine)
        ax_lat.plot(ns, [r.p50_latency_s for r in rs], marker=marker, label=f"{engine} p50")
        ax_lat.plot(
            ns, [r.p95_latency_s for r in rs], marker=marker, linestyle="--", label=f"{engine} p95"
        )
    for ax in (ax_tps, ax_lat):
        ax.set_xscale("log", base=2)
        ax.set_xlabel("concurrent clients (N)")
        ax.grid(alpha=0.3)
        ax.legend()
    ax_tps.set_ylabel("generated tokens/s")
    ax_tps.set_title("Throughput")
    ax_lat.set_ylabel("job latency (s)")
    ax_lat.set_yscale("log")
    ax_lat.set_title("Latency")
    fig.suptitle("memq engines: GPT-2 124M (random weights), 2-core CPU")
    return fig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="N=1,4,16; 32 tokens; short phases")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 4, 16, 32])
    parser.add_argument("--engines", nargs="+", default=["simple", "batched"])
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--min-seconds", type=float, default=20.0)
    parser.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32")
    parser.add_argument("--max-batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--out", type=Path, default=RESULTS / "engine")
    args = parser.parse_args()
    if args.quick:
        args.clients, args.new_tokens, args.min_seconds = [1, 4, 16], 32, 5.0
    torch.set_num_threads(args.threads)
    dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16}[args.dtype]
    lm = gpt2_124m_random(dtype)
    prompts = token_prompts(64, seed=1)
    started = time.monotonic()
    runs: list[RunStats] = []
    for n in args.clients:
        for name in args.engines:
            settings = WorkerSettings(
                service_token="bench",  # type: ignore[arg-type]
                engine=name,
                max_batch_size=args.max_batch_size,
            )
            engine = build_engine(settings, lm)
            try:
                stats = run_closed_loop(engine, n, prompts, args.new_tokens, args.min_seconds)
            finally:
                engine.close()
            runs.append(stats)
            print(json.dumps(asdict(stats)), flush=True)
    meta = {
        "dtype": args.dtype,
        "new_tokens": args.new_tokens,
        "prompt_tokens": "16-64 (random ids)",
        "torch_threads": torch.get_num_threads(),
        "knobs": {"max_batch_size": args.max_batch_size},
        "command": "python -m bench.engine_bench" + (" --quick" if args.quick else ""),
        "wall_s": time.monotonic() - started,
    }
    write_report(args.out, runs, meta, machine())


if __name__ == "__main__":
    main()
