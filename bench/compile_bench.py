"""Would `torch.compile` pay for the decode step? Eager vs compiled, the model alone.

    .venv/bin/python -m bench.compile_bench [--rows 1 16] [--repeats 15]

GPT-2 124M (random weights, fp32), torch threads = cores: the median time of a decode step
(a 100-token history, the step dropped from the cache again so every step has the same
shape: the compiled model's best case) eager, then `torch.compile(dynamic=True)` (first
call = compile time), then eager again (drift check). Writes bench/results/compile.md and
compile.json.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path
from typing import Any

import torch

from bench._harness import RESULTS, machine, table, write_result

HISTORY = 100


def step_times(model: Any, config: Any, rows: int, repeats: int) -> tuple[float, float]:
    """(median step seconds, first call seconds)."""
    from transformers import DynamicCache

    ids = torch.randint(0, config.vocab_size, (rows, HISTORY))
    nxt = torch.randint(0, config.vocab_size, (rows, 1))
    with torch.inference_mode():
        cache = DynamicCache(config=config)
        model(input_ids=ids, cache=cache, use_cache=True, logits_to_keep=1)
        times = []
        for _ in range(repeats + 3):
            t = time.perf_counter()
            model(input_ids=nxt, cache=cache, use_cache=True)
            times.append(time.perf_counter() - t)
            cache.crop(-1)
    return statistics.median(times[3:]), times[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.set_num_threads(os.cpu_count() or 1)
    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config()).eval()
    rows: dict[int, dict[str, float]] = {}
    for r in args.rows:
        rows[r] = {"eager_s": step_times(model, model.config, r, args.repeats)[0]}
    compiled = torch.compile(model, dynamic=True)
    for r in args.rows:
        rows[r]["compiled_s"], rows[r]["compile_first_call_s"] = step_times(
            compiled, model.config, r, args.repeats
        )
    for r in args.rows:
        rows[r]["eager_again_s"] = step_times(model, model.config, r, args.repeats)[0]
    data = {
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "rows": rows,
        "machine": machine(),
    }
    write_report(data, args.out)
    print(f"wrote {args.out / 'compile.md'}")


def write_report(data: dict[str, Any], out: Path) -> None:
    rows: dict[int, dict[str, float]] = data["rows"]
    lines = [
        "# torch.compile vs eager: a GPT-2 124M decode step, the model alone",
        "",
        f"torch {data['torch']}, {data['threads']} threads, fp32, `torch.compile(dynamic=True)`"
        f" (inductor), a {HISTORY}-token history, the same shape every step (the compiled "
        "model's best case). `python -m bench.compile_bench`.",
        "",
        *table(
            [
                *("rows", "eager ms", "compiled ms", "eager again ms"),
                *("compiled ÷ eager (mean of both)", "first compiled call s"),
            ],
            (
                [
                    *(r, f"{v['eager_s'] * 1000:.1f}", f"{v['compiled_s'] * 1000:.1f}"),
                    f"{v['eager_again_s'] * 1000:.1f}",
                    f"{v['compiled_s'] / ((v['eager_s'] + v['eager_again_s']) / 2):.2f}",
                    f"{v['compile_first_call_s']:.1f}",
                ]
                for r, v in rows.items()
            ),
        ),
    ]
    write_result(out / "compile", lines, machine=data.get("machine"), data=data)


if __name__ == "__main__":
    main()
