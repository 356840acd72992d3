"""Torch threads vs worker processes on one machine: which layout decodes most?

On a machine with C cores, the batched engine (GPT-2 124M architecture, random weights,
fp32, 64 new tokens, closed-loop clients) in three layouts, each in fresh processes:

- `1 process x C threads`: one worker, torch intra-op threads = cores (memq's default);
- `C processes x 1 thread`: C workers side by side, the clients split between them;
- `1 process x 1 thread`: one core's worth, the unit the others are compared with.

Layouts alternate within each round, so machine noise hits them alike; tokens/s is summed
over a layout's processes. Run it on a quiet machine.

    .venv/bin/python -m bench.threads_bench [--clients 16 32] [--rounds 2]
Writes bench/results/threads.md, threads.json and threads.png.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench._harness import RESULTS, load_average, machine, subplots, table, write_result

NEW_TOKENS = 64


def child(threads: int, clients: int, seconds: float) -> None:
    """One worker-like process: prints {"tokens_per_s": ...} as its last line."""
    import torch

    torch.set_num_threads(threads)
    from bench._models import gpt2_124m_random
    from bench._workload import token_prompts
    from bench.engine_bench import run_closed_loop
    from worker.engine.batched import BatchedEngine

    lm = gpt2_124m_random(torch.float32)
    engine = BatchedEngine(
        lm,
        max_batch_size=32,
        max_batch_tokens=32 * 1024,
        max_prefill_tokens=4096,
        prefill_chunk_tokens=512,
    )
    try:
        stats = run_closed_loop(engine, clients, token_prompts(64, 0), NEW_TOKENS, seconds)
    finally:
        engine.close()
    print(json.dumps({"tokens_per_s": stats.tokens_per_s, "cpu_share": stats.cpu_share}))


def run_layout(processes: int, threads: int, clients: int, seconds: float) -> dict[str, Any]:
    each = max(1, clients // processes)
    cmd = [sys.executable, "-m", "bench.threads_bench", "--child", str(threads), str(each)]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    procs = [
        subprocess.Popen(
            [*cmd, str(seconds)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env
        )
        for _ in range(processes)
    ]
    rates = []
    for p in procs:
        out, _ = p.communicate(timeout=900)
        if p.returncode != 0:
            raise RuntimeError(f"child failed ({p.returncode}): {out.decode()[-500:]}")
        rates.append(json.loads(out.decode().strip().splitlines()[-1])["tokens_per_s"])
    return {
        "layout": f"{processes} process{'es' if processes > 1 else ''} x {threads} thread"
        + ("s" if threads > 1 else ""),
        "processes": processes,
        "threads": threads,
        "clients": clients,
        "tokens_per_s": sum(rates),
        "per_process": rates,
    }


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, nargs="+", default=[16, 32])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=20.0, help="measured per run")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    layouts = [(1, cores), (cores, 1), (1, 1)]
    load_start = load_average()
    t0 = time.time()
    runs: list[dict[str, Any]] = []
    for rnd in range(args.rounds):
        for n in args.clients:
            for processes, threads in layouts:
                r = run_layout(processes, threads, n, args.seconds)
                r["round"] = rnd + 1
                r["load_1min"] = os.getloadavg()[0]
                print(json.dumps(r), flush=True)
                runs.append(r)
    meta = {
        "command": "python -m bench.threads_bench " + " ".join(sys.argv[1:]),
        "cores": cores,
        "load_start": load_start,
        "load_end": load_average(),
        "wall_s": time.time() - t0,
    }
    write_report(runs, meta, args, machine())


def write_report(
    runs: list[dict[str, Any]],
    meta: dict[str, Any],
    args: argparse.Namespace,
    measured_on: dict[str, Any] | None,
) -> None:
    names = list(dict.fromkeys(r["layout"] for r in runs))
    med = {
        (name, n): statistics.median(
            r["tokens_per_s"] for r in runs if r["layout"] == name and r["clients"] == n
        )
        for name in names
        for n in args.clients
    }
    unit = names[-1]
    lines = [
        "# Torch threads vs worker processes",
        "",
        f"{meta['cores']} cores; batched engine in process, GPT-2 124M (random weights), fp32, "
        f"{NEW_TOKENS} new tokens, closed-loop clients (split evenly between processes); "
        f"layouts alternate, {args.rounds} rounds, median shown. Command: `{meta['command']}`; "
        f"{meta['wall_s'] / 60:.0f} min; load average at the start {meta['load_start']}, at "
        f"the end {meta['load_end']}.",
        "",
        *table(
            ["clients", "layout", "tokens/s (median)", "÷ 1 process x 1 thread", "runs"],
            (
                [
                    *(n, name, f"{med[(name, n)]:.1f}"),
                    f"{med[(name, n)] / med[(unit, n)]:.2f}×",
                    ", ".join(
                        f"{r['tokens_per_s']:.1f}"
                        for r in runs
                        if r["layout"] == name and r["clients"] == n
                    ),
                ]
                for n in args.clients
                for name in names
            ),
        ),
    ]
    fig, ax = subplots(figsize=(7, 4))
    width = 0.8 / len(names)
    for i, name in enumerate(names):
        xs = [j + i * width for j in range(len(args.clients))]
        ax.bar(xs, [med[(name, n)] for n in args.clients], width, label=name)
    ax.set_xticks(
        [j + width * (len(names) - 1) / 2 for j in range(len(args.clients))],
        [f"{n} clients" for n in args.clients],
    )
    ax.set_ylabel("tokens/s")
    ax.set_title(f"threads vs processes, {meta['cores']} cores, GPT-2 124M fp32")
    ax.legend()
    data = {"meta": meta, "runs": runs}
    write_result(args.out / "threads", lines, machine=measured_on, data=data, figure=fig)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
