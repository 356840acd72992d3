"""Chunked prefill: does a long prompt stall the running batch, and what does chunking cost?

    .venv/bin/python -m bench.prefill_bench [--rows 8] [--long 1000] [--rounds 3]

In one process, the batched engine on GPT-2 124M (random weights, fp32): `--rows` requests
with short prompts decode (128 new tokens each); once all are running, one request with a
`--long`-token prompt arrives. Per `prefill_chunk_tokens` setting (0 = whole prefill, then
chunk sizes), alternating within each round: the running rows' longest gap between two
tokens while the long prompt is prefilled (the stall), their median gap, the long
request's time to first token, and the tokens/s of the whole window. Writes
bench/results/prefill.md, .json and .png.
"""

from __future__ import annotations

import argparse
import itertools
import os
import random
import statistics
import threading
import time
from pathlib import Path
from typing import Any

from bench._harness import RESULTS, load_average, machine, subplots, table, write_result
from bench._models import gpt2_124m_random

NEW_TOKENS = 128


def one_run(lm: Any, chunk: int, rows: int, long_len: int, seed: int) -> dict[str, float]:
    from memq.contracts import GenerationParams
    from worker.engine.base import GenerationRequest
    from worker.engine.batched import BatchedEngine

    engine = BatchedEngine(
        lm,
        max_batch_size=rows + 1,
        max_batch_tokens=10**6,
        max_prefill_tokens=10**6,
        prefill_chunk_tokens=chunk,
    )
    rng = random.Random(seed)
    vocab = lm.model.config.vocab_size
    params = GenerationParams(max_new_tokens=NEW_TOKENS, temperature=0.0, stop=[])
    stamps: list[list[float]] = [[] for _ in range(rows)]
    started = threading.Event()  # every row is decoding: the long prompt may come

    def on_token(i: int) -> Any:
        # Runs on the engine's thread: it must never block.
        def record(n: int, _text: str) -> None:
            stamps[i].append(time.perf_counter())
            if n == 8 and all(len(r) >= 8 for r in stamps):
                started.set()

        return record

    requests = [
        GenerationRequest(
            [rng.randrange(vocab) for _ in range(rng.randint(16, 48))],
            params,
            on_token=on_token(i),
        )
        for i in range(rows)
    ]
    long_request = GenerationRequest(
        [rng.randrange(vocab) for _ in range(long_len)],
        GenerationParams(max_new_tokens=8, temperature=0.0, stop=[]),
    )
    threads = [threading.Thread(target=engine.generate, args=(r,)) for r in requests]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    started.wait(600)
    submitted = time.perf_counter()
    out = engine.generate(long_request)
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    engine.close()
    first = submitted + out.time_to_first_token_s
    during = [
        b - a for row in stamps for a, b in itertools.pairwise(row) if b >= submitted and a <= first
    ]
    gaps = [b - a for row in stamps for a, b in itertools.pairwise(row)]
    tokens = sum(len(row) for row in stamps) + len(out.token_ids)
    return {
        "stall_s": max(during) if during else 0.0,
        "median_gap_s": statistics.median(gaps),
        "long_ttft_s": out.time_to_first_token_s,
        "tokens_per_s": tokens / wall,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=8)
    parser.add_argument("--long", type=int, default=1000)
    parser.add_argument("--chunks", type=int, nargs="+", default=[0, 512, 256, 128])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    import torch

    torch.set_num_threads(os.cpu_count() or 1)
    lm = gpt2_124m_random(torch.float32)
    load_start = load_average()
    one_run(lm, 0, 2, 64, seed=0)  # warm-up
    runs: dict[int, list[dict[str, float]]] = {c: [] for c in args.chunks}
    for r in range(args.rounds):
        for chunk in args.chunks:
            runs[chunk].append(one_run(lm, chunk, args.rows, args.long, seed=r))
            print(chunk, runs[chunk][-1], flush=True)
    data = {
        "rows": args.rows,
        "long": args.long,
        "rounds": args.rounds,
        "new_tokens": NEW_TOKENS,
        "runs": {str(c): v for c, v in runs.items()},
        "load_start": load_start,
        "load_end": load_average(),
        "machine": machine(),
    }
    write_report(data, args.out)
    print(f"wrote {args.out / 'prefill.md'}")


def _median(runs: list[dict[str, float]], key: str) -> float:
    return statistics.median(r[key] for r in runs)


def write_report(data: dict[str, Any], out: Path) -> None:
    runs: dict[str, list[dict[str, float]]] = data["runs"]
    whole = runs["0"]
    lines = [
        "# Chunked prefill: a long prompt joining a running batch",
        "",
        f"GPT-2 124M (random weights), fp32, batched engine in process; {data['rows']} rows "
        f"decode {data['new_tokens']} tokens each, then a {data['long']:,}-token prompt "
        f"arrives. Settings alternate within each of {data['rounds']} rounds; medians shown. "
        f"`python -m bench.prefill_bench`; load average at the start {data['load_start']}, "
        f"at the end {data['load_end']}.",
        "",
        *table(
            [
                *("prefill_chunk_tokens", "running rows' longest stall (s)", "÷ whole prefill"),
                *("median step gap (s)", "long prompt's TTFT (s)", "tokens/s"),
            ],
            (
                [
                    "0 (whole)" if chunk == "0" else chunk,
                    f"{_median(rs, 'stall_s'):.2f}",
                    f"{_median(rs, 'stall_s') / _median(whole, 'stall_s'):.2f}×",
                    f"{_median(rs, 'median_gap_s'):.3f}",
                    f"{_median(rs, 'long_ttft_s'):.2f}",
                    f"{_median(rs, 'tokens_per_s'):.1f}",
                ]
                for chunk, rs in runs.items()
            ),
        ),
    ]
    labels = ["whole" if c == "0" else c for c in runs]
    fig, (a, b) = subplots(1, 2, figsize=(10, 4))
    a.bar(labels, [_median(rs, "stall_s") for rs in runs.values()], color="tab:blue")
    a.set_title("running rows' longest stall (s)")
    a.set_xlabel("prefill_chunk_tokens")
    b.bar(labels, [_median(rs, "long_ttft_s") for rs in runs.values()], color="tab:orange")
    b.set_title("long prompt's time to first token (s)")
    b.set_xlabel("prefill_chunk_tokens")
    fig.suptitle(f"{data['long']:,}-token prompt joining {data['rows']} decoding rows")
    write_result(out / "prefill", lines, machine=data.get("machine"), data=data, figure=fig)


if __name__ == "__main__":
    main()
