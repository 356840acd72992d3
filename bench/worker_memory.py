"""Worker resident memory at 32 rows: GPT-2 124M (random weights), a 1,024-token context.

In one process: the resident set (RSS) after imports, after loading the model, and its
peak while the batched engine decodes 32 rows whose prompt + new tokens fill the whole
1,024-token context (the default `max_batch_tokens`, 32 × 1,024). The KV share is read
from the engine's cache while it runs (the bytes of every layer's key/value buffers, spare
columns included) and compared with the formula rows × width × 2 × layers × hidden ×
dtype size.

    .venv/bin/python -m bench.worker_memory [--dtype bfloat16]
Writes bench/results/worker_memory.md and worker_memory.png.
"""

from __future__ import annotations

import argparse
import random
import sys
import threading
import time
from pathlib import Path
from typing import Any

import psutil
import torch

from bench._harness import RESULTS, machine, subplots, table, write_result
from bench._models import GPT2_VOCAB, gpt2_124m_random
from memq.contracts import GenerationParams
from worker.engine.base import GenerationRequest
from worker.engine.batched import BatchedEngine
from worker.engine.kv_batch import GrowingLayer

MIB = 2**20


def kv_bytes(engine: BatchedEngine) -> int:
    """Bytes held by the batch's KV buffers right now (racy read of the scheduler's cache:
    a sample, good enough for a peak)."""
    cache = engine._kv.cache
    if cache is None:
        return 0
    total = 0
    for layer in list(cache.layers):
        if isinstance(layer, GrowingLayer):
            for buf in (layer._key_buffer, layer._value_buffer):
                if buf is not None:
                    total += buf.numel() * buf.element_size()
        else:
            for t in (getattr(layer, "keys", None), getattr(layer, "values", None)):
                if t is not None:
                    total += t.numel() * t.element_size()
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=32)
    parser.add_argument("--context", type=int, default=1024)
    parser.add_argument("--new-tokens", type=int, default=16)
    parser.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    dtype = getattr(torch, args.dtype)
    proc = psutil.Process()
    rss: dict[str, float] = {"after imports": proc.memory_info().rss / MIB}

    lm = gpt2_124m_random(dtype)
    weights = sum(p.numel() * p.element_size() for p in lm.model.parameters())
    rss["after loading the model"] = proc.memory_info().rss / MIB
    engine = BatchedEngine(
        lm,
        max_batch_size=args.rows,
        max_batch_tokens=args.rows * args.context,
        max_prefill_tokens=4096,
        prefill_chunk_tokens=512,
    )
    rng = random.Random(0)
    prompt_len = args.context - args.new_tokens
    params = GenerationParams(max_new_tokens=args.new_tokens, temperature=0.0, stop=[])
    peak = {"rss": 0, "kv": 0}
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            peak["rss"] = max(peak["rss"], proc.memory_info().rss)
            peak["kv"] = max(peak["kv"], kv_bytes(engine))
            stop.wait(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    outputs: list[int] = []
    t0 = time.perf_counter()

    def one() -> None:
        ids = [rng.randrange(GPT2_VOCAB) for _ in range(prompt_len)]
        out = engine.generate(GenerationRequest(input_ids=ids, params=params))
        outputs.append(len(out.token_ids))

    callers = [threading.Thread(target=one) for _ in range(args.rows)]
    for c in callers:
        c.start()
    for c in callers:
        c.join()
    wall = time.perf_counter() - t0
    stop.set()
    sampler.join()
    engine.close()
    assert outputs == [args.new_tokens] * args.rows, outputs
    rss["peak with the batch"] = peak["rss"] / MIB
    config = lm.model.config
    per_token = 2 * config.n_layer * config.n_embd * torch.finfo(dtype).bits // 8
    formula = args.rows * args.context * per_token
    growth = rss["peak with the batch"] - rss["after loading the model"]
    data = {
        "command": "python -m bench.worker_memory " + " ".join(sys.argv[1:]),
        "dtype": args.dtype,
        "rows": args.rows,
        "context": args.context,
        "new_tokens": args.new_tokens,
        "rss_mib": rss,
        "weights_mib": weights / MIB,
        "kv_peak_mib": peak["kv"] / MIB,
        "kv_formula_mib": formula / MIB,
        "kv_per_token_kib": per_token / 1024,
        "growth_mib": growth,
        "wall_s": wall,
        "machine": machine(),
    }
    print("\n".join(write_report(data, args.out)))


def write_report(data: dict[str, Any], out: Path) -> list[str]:
    """worker_memory.md, .json and .png; the report's lines."""
    rss: dict[str, float] = data["rss_mib"]
    rows, context, new_tokens = data["rows"], data["context"], data["new_tokens"]
    peak_rss, kv, growth = rss["peak with the batch"], data["kv_peak_mib"], data["growth_mib"]
    lines = [
        "# Worker resident memory at 32 rows (GPT-2 124M, 1,024-token context)",
        "",
        f"{rows} rows of {context - new_tokens} prompt + {new_tokens} new tokens = "
        f"{context} tokens each (the default `max_batch_tokens` = {rows} × "
        f"{context}), {data['dtype']}, batched engine in process, random weights. "
        f"Command: `{data['command']}`; {data['wall_s']:.0f} s.",
        "",
        *table(
            ["what", "MiB"],
            [
                *([f"RSS {k}", f"{v:,.0f}"] for k, v in rss.items()),
                ["model weights (parameters)", f"{data['weights_mib']:,.0f}"],
                ["KV cache, measured peak (buffers incl. spare columns)", f"{kv:,.0f}"],
                [
                    f"KV cache, formula rows × width × {int(data['kv_per_token_kib'])} KiB/token",
                    f"{data['kv_formula_mib']:,.0f}",
                ],
                ["RSS growth while the batch ran", f"{growth:,.0f}"],
            ],
        ),
        "",
        f"KV share of the peak RSS: **{kv / peak_rss:.0%}**; of the growth while "
        f"the batch ran: {kv / growth:.0%} (the rest: prefill activations, "
        "logits, the allocator's free lists).",
        "",
    ]
    fig, ax = subplots(figsize=(7, 4))
    base = rss["after imports"]
    parts = [
        ("imports", base),
        ("weights", rss["after loading the model"] - base),
        ("KV cache", kv),
        ("other (activations...)", max(0.0, growth - kv)),
    ]
    left = 0.0
    for name, value in parts:
        ax.barh(["peak RSS"], [value], left=left, label=f"{name} {value:,.0f} MiB")
        left += value
    ax.set_xlabel("MiB")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.25), ncol=2)
    ax.set_title(f"worker memory, {rows} rows × {context} tokens, {data['dtype']}")
    write_result(out / "worker_memory", lines, machine=data.get("machine"), data=data, figure=fig)
    return lines


if __name__ == "__main__":
    main()
