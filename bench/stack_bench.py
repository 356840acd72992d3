"""Full-stack benchmark: simple vs batched engine through HTTP, closed-loop clients.

One command starts one complete stack (redis-server, memory service, one Celery worker,
gateway) per variant (`--variants`: `simple`, `batched` with the decode loop on a thread
of the Celery worker, `batched-process` with it in a process of its own), with the
GPT-2 124M architecture and random weights (same compute as real GPT-2; the saved model
declares no EOS, so every job generates exactly `--new-tokens` tokens). For each N in
`--clients`, the variants are measured back to back (interleaved), so machine noise hits
them alike. Every job retrieves from a memory namespace (the real path: query embedding +
Qdrant search) before generating.

Clients are closed loop: N threads each submit a job over HTTP, wait for its completion
and submit the next. Completion and first-token times come from the job's Redis pub/sub
event streams (no polling load on the gateway). End-to-end overhead = client latency minus the
worker's model time (`result.timings.generation_s`). The worker's resident memory (its
process tree, so an engine process counts) is sampled during every window.

The reference, measured in the same run once the windows are done: Hugging Face
`generate` on a static batch of the largest N with the prompt lengths the stack's jobs had
(prompt + retrieved memories), same weights, dtype and torch threads, greedy, exactly
`--new-tokens` tokens; the median of three runs.

    .venv/bin/python -m bench.stack_bench            # full run (~15 min on 2 cores)
    .venv/bin/python -m bench.stack_bench --quick    # smoke run
Writes bench/results/stack.md and bench/results/stack.png.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import psutil
import redis

from bench._harness import (
    RESULTS,
    load_average,
    machine,
    machine_busy_s,
    own_cpu_s,
    quantile,
    subplots,
    table,
    tree_cpu_s,
    write_result,
)
from bench._models import save_gpt2_124m_random
from bench._workload import MEMORIES, NAMESPACE, word_prompt
from memq.contracts import JobStatus
from memq.ops.launcher import Stack, start_stack
from memq.store.jobs import JobStore

if TYPE_CHECKING:
    from matplotlib.figure import Figure


@dataclass
class Window:
    engine: str
    clients: int
    jobs: int
    jobs_per_s: float
    tokens_per_s: float
    p50_latency_s: float
    p95_latency_s: float
    p50_ttft_s: float
    p50_model_s: float
    p50_overhead_pct: float
    seconds: float
    peak_worker_rss_mb: float
    prompt_tokens: list[int]
    p50_engine_ttft_s: float = float("nan")
    steady_jobs_per_s: float = float("nan")  # N / mean steady latency (Little's law)
    steady_tokens_per_s: float = float("nan")
    cpu_share: dict[str, float] | None = None  # role -> share of the machine's CPUs


VARIANTS: dict[str, dict[str, str]] = {
    "simple": {"MEMQ_ENGINE": "simple"},
    "batched": {"MEMQ_ENGINE": "batched", "MEMQ_ENGINE_PROCESS": "0"},
    "batched-process": {"MEMQ_ENGINE": "batched", "MEMQ_ENGINE_PROCESS": "1"},
}


class RssSampler:
    """Peak resident memory of the worker processes and their children, sampled."""

    def __init__(self, stack: Stack, interval_s: float = 0.5) -> None:
        self._pids = [w.pid for w in stack.workers if w.pid]
        self._interval_s = interval_s
        self._stop = threading.Event()
        self.peak_bytes = 0
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _tree_rss(self) -> int:
        total = 0
        for pid in self._pids:
            try:
                proc = psutil.Process(pid)
                for p in [proc, *proc.children(recursive=True)]:
                    total += p.memory_info().rss
            except psutil.Error:
                continue
        return total

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak_bytes = max(self.peak_bytes, self._tree_rss())
            self._stop.wait(self._interval_s)

    def stop(self) -> float:
        self._stop.set()
        self._thread.join()
        return self.peak_bytes / 2**20


def hf_static_reference(
    model_dir: Path, prompt_tokens: list[int], new_tokens: int, repeats: int = 3
) -> float:
    """Tokens/s of HF `generate` on one static, left-padded batch with these prompt
    lengths (random ids), greedy, exactly `new_tokens` each; the median of `repeats`."""
    import torch
    from transformers import AutoModelForCausalLM

    torch.set_num_threads(psutil.cpu_count(logical=True) or 1)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)  # eval mode
    vocab = int(model.config.vocab_size)
    rng = random.Random(0)
    width = max(prompt_tokens)
    ids = torch.zeros((len(prompt_tokens), width), dtype=torch.long)
    mask = torch.zeros_like(ids)
    for row, n in enumerate(prompt_tokens):
        ids[row, width - n :] = torch.tensor([rng.randrange(vocab) for _ in range(n)])
        mask[row, width - n :] = 1
    rates = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        with torch.inference_mode():
            out = model.generate(
                input_ids=ids,
                attention_mask=mask,
                max_new_tokens=new_tokens,
                min_new_tokens=new_tokens,
                do_sample=False,
                pad_token_id=0,
            )
        elapsed = time.perf_counter() - t0
        assert out.shape[1] == width + new_tokens
        rates.append(len(prompt_tokens) * new_tokens / elapsed)
    del model
    return statistics.median(rates)


class CpuShare:
    """CPU time each part of a stack (and this client process) used during a window, as a
    share of the machine's CPUs: where the cores went."""

    def __init__(self, stack: Stack) -> None:
        self._stack = stack
        self._start = self._read()
        self._t0 = time.perf_counter()

    def _read(self) -> dict[str, float]:
        used = {"client": own_cpu_s(), "machine busy": machine_busy_s()}
        for name, child in self._stack.procs.items():
            role = "worker" if name.startswith("worker") else name
            used[role] = used.get(role, 0.0) + tree_cpu_s(child.pid)
        return used

    def stop(self) -> dict[str, float]:
        end, wall = self._read(), time.perf_counter() - self._t0
        cpus = psutil.cpu_count() or 1
        return {r: (end[r] - self._start.get(r, 0.0)) / wall / cpus for r in end}


def watch_job(store: JobStore, job_id: str, timeout_s: float = 600) -> tuple[float | None, float]:
    """Follow a job's event stream until it ends: (first token time, end time), both
    `time.perf_counter()` as seen by this client."""
    first: float | None = None
    after = "0"
    deadline = time.perf_counter() + timeout_s
    while time.perf_counter() < deadline:
        for event_id, event in store.read_events("default", job_id, after=after, block_ms=1000):
            after = event_id
            now = time.perf_counter()
            if event["event"] == "token" and first is None:
                first = now
            elif event["event"] == "status" and JobStatus(event["status"]).terminal:
                return first, now
    raise TimeoutError(f"job {job_id} did not end within {timeout_s:.0f} s")


def run_window(
    stack: Stack,
    engine: str,
    clients: int,
    jobs: int,
    new_tokens: int,
    seed: int,
    staggered: bool = True,
) -> Window:
    lock = threading.Lock()
    remaining = [jobs]
    # (submit, first token, done, model s, steady): a client's first job starts in the
    # opening burst, so latency statistics use only later jobs (steady state).
    records: list[tuple[float, float, float, float, bool]] = []
    engine_ttft: list[float] = []
    prompt_tokens: list[int] = []
    tokens_total = [0]

    def client(index: int) -> None:
        rng = random.Random(seed * 1000 + index)
        store = JobStore(redis.Redis.from_url(stack.redis_url), prefix=stack.key_prefix)
        with httpx.Client(base_url=stack.gateway_url, timeout=600) as http:
            steady = False
            while True:
                with lock:
                    if remaining[0] == 0:
                        return
                    remaining[0] -= 1
                prompt = word_prompt(rng, 12, 40)
                # Staggered: client i's first job (left out of the latency statistics) is
                # (i + 1) / N of the length, so the clients' later jobs, all full length,
                # end at evenly spread steps, as independent users' would; otherwise every
                # client submits at the same moment and the batch runs in lockstep.
                length = new_tokens
                if staggered and not steady:
                    length = max(1, new_tokens * (index + 1) // clients)
                body = {
                    "type": "generate",
                    "prompt": prompt,
                    "params": {"max_new_tokens": length},
                    "memory": {"namespace": NAMESPACE, "top_k": 3},
                }
                t0 = time.perf_counter()
                resp = http.post("/v1/jobs", json=body)
                resp.raise_for_status()
                job_id = resp.json()["id"]
                first, done = watch_job(store, job_id)
                job = http.get(f"/v1/jobs/{job_id}").json()
                if job["status"] != "succeeded":
                    raise RuntimeError(f"job {job_id} {job['status']}: {job.get('error')}")
                result = job["result"]
                with lock:
                    records.append(
                        (
                            t0,
                            first if first is not None else done,
                            done,
                            result["timings"]["generation_s"],
                            steady,
                        )
                    )
                    tokens_total[0] += result["usage"]["completion_tokens"]
                    if steady and result["timings"].get("engine_first_token_s") is not None:
                        engine_ttft.append(result["timings"]["engine_first_token_s"])
                    prompt_tokens.append(result["usage"]["prompt_tokens"])
                steady = True

    rss = RssSampler(stack)
    cpu = CpuShare(stack)
    start = time.perf_counter()
    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    peak_rss_mb = rss.stop()
    cpu_share = cpu.stop()
    steady = [r for r in records if r[4]] or records
    latency = [d - s for s, _, d, _, _ in steady]
    overhead = [(d - s - m) / (d - s) * 100 for s, _, d, m, _ in steady]
    return Window(
        engine=engine,
        clients=clients,
        jobs=len(records),
        jobs_per_s=len(records) / wall,
        tokens_per_s=tokens_total[0] / wall,
        p50_latency_s=quantile(latency, 0.5),
        p95_latency_s=quantile(latency, 0.95),
        p50_ttft_s=quantile([f - s for s, f, _, _, _ in steady], 0.5),
        p50_model_s=quantile([m for _, _, _, m, _ in steady], 0.5),
        p50_overhead_pct=quantile(overhead, 0.5),
        seconds=wall,
        peak_worker_rss_mb=peak_rss_mb,
        prompt_tokens=prompt_tokens,
        p50_engine_ttft_s=quantile(engine_ttft, 0.5),
        steady_jobs_per_s=clients / statistics.mean(latency) if latency else float("nan"),
        steady_tokens_per_s=clients * new_tokens / statistics.mean(latency)
        if latency
        else float("nan"),
        cpu_share=cpu_share,
    )


def write_report(
    windows: list[Window],
    reference: float | None,
    meta: dict[str, str],
    args: argparse.Namespace,
    measured_on: dict[str, Any] | None,
) -> None:
    by = {(w.engine, w.clients): w for w in windows}
    variants = [v for v in args.variants if any(w.engine == v for w in windows)]
    top = max(args.clients)
    lines = [
        "# Full-stack benchmark: simple vs batched engine (through HTTP)",
        "",
        f"GPT-2 124M architecture, random weights, fp32, {args.new_tokens} new tokens per job, "
        f"closed-loop HTTP clients ({args.arrivals} arrivals), retrieval (top_k=3) before every "
        "job; one stack per "
        "variant (redis-server, memory service, 1 Celery worker, gateway); variants "
        "interleaved per N. `batched` decodes on a thread of the Celery worker, "
        "`batched-process` in a process of its own (`MEMQ_ENGINE_PROCESS=1`). Overhead = "
        "client latency − worker model time. Peak RSS: the worker's process tree.",
        "",
        f"Command: `{meta['command']}`; load average (1, 5, 15 min) at the start "
        f"{meta['load_start']}, at the end {meta.get('load_end', '–')}; {meta['cpus']} CPUs.",
        "",
        *table(
            [
                *("N", "engine", "jobs", "jobs/s", "tokens/s", "steady tokens/s"),
                *("p50 latency s", "p95 latency s", "p50 TTFT s", "p50 engine TTFT s"),
                *("p50 model s", "p50 overhead %", "peak worker RSS MiB"),
            ],
            (
                [
                    *(w.clients, w.engine, w.jobs, f"{w.jobs_per_s:.2f}"),
                    *(f"{w.tokens_per_s:.1f}", f"{w.steady_tokens_per_s:.1f}"),
                    *(f"{w.p50_latency_s:.2f}", f"{w.p95_latency_s:.2f}", f"{w.p50_ttft_s:.3f}"),
                    *(f"{w.p50_engine_ttft_s:.3f}", f"{w.p50_model_s:.2f}"),
                    *(f"{w.p50_overhead_pct:.1f}", f"{w.peak_worker_rss_mb:.0f}"),
                ]
                for w in windows
            ),
        ),
    ]
    roles = sorted({r for w in windows for r in (w.cpu_share or {})})
    if roles:
        lines += [
            "",
            "Where the CPUs went in each window (CPU time ÷ wall time ÷ CPUs; TTFT = submit → "
            "first token event as the client saw it, engine TTFT = the job's "
            "`timings.engine_first_token_s`, queueing in the engine plus prefill):",
            "",
            *table(
                ["N", "engine", *roles],
                (
                    [
                        w.clients,
                        w.engine,
                        *(f"{(w.cpu_share or {}).get(r, float('nan')):.0%}" for r in roles),
                    ]
                    for w in windows
                ),
            ),
        ]
    ratios = []
    for n in args.clients:
        s = by.get(("simple", n))
        for v in variants:
            if v == "simple" or (v, n) not in by:
                continue
            b, one = by[(v, n)], by.get((v, min(args.clients)))
            ttft = f"{b.p50_ttft_s / one.p50_ttft_s:.2f}×" if one else "–"
            ettft = f"{b.p50_engine_ttft_s / one.p50_engine_ttft_s:.2f}×" if one else "–"
            jobs = f"{b.steady_jobs_per_s / s.steady_jobs_per_s:.2f}×" if s else "–"
            latency = f"{b.p50_latency_s / s.p50_latency_s:.2f}×" if s else "–"
            ratios.append([n, v, jobs, latency, ttft, ettft, f"{b.steady_tokens_per_s:.1f}"])
    lines += [
        "",
        "Ratios use the steady rates (N ÷ mean latency of the jobs after each client's "
        "first, Little's law for closed-loop clients); the window rates above also count the "
        "opening and closing jobs.",
        "",
        *table(
            [
                *("N", "variant", "jobs/s ÷ simple", "p50 latency ÷ simple"),
                *("p50 TTFT ÷ its TTFT at N=1", "p50 engine TTFT ÷ at N=1", "steady tokens/s"),
            ],
            ratios,
        ),
    ]
    if reference is not None:
        lines += [
            "",
            f"Reference, same run: HF `generate`, static batch of {top} (the prompt lengths "
            f"of the N={top} jobs), greedy, {args.new_tokens} new tokens: "
            f"**{reference:.1f} tokens/s** (median of 3).",
            "",
            *table(
                [
                    *("variant", f"steady tokens/s at N={top}", "÷ HF static batch"),
                    *("window tokens/s", "÷ HF static batch"),
                ],
                (
                    [
                        v,
                        f"{by[(v, top)].steady_tokens_per_s:.1f}",
                        f"{by[(v, top)].steady_tokens_per_s / reference:.2f}",
                        f"{by[(v, top)].tokens_per_s:.1f}",
                        f"{by[(v, top)].tokens_per_s / reference:.2f}",
                    ]
                    for v in variants
                    if (v, top) in by
                ),
            ),
        ]
    data = {
        "meta": meta,
        "reference_tokens_per_s": reference,
        "windows": [asdict(w) for w in windows],
    }
    figure = plot(windows, reference, variants, args.clients)
    write_result(args.out / "stack", lines, machine=measured_on, data=data, figure=figure)


def plot(
    windows: list[Window], reference: float | None, variants: list[str], clients: list[int]
) -> Figure:
    by = {(w.engine, w.clients): w for w in windows}
    top = max(clients)
    fig, axes = subplots(1, 3, figsize=(15, 4.5))
    styles = {"simple": "o--", "batched": "s-", "batched-process": "^-"}
    for engine in variants:
        style = styles.get(engine, "x-")
        ws = [by[(engine, n)] for n in clients if (engine, n) in by]
        xs = [w.clients for w in ws]
        axes[0].plot(xs, [w.steady_jobs_per_s for w in ws], style, label=engine)
        axes[1].plot(xs, [w.steady_tokens_per_s for w in ws], style, label=engine)
        axes[2].plot(xs, [w.p50_latency_s for w in ws], style, label=f"{engine} p50")
    if reference is not None:
        axes[1].axhline(reference, color="grey", ls=":", label=f"HF static batch of {top}")
    titles = ("steady jobs/s", "steady tokens/s", "p50 latency (s)")
    for ax, title in zip(axes, titles, strict=True):
        ax.set_xscale("log", base=2)
        ax.set_xticks(clients, [str(n) for n in clients])
        ax.set_xlabel("concurrent clients (N)")
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle("memq full stack, GPT-2 124M (random weights), fp32, 2-core CPU")
    return fig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 4, 16, 32])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--jobs-per-client", type=int, default=2)
    parser.add_argument("--min-jobs", type=int, default=6)
    parser.add_argument("--no-reference", action="store_true", help="skip HF generate")
    parser.add_argument(
        "--simple-max-clients",
        type=int,
        default=16,
        help="the simple engine is measured up to this N (one job at a time: at N = 32 a "
        "window takes ~10 min and adds nothing to any target)",
    )
    parser.add_argument(
        "--arrivals",
        choices=["staggered", "burst"],
        default="staggered",
        help="staggered: the clients' jobs end at evenly spread steps (independent users); "
        "burst: every client starts at once and the batch runs in lockstep",
    )
    parser.add_argument("--quick", action="store_true", help="N = 1, 4 and 16 new tokens")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    if args.quick:
        args.clients, args.new_tokens, args.min_jobs = [1, 4], 16, 2
    meta = {
        "command": "python -m bench.stack_bench " + " ".join(sys.argv[1:]),
        "load_start": load_average(),
        "cpus": str(psutil.cpu_count()),
    }
    measured_on = machine()

    with tempfile.TemporaryDirectory(prefix="memq-stack-bench-") as tmp:
        root = Path(tmp)
        print("building GPT-2 124M (random weights) …", flush=True)
        model_dir = save_gpt2_124m_random(root / "gpt2-124m-random")
        stacks: dict[str, Stack] = {}
        windows: list[Window] = []
        try:
            for variant in args.variants:
                print(f"starting the {variant} stack …", flush=True)
                stacks[variant] = start_stack(
                    root / variant,
                    env={
                        "MEMQ_MODEL": str(model_dir),
                        **VARIANTS[variant],
                        "MEMQ_LOG_LEVEL": "WARNING",
                        "HF_HUB_OFFLINE": "1",
                    },
                )
                with httpx.Client(base_url=stacks[variant].gateway_url) as http:
                    for text in MEMORIES:
                        http.post("/v1/memories", json={"namespace": NAMESPACE, "text": text})
                run_window(stacks[variant], variant, 2, 2, args.new_tokens, 0)
            for n in args.clients:
                jobs = max(args.min_jobs, n * args.jobs_per_client)
                for variant in args.variants:
                    if variant == "simple" and n > args.simple_max_clients:
                        continue
                    w = run_window(
                        stacks[variant],
                        variant,
                        n,
                        jobs,
                        args.new_tokens,
                        seed=n,
                        staggered=args.arrivals == "staggered",
                    )
                    print(
                        json.dumps({**asdict(w), "prompt_tokens": len(w.prompt_tokens)}), flush=True
                    )
                    windows.append(w)
                    write_report(windows, None, meta, args, measured_on)
        finally:
            for st in stacks.values():
                st.stop()
        reference = None
        if not args.no_reference:
            top = max(args.clients)
            lengths = [t for w in windows if w.clients == top for t in w.prompt_tokens][:top]
            lengths += lengths[: top - len(lengths)] or [32] * top
            print(f"HF generate reference, static batch of {top} …", flush=True)
            reference = hf_static_reference(model_dir, lengths[:top], args.new_tokens)
        meta["load_end"] = load_average()
        write_report(windows, reference, meta, args, measured_on)
    print(f"wrote {args.out / 'stack.md'} and {args.out / 'stack.png'}")


if __name__ == "__main__":
    main()
