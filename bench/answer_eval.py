"""Does memory answer right, stay current and abstain? Issues 20 and 28, in process.

    .venv/bin/python -m bench.answer_eval                    # both suites, dev + holdout
    .venv/bin/python -m bench.answer_eval --suite updates --split dev --limit 20

Runs the memory service's own logic (`MemoryService` on the embedded Qdrant engine and the
MiniLM embedder, default hybrid search, automatic supersession) and the worker's own prompt
rule (`worker.prompting`, with the similarity floor and the subject check) in front of the
served model (the offline SmolLM2-135M-Instruct unless `--model` names another), greedy, 32
new tokens: the same path a `/v1/jobs` generate job takes, without HTTP and queues.

Suites, on memq/evaluation/sets/*.json:
- `updates`: every old fact stored, then (later) every update, among 200 distractors; per
  update question: answer has the current value, answer names the stale one, stale fact in
  the default top 5 (and the supersession decisions it made on the way);
- `abstention`: the split's facts stored; unanswerable questions: the answer says it does
  not know, or states the near fact's value (misattribution); answerable: the answer
  contains the value; citations: share of cited memories that are the question's fact. Run
  with the subject check and the don't-know instruction, and without both ("before").

Writes bench/results/answers.md (+ .json); `--out` elsewhere.
"""

from __future__ import annotations

import argparse
import json
import re
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench._harness import RESULTS, machine, write_result
from memory_service.core.config import MemorySettings
from memory_service.services.embeddings import embedder_for
from memory_service.services.memories import MemoryService
from memory_service.store.edge import EdgeStore
from memq.contracts import MemoryCreate, MemoryHit, MemorySearchRequest
from memq.evaluation import sets
from memq.evaluation.data import distractors
from worker import grounding, prompting
from worker.model_loader import load_model

TOP_K = 5
FLOOR = 0.3
MAX_NEW_TOKENS = 32
DONT_KNOW = re.compile(
    r"\b(?:don't know|do not know|not sure|no (?:information|record|notes?|facts?)|"
    r"(?:isn't|is not|not) (?:mentioned|stated|given|in (?:my|the) (?:notes|facts))|"
    r"cannot (?:tell|answer|find)|can't (?:tell|answer|find)|unknown|doesn't say|does not say|"
    r"notes hold nothing)",
    re.IGNORECASE,
)


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


@dataclass
class Harness:
    service: MemoryService
    clock: Clock
    lm: Any
    prompts: prompting.Prompts
    grounded: bool = True
    seconds: float = 0.0
    answers: list[dict[str, Any]] = field(default_factory=list)

    def store(self, ns: str, texts: Sequence[str]) -> list[str]:
        ids: list[str] = []
        for start in range(0, len(texts), 128):
            items = [MemoryCreate(namespace=ns, text=t) for t in texts[start : start + 128]]
            ids += [m.id for m in self.service.add_many("eval", items)]
        return ids

    def search(self, ns: str, query: str) -> list[MemoryHit]:
        req = MemorySearchRequest(namespace=ns, query=query, top_k=TOP_K)
        return self.service.search("eval", req)

    def ask(self, ns: str, question: str) -> tuple[str, list[MemoryHit], list[MemoryHit]]:
        import torch

        hits = self.search(ns, question)
        if self.grounded:
            built = self.prompts.generate(question, hits, MAX_NEW_TOKENS, FLOOR)
            # What the worker does when every memory is about someone else (JobRunner).
            said = grounding.abstention(question, hits, built.left_out)
            if said is not None:
                return said, hits, []
        else:
            built = _ungrounded(self.prompts, question, hits)
        t0 = time.monotonic()
        with torch.no_grad():
            out = self.lm.model.generate(
                torch.tensor([built.input_ids]),
                max_new_tokens=MAX_NEW_TOKENS,
                do_sample=False,
                pad_token_id=self.lm.eos_token_id,
            )
        self.seconds += time.monotonic() - t0
        text = self.lm.tokenizer.decode(out[0][len(built.input_ids) :], skip_special_tokens=True)
        used = [h for h in hits if h.id in built.used_memory_ids]
        cited = grounding.cited(text, question, used)
        return text.strip(), hits, cited


def _ungrounded(
    prompts: prompting.Prompts, question: str, hits: list[MemoryHit]
) -> prompting.AssembledPrompt:
    """The prompt before issue 28: no subject check, the plain facts header."""
    saved = (prompting.about_something_else, prompting.FACTS_HEADER, prompting.NO_FACTS)
    prompting.about_something_else = lambda q, f: False  # type: ignore[assignment]
    prompting.FACTS_HEADER = "Use these facts to answer.\nFacts:"  # type: ignore[misc]
    prompting.NO_FACTS = None  # type: ignore[misc]
    try:
        return prompts.generate(question, hits, MAX_NEW_TOKENS, FLOOR)
    finally:
        prompting.about_something_else, prompting.FACTS_HEADER, prompting.NO_FACTS = saved  # type: ignore[misc]


def has(text: str, value: str) -> bool:
    return value.lower() in text.lower()


def updates_suite(h: Harness, split: str, limit: int | None) -> dict[str, Any]:
    data = sets.updates(split)
    pairs = data.updates[:limit] if limit else data.updates
    ns = f"updates-{split}"
    h.store(ns, distractors(200, seed=11))
    h.store(ns, [u.old for u in pairs])
    h.clock.now += timedelta(days=30)
    new_ids = h.store(ns, [u.new for u in pairs])
    superseded = 0
    current = stale_named = stale_top5 = 0
    rows = []
    for u, new_id in zip(pairs, new_ids, strict=True):
        got = h.service.get("eval", new_id)
        superseded += bool(got.supersedes)
        text, hits, _ = h.ask(ns, u.question)
        top5 = [x.text for x in hits[:5]]
        ok, stale = has(text, u.answer), has(text, u.stale)
        current += ok and not stale
        stale_named += stale
        stale_top5 += u.old in top5
        rows.append({"q": u.question, "answer": text, "current": ok, "stale": stale})
    n = len(pairs)
    h.answers += rows
    return {
        "suite": "updates",
        "split": split,
        "questions": n,
        "superseded": superseded / n,
        "answer has current value, not stale": current / n,
        "answer mentions stale value": stale_named / n,
        "stale fact in top 5": stale_top5 / n,
    }


def abstention_suite(h: Harness, split: str, limit: int | None) -> dict[str, Any]:
    data = sets.abstention(split)
    ns = f"abstention-{split}-{'grounded' if h.grounded else 'before'}"
    ids = dict(
        zip([f.id for f in data.facts], h.store(ns, [f.text for f in data.facts]), strict=True)
    )
    questions = data.questions[: limit * 2] if limit else data.questions
    abstained = misattributed = answered = n_un = n_ans = 0
    cited_right = cited_all = 0
    for q in questions:
        text, _, cited = h.ask(ns, q.question)
        if q.answerable:
            n_ans += 1
            answered += has(text, q.answer or "")
            cited_all += len(cited)
            cited_right += sum(1 for c in cited if c.id == ids[q.fact_id or ""])
        else:
            n_un += 1
            abstained += bool(DONT_KNOW.search(text)) and not has(text, q.trap or "\x00")
            misattributed += has(text, q.trap or "\x00")
        h.answers.append({"q": q.question, "answer": text, "answerable": q.answerable})
    return {
        "suite": "abstention",
        "split": split,
        "condition": "subject check + abstention" if h.grounded else "before (neither)",
        "unanswerable": n_un,
        "answerable": n_ans,
        "abstained on unanswerable": abstained / max(1, n_un),
        "misattributed": misattributed / max(1, n_un),
        "answerable accuracy": answered / max(1, n_ans),
        "citation precision": cited_right / cited_all if cited_all else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--suite", choices=["updates", "abstention", "all"], default="all")
    parser.add_argument("--split", choices=["dev", "holdout", "both"], default="both")
    parser.add_argument("--limit", type=int, default=None, help="questions per suite")
    parser.add_argument("--model", default="gpt2", help="model (offline: the SmolLM2 fallback)")
    parser.add_argument("--data-dir", type=Path, default=Path(".memq"))
    parser.add_argument("--out", type=Path, default=RESULTS / "answers")
    args = parser.parse_args()

    lm = load_model(args.model, explicit=args.model != "gpt2", data_dir=args.data_dir)
    prompts = prompting.prompts_for(lm.tokenizer, lm.context_window)
    tmp = Path(tempfile.mkdtemp(prefix="memq-answer-eval-"))
    settings = MemorySettings(
        data_dir=tmp, service_token="x" * 32, model_cache_dir=args.data_dir / "models"
    )
    embedder = embedder_for(settings)
    clock = Clock()
    service = MemoryService(
        store=EdgeStore(tmp / "qdrant", embedder.dim, flush_on_write=False),
        embedder=embedder,
        clock=clock,
    )
    h = Harness(service, clock, lm, prompts)
    splits = ["dev", "holdout"] if args.split == "both" else [args.split]
    rows: list[dict[str, Any]] = []
    for split in splits:
        if args.suite in ("updates", "all"):
            rows.append(updates_suite(h, split, args.limit))
            print(json.dumps(rows[-1]), flush=True)
        if args.suite in ("abstention", "all"):
            for grounded in (False, True):
                h.grounded = grounded
                rows.append(abstention_suite(h, split, args.limit))
                print(json.dumps(rows[-1]), flush=True)
            h.grounded = True
    lines = [f"# Answers with memory ({lm.name}, greedy, {MAX_NEW_TOKENS} tokens)", ""]
    for row in rows:
        condition = f" · {row['condition']}" if "condition" in row else ""
        lines.append(f"## {row['suite']} · {row['split']}{condition}")
        lines += [
            f"- {k}: {v:.2f}" if isinstance(v, float) else f"- {k}: {v}"
            for k, v in row.items()
            if k not in ("suite", "split", "condition")
        ]
        lines.append("")
    data = {"model": lm.name, "rows": rows, "answers": h.answers}
    write_result(args.out, lines, machine=machine(), data=data)


if __name__ == "__main__":
    main()
