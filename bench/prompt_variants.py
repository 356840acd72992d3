"""Which wording and placement of memories makes an instruct model use them? Measured in
process (no stack): the served model and the memory service's embedder, the 40 facts of
memq/evaluation/data.py among 400 distractors, top-5 retrieval by cosine similarity, greedy
answers of 32 tokens through the batched engine, for each prompt variant.

    .venv/bin/python -m bench.prompt_variants --model-dir <dir of an instruct model>

Writes bench/results/prompt_variants.md. The variant memq uses is `TemplatePrompts`
(worker/prompting.py); the others are the alternatives it was chosen against.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from bench._harness import RESULTS, load_average, machine, table, write_result
from memq.contracts import GenerationParams
from memq.evaluation.data import FACTS, Fact, contains_answer, distractors
from worker.engine.base import GenerationRequest

SYSTEM = "You are a helpful assistant. Answer briefly and directly."

Variant = Callable[[Any, str, list[str]], list[int]]


def _render(tok: Any, messages: list[dict[str, str]]) -> list[int]:
    text = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    ids: list[int] = tok.encode(text, add_special_tokens=False)
    return ids


def facts_in_system(tok: Any, question: str, memories: list[str]) -> list[int]:
    facts = "\n".join(f"- {m}" for m in memories)
    system = f"{SYSTEM}\n\nFacts you know (use them when they help answer):\n{facts}"
    return _render(
        tok, [{"role": "system", "content": system}, {"role": "user", "content": question}]
    )


def facts_in_system_best_last(tok: Any, question: str, memories: list[str]) -> list[int]:
    return facts_in_system(tok, question, list(reversed(memories)))


def facts_in_user(tok: Any, question: str, memories: list[str]) -> list[int]:
    facts = "\n".join(f"- {m}" for m in memories)
    user = f"Use these facts to answer.\nFacts:\n{facts}\n\nQuestion: {question}"
    return _render(tok, [{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}])


def facts_in_user_best_last(tok: Any, question: str, memories: list[str]) -> list[int]:
    return facts_in_user(tok, question, list(reversed(memories)))


def memq_prompt(tok: Any, question: str, memories: list[str]) -> list[int]:
    """What memq does (TemplatePrompts): the facts in the user's message, best last."""
    from memq.contracts import MemoryHit
    from worker.prompting import TemplatePrompts

    hits = [
        MemoryHit(id=str(i), score=1.0 - i / 10, text=m, namespace="eval")
        for i, m in enumerate(memories)
    ]
    prompts = TemplatePrompts(tok, 8192)
    return prompts.generate(question, hits, 32, None).input_ids


def plain_text(tok: Any, question: str, memories: list[str]) -> list[int]:
    facts = "".join(f"- {m}\n" for m in memories)
    ids: list[int] = tok.encode(
        f"Relevant memories:\n{facts}\nQuestion: {question}\nAnswer:", add_special_tokens=False
    )
    return ids


VARIANTS: dict[str, Variant] = {
    "system message, best first": facts_in_system,
    "system message, best last": facts_in_system_best_last,
    "user message, best first": facts_in_user,
    "user message, best last": facts_in_user_best_last,
    "user message, best last, memq's wording (memq)": memq_prompt,
    "plain text, no template (before)": plain_text,
}


def main() -> None:
    from memory_service.core.config import MemorySettings
    from memory_service.services.embeddings import embedder_for
    from worker.engine.batched import BatchedEngine
    from worker.model_loader import load_model

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model-dir", type=Path, required=True)
    parser.add_argument("--floor", type=float, default=0.3)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    load = load_average()
    lm = load_model(str(args.model_dir), explicit=True, data_dir=args.model_dir.parent)
    settings = MemorySettings(service_token="bench", data_dir=Path("/tmp/memq-variants"))  # type: ignore[arg-type]
    embedder = embedder_for(settings)
    corpus = [f.text for f in FACTS] + distractors(400)
    vectors = embedder.embed(corpus)
    questions = embedder.embed([f.question for f in FACTS])
    sims = questions @ vectors.T
    top = np.argsort(-sims, axis=1)[:, :5]
    retrieved = [[corpus[j] for j in row if sims[i, j] >= args.floor] for i, row in enumerate(top)]
    engine = BatchedEngine(
        lm,
        max_batch_size=40,
        max_batch_tokens=10**6,
        max_prefill_tokens=8192,
        prefill_chunk_tokens=0,
    )
    rows = []
    try:
        for name, variant in [("no memory", None), *VARIANTS.items()]:
            started = time.monotonic()
            from concurrent.futures import ThreadPoolExecutor

            def answer(i: int, variant: Variant | None = variant) -> str:
                fact: Fact = FACTS[i]
                if variant is None:
                    ids = _render(
                        lm.tokenizer,
                        [
                            {"role": "system", "content": SYSTEM},
                            {"role": "user", "content": fact.question},
                        ],
                    )
                else:
                    ids = variant(lm.tokenizer, fact.question, retrieved[i])
                out = engine.generate(GenerationRequest(ids, GenerationParams(max_new_tokens=32)))
                return out.text

            with ThreadPoolExecutor(40) as pool:
                answers = list(pool.map(answer, range(len(FACTS))))
            rate = sum(contains_answer(a, f) for a, f in zip(answers, FACTS, strict=True))
            rows.append((name, rate / len(FACTS), time.monotonic() - started))
            print(rows[-1], flush=True)
    finally:
        engine.close()
    kept = sum(1 for i, f in enumerate(FACTS) if f.text in retrieved[i])
    lines = [
        "# Prompt variants: where and how memories go (issue 10)",
        "",
        f"Model `{lm.name}`; {len(FACTS)} fictional facts among 400 distractors; top-5 by cosine "
        f"with a floor of {args.floor} (the right fact is among the memories given for "
        f"{kept}/{len(FACTS)} questions); greedy, 32 new tokens; load average {load}. "
        "Command: `python -m bench.prompt_variants --model-dir <model>`.",
        "",
        *table(
            ["prompt", "answer contains the fact", "wall (s)"],
            ([n, f"{r:.0%}", f"{s:.0f}"] for n, r, s in rows),
        ),
    ]
    write_result(args.out / "prompt_variants", lines, machine=machine())
    print("\n".join(lines))


if __name__ == "__main__":
    main()
