"""What this machine can do at most: the ceiling the engine and the stack are measured against.

    .venv/bin/python -m bench.ceiling_bench [--rows 1 4 8 16 32] [--repeats 15]

In one process, with memq's torch threads (one per core), no server around it: GPT-2 124M
(random weights, fp32) decode-step time by batch rows (a 100-token history, one forward
per step, the model alone: no scheduler, sampler or cache bookkeeping), prefill rate by
prompt length, and a 1024 x 1024 float32 matmul's GFLOPS. From these follow the best
ratios any engine could reach here, e.g. batched ÷ simple jobs/s at 16 clients =
(rows / step time at 16 rows) ÷ (1 / step time at 1 row), prefill left out. Writes
bench/results/ceiling.md, .json and .png.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path
from typing import Any

import torch

from bench._harness import RESULTS, load_average, machine, subplots, table, write_result

HISTORY = 100


def _median_s(fn: Any, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def matmul_gflops(repeats: int) -> float:
    a, b = torch.randn(1024, 1024), torch.randn(1024, 1024)
    return 2 * 1024**3 / _median_s(lambda: a @ b, repeats) / 1e9


def decode_step_s(model: Any, rows: int, repeats: int) -> float:
    from transformers import DynamicCache

    ids = torch.randint(0, model.config.vocab_size, (rows, HISTORY))
    nxt = torch.randint(0, model.config.vocab_size, (rows, 1))
    with torch.inference_mode():
        cache = DynamicCache(config=model.config)
        model(input_ids=ids, cache=cache, use_cache=True, logits_to_keep=1)

        def step() -> None:
            model(input_ids=nxt, cache=cache, use_cache=True)
            cache.crop(-1)  # drop the step again: every step sees the same history

        return _median_s(step, repeats)


def prefill_s(model: Any, tokens: int, repeats: int) -> float:
    ids = torch.randint(0, model.config.vocab_size, (1, tokens))
    with torch.inference_mode():
        return _median_s(lambda: model(input_ids=ids, logits_to_keep=1), repeats)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[1, 4, 8, 16, 32])
    parser.add_argument("--prompts", type=int, nargs="+", default=[48, 256, 768])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    from transformers import GPT2Config, GPT2LMHeadModel

    threads = os.cpu_count() or 1  # the worker's default, MEMQ_TORCH_THREADS = cores
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config()).eval()
    load_start = load_average()
    gflops = matmul_gflops(args.repeats)
    steps = {r: decode_step_s(model, r, args.repeats) for r in args.rows}
    prefills = {n: prefill_s(model, n, max(3, args.repeats // 3)) for n in args.prompts}
    data = {
        "threads": threads,
        "cpus": os.cpu_count(),
        "matmul_gflops": gflops,
        "decode_step_s": steps,
        "prefill_s": prefills,
        "load_start": load_start,
        "load_end": load_average(),
        "machine": machine(),
    }
    write_report(data, args.out)
    print(f"wrote {args.out / 'ceiling.md'}")


def write_report(data: dict[str, Any], out: Path) -> None:
    steps: dict[int, float] = data["decode_step_s"]
    one = steps.get(1)
    lines = [
        "# The machine's ceiling: GPT-2 124M forward passes alone",
        "",
        f"{data['cpus']} CPUs, torch threads {data['threads']}, fp32, random weights; "
        f"`python -m bench.ceiling_bench`; load average at the start {data['load_start']}, "
        f"at the end {data['load_end']}. A 1024 x 1024 matmul runs at "
        f"{data['matmul_gflops']:.0f} GFLOPS.",
        "",
        *table(
            [
                *("rows", f"decode step ms ({HISTORY}-token history)", "tokens/s"),
                "÷ 1 row's tokens/s",
            ],
            (
                [
                    *(rows, f"{s * 1000:.0f}", f"{rows / s:.0f}"),
                    f"{(rows / s) / (1 / one):.2f}×" if one else "–",
                ]
                for rows, s in steps.items()
            ),
        ),
        "",
        *table(
            ["prompt tokens", "prefill ms (one prompt)", "tokens/s"],
            ([n, f"{s * 1000:.0f}", f"{n / s:.0f}"] for n, s in data["prefill_s"].items()),
        ),
    ]
    lines += [
        "",
        "The last column of the first table is the most a batched engine can gain over one "
        "job at a time on this machine at that batch size, before prefill, scheduling, "
        "HTTP, retrieval and every other process take their share.",
    ]
    fig, ax = subplots(figsize=(6, 4))
    xs = list(steps)
    ax.plot(xs, [r / s for r, s in steps.items()], "o-", label="decode tokens/s (model alone)")
    if one:
        ax.plot(xs, [r / one for r in xs], ":", color="grey", label="linear in rows")
    ax.set_xscale("log", base=2)
    ax.set_xticks(xs, [str(x) for x in xs])
    ax.set_xlabel("rows per decode step")
    ax.set_ylabel("tokens/s")
    ax.set_ylim(0, max(r / s for r, s in steps.items()) * 1.3)
    ax.legend()
    ax.set_title(f"GPT-2 124M decode ceiling, {data['cpus']} CPUs")
    write_result(out / "ceiling", lines, machine=data.get("machine"), data=data, figure=fig)


if __name__ == "__main__":
    main()
