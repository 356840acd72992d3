"""Implicit vs explicit memory (issue 15), measured through a live stack.

    .venv/bin/python -m bench.adapter_eval --model-dir DIR [--steps 60] [--facts 40]

On memq/evaluation/data.py's fictional facts (stored among distractors in one namespace): a
`consolidate` job trains adapter `eval-facts` on the facts (memory_ids), reporting steps,
loss and time; then generate jobs ask each paraphrased question under four conditions —
(a) no memory, (b) retrieval only, (c) adapter only, (d) adapter + retrieval — and count
answers that contain the fact. Everything goes through the gateway, the queue and the
worker as a client's jobs would.

Then, in this process with the worker's own code (`worker.model_loader.load_model`,
`worker.lora.adapted_model`, the batched engine): the perplexity of a fixed neutral
text with and without the adapter (what consolidation costs unrelated text), and what
serving an adapter costs — the memory of its private tensors and decode speed, merged
(memq's default) and unmerged. Writes bench/results/adapters.md, .json and .png.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

from bench._harness import RESULTS, load_average, machine, subplots, table, write_result
from memq.evaluation.data import FACTS, Fact, contains_answer, distractors
from memq.ops.launcher import Stack, start_stack

MAX_TOKENS = 32
NAMESPACE = "eval:facts"
ADAPTER = "eval-facts"
NEUTRAL_TEXT = (
    "The kettle clicked off and the kitchen went quiet. Outside, rain had started again, "
    "a thin grey drizzle that blurred the hedges at the end of the garden. She poured the "
    "water over the tea leaves, set a timer for four minutes, and opened the newspaper to "
    "the page with the crossword. Seven across was a river in France, five letters. The "
    "radio in the next room was playing an old song about a train that never came, and the "
    "cat had taken the warm spot on the chair by the window. By the time the timer rang, "
    "she had filled in half the grid and forgotten about the rain."
)
"""Unrelated to every fact: the adapter should leave its perplexity about where it was."""


def _job(http: httpx.Client, body: dict[str, Any], timeout: float = 3600) -> dict[str, Any]:
    resp = http.post("/v1/jobs", json=body)
    resp.raise_for_status()
    job_id = resp.json()["id"]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job: dict[str, Any] = http.get(f"/v1/jobs/{job_id}").json()
        if job["status"] in ("succeeded", "failed", "cancelled"):
            return job
        time.sleep(0.5)
    raise TimeoutError(f"job {job_id} did not finish in {timeout} s")


def ingest(http: httpx.Client, facts: list[Fact], noise: list[str]) -> list[str]:
    """Store facts and distractors; the facts' memory ids."""
    texts = [f.text for f in facts] + noise
    ids: dict[str, str] = {}
    for start in range(0, len(texts), 200):
        items = [{"namespace": NAMESPACE, "text": t} for t in texts[start : start + 200]]
        resp = http.post("/v1/memories/batch", json={"items": items}, timeout=600)
        resp.raise_for_status()
        ids.update({item["text"]: item["id"] for item in resp.json()["items"]})
    return [ids[f.text] for f in facts]


def consolidate(
    http: httpx.Client, fact_ids: list[str], training: dict[str, Any]
) -> dict[str, Any]:
    body = {
        "type": "consolidate",
        "adapter": ADAPTER,
        "namespace": NAMESPACE,
        "memory_ids": fact_ids,
        "training": training,
    }
    resp = http.post("/v1/jobs", json=body)
    resp.raise_for_status()
    job_id = resp.json()["id"]
    last = 0
    while True:
        job: dict[str, Any] = http.get(f"/v1/jobs/{job_id}").json()
        progress = job.get("progress") or {}
        if progress.get("step") and progress["step"] != last:
            last = progress["step"]
            print(
                f"  step {last}/{progress['total_steps']} loss {progress['loss']:.3f}", flush=True
            )
        if job["status"] in ("succeeded", "failed", "cancelled"):
            if job["status"] != "succeeded":
                raise RuntimeError(f"consolidation {job['status']}: {job.get('error')}")
            return job
        time.sleep(2)


def answers(stack: Stack, facts: list[Fact], *, retrieval: bool, adapter: bool) -> dict[str, Any]:
    def ask(fact: Fact) -> str:
        body: dict[str, Any] = {
            "type": "generate",
            "prompt": fact.question,
            "params": {"max_new_tokens": MAX_TOKENS, "temperature": 0},
        }
        if retrieval:
            body["memory"] = {"namespace": NAMESPACE, "top_k": 5}
        if adapter:
            body["adapter"] = ADAPTER
        with httpx.Client(base_url=stack.gateway_url, timeout=120) as http:
            job = _job(http, body)
        if job["status"] != "succeeded":
            raise RuntimeError(f"job {job['id']} {job['status']}: {job.get('error')}")
        return str(job["result"]["text"])

    started = time.monotonic()
    with ThreadPoolExecutor(16) as pool:
        texts = list(pool.map(ask, facts))
    hits = [contains_answer(t, f) for t, f in zip(texts, facts, strict=True)]
    return {
        "retrieval": retrieval,
        "adapter": adapter,
        "rate": sum(hits) / len(hits),
        "hits": hits,
        "seconds": time.monotonic() - started,
        "examples": [
            {"q": f.question, "a": t} for f, t in list(zip(facts, texts, strict=True))[:3]
        ],
    }


def perplexity(model: Any, tokenizer: Any, text: str) -> float:
    import torch

    ids = torch.tensor([tokenizer.encode(text, add_special_tokens=False)])
    with torch.inference_mode():
        loss = model(input_ids=ids, labels=ids).loss
    return math.exp(float(loss))


def serving_cost(model_dir: Path, adapter_dir: Path, rounds: int) -> dict[str, Any]:
    """Neutral-text perplexity and, merged and unmerged, the adapter's private memory and
    decode tokens/s against the base model (alternating rounds of 8 greedy rows)."""
    from memq.contracts import GenerationParams
    from worker.engine.base import GenerationRequest
    from worker.engine.batched import BatchedEngine
    from worker.lora import adapted_model, private_bytes
    from worker.model_loader import LoadedModel, load_model

    lm = load_model(str(model_dir), explicit=True, data_dir=Path("."))
    models = {
        "base": lm.model,
        "merged": adapted_model(lm.model, adapter_dir, merge=True),
        "unmerged": adapted_model(lm.model, adapter_dir, merge=False),
    }
    out: dict[str, Any] = {
        "perplexity": {k: perplexity(m, lm.tokenizer, NEUTRAL_TEXT) for k, m in models.items()},
        "private_mb": {
            k: private_bytes(m, lm.model) / 1e6 for k, m in models.items() if k != "base"
        },
        "base_mb": sum(p.numel() * p.element_size() for p in lm.model.parameters()) / 1e6,
    }
    prompt = lm.tokenizer.encode(FACTS[0].question, add_special_tokens=False)
    params = GenerationParams(max_new_tokens=MAX_TOKENS, temperature=0)
    engines = {
        k: BatchedEngine(
            LoadedModel(lm.name, m, lm.tokenizer, lm.context_window, lm.eos_token_id),
            max_batch_size=8,
            max_batch_tokens=32768,
            max_prefill_tokens=4096,
            prefill_chunk_tokens=512,
        )
        for k, m in models.items()
    }
    tokens_s: dict[str, list[float]] = {k: [] for k in engines}
    try:
        for _ in range(rounds):
            for name, engine in engines.items():
                started = time.monotonic()
                requests = [GenerationRequest(list(prompt), params) for _ in range(8)]
                with ThreadPoolExecutor(8) as pool:
                    outs = list(pool.map(engine.generate, requests))
                made = sum(len(o.token_ids) for o in outs)
                tokens_s[name].append(made / (time.monotonic() - started))
    finally:
        for engine in engines.values():
            engine.close()
    out["tokens_per_s"] = {k: sorted(v)[len(v) // 2] for k, v in tokens_s.items()}
    return out


def write_report(data: dict[str, Any], out: Path) -> None:
    c = data["consolidation"]
    loss = c["loss"]
    curve = ", ".join(f"{x:.2f}" for x in loss[:: max(1, len(loss) // 12)])
    label = {
        (False, False): "(a) no memory",
        (True, False): "(b) retrieval only",
        (False, True): "(c) adapter only",
        (True, True): "(d) adapter + retrieval",
    }
    cost = data["serving"]
    lines = [
        "# Implicit memory: consolidated adapters vs retrieval (issue 15)",
        "",
        f"Model: {data['model']}. {data['facts']} fictional facts (memq/evaluation/data.py) stored "
        f"among {data['distractors']} distractors in one namespace; the consolidate job trains "
        "on the facts only (`memory_ids`); questions paraphrase the facts; greedy, "
        f"{MAX_TOKENS} new tokens, memq's chat-template prompts. Command: `{data['command']}`; "
        f"wall {data['wall_s'] / 60:.0f} min on this machine (2 cores shared with other "
        f"work; load average {data['load_start']} at the start, {data['load_end']} at the end).",
        "",
        "## Answer contains the fact",
        "",
        *table(
            ["condition", "answer contains the fact", "wall (s)"],
            (
                [
                    label[(a["retrieval"], a["adapter"])],
                    f"{a['rate']:.0%} ({sum(a['hits'])}/{len(a['hits'])})",
                    f"{a['seconds']:.0f}",
                ]
                for a in data["answers"]
            ),
        ),
    ]
    lines += [
        "",
        "## The consolidation job",
        "",
        f"- {len(c['memories'])} memories → {c['examples']} training examples "
        f"({c['tokens']:,} tokens): each fact's text plus two question/answer variants in the "
        "chat template",
        f"- LoRA r={c['training']['rank']}, alpha={c['training']['alpha']}, targets "
        f"{', '.join(c['training']['target_modules'])}; batch {c['training']['batch_size']}, "
        f"learning rate {c['training']['learning_rate']}, {c['steps']} steps "
        f"({c['steps'] * c['training']['batch_size'] / c['examples']:.1f} epochs)",
        f"- training time {c['train_s']:.0f} s ({c['train_s'] / c['steps']:.1f} s/step); "
        f"adapter {c['size_bytes'] / 1e6:.1f} MB on disk",
        f"- loss {loss[0]:.2f} → {loss[-1]:.2f}; curve (every {max(1, len(loss) // 12)} "
        f"steps): {curve}",
        "",
        "## Cost to unrelated text and to serving",
        "",
        *table(
            [
                *("model", "perplexity of a neutral paragraph", "private memory (MB)"),
                "decode tokens/s (8 rows)",
            ],
            [
                [
                    "base",
                    f"{cost['perplexity']['base']:.2f}",
                    f"{cost['base_mb']:.0f} (the model)",
                    f"{cost['tokens_per_s']['base']:.1f}",
                ],
                *(
                    [
                        f"adapter, {kind}",
                        f"{cost['perplexity'][kind]:.2f}",
                        f"{cost['private_mb'][kind]:.1f}",
                        f"{cost['tokens_per_s'][kind]:.1f}",
                    ]
                    for kind in ("merged", "unmerged")
                ),
            ],
        ),
    ]
    lines += [
        "",
        "Private memory is what a loaded adapter holds beyond the base weights it shares "
        "(worker/adapters.py): merged, a copy of the target modules' weights with the LoRA "
        "product added; unmerged, only the LoRA matrices. Tokens/s are medians of "
        f"{data['rounds']} alternating rounds on a shared, loaded machine: compare them with "
        "each other, not with other result files.",
    ]
    fig, (a, b) = subplots(1, 2, figsize=(10, 4))
    a.plot(range(1, len(loss) + 1), loss)
    a.set_xlabel("step")
    a.set_ylabel("training loss")
    a.set_title(f"consolidation ({c['examples']} examples)")
    names = [label[(x["retrieval"], x["adapter"])] for x in data["answers"]]
    b.barh(names, [x["rate"] for x in data["answers"]])
    b.set_xlim(0, 1)
    b.invert_yaxis()
    b.set_title("answer contains the fact")
    write_result(
        out / "adapters", lines, machine=data.get("machine"), data=data, figure=fig, dpi=120
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model-dir", type=Path, default=None)
    parser.add_argument("--facts", type=int, default=len(FACTS))
    parser.add_argument("--distractors", type=int, default=400)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--learning-rate", type=float, default=2e-3)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--rank", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3, help="speed rounds per model")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    facts = FACTS[: args.facts]
    noise = distractors(args.distractors)
    started = time.monotonic()
    load_start = load_average()
    if args.model_dir is None:
        from worker.model_loader import prepare_fallback_model

        args.model_dir = prepare_fallback_model(Path(".memq").resolve())
    training = {
        "steps": args.steps,
        "learning_rate": args.learning_rate,
        "batch_size": args.batch_size,
        "rank": args.rank,
    }
    with tempfile.TemporaryDirectory(prefix="memq-adapter-eval-") as tmp:
        env = {
            "MEMQ_MODEL": str(args.model_dir),
            "MEMQ_LOG_LEVEL": "WARNING",
            "HF_HUB_OFFLINE": "1",
        }
        stack = start_stack(Path(tmp) / "stack", env=env)
        try:
            with httpx.Client(base_url=stack.gateway_url, timeout=120) as http:
                fact_ids = ingest(http, facts, noise)
                print(f"stored {len(fact_ids)} facts + {len(noise)} distractors", flush=True)
                job = consolidate(http, fact_ids, training)
            consolidation = job["result"]["consolidation"]
            print(job["result"]["text"], flush=True)
            results = []
            for retrieval, adapter in ((False, False), (True, False), (False, True), (True, True)):
                found = answers(stack, facts, retrieval=retrieval, adapter=adapter)
                print(f"retrieval={retrieval} adapter={adapter}: {found['rate']:.0%}", flush=True)
                results.append(found)
            adapter_dir = next(
                p
                for p in (Path(tmp) / "stack" / "adapters").rglob("v1")
                if p.parent.name == ADAPTER
            )
        finally:
            stack.stop()
        serving = serving_cost(args.model_dir, adapter_dir, args.rounds)
    print(json.dumps(serving, indent=1))
    data = {
        "model": stack.model or str(args.model_dir),
        "facts": len(facts),
        "distractors": len(noise),
        "consolidation": consolidation,
        "answers": results,
        "serving": serving,
        "rounds": args.rounds,
        "command": " ".join(["python -m bench.adapter_eval", *sys.argv[1:]]),
        "wall_s": time.monotonic() - started,
        "load_start": load_start,
        "load_end": load_average(),
        "machine": machine(),
    }
    write_report(data, args.out)
    print(f"wrote {args.out / 'adapters.md'}")


if __name__ == "__main__":
    main()
