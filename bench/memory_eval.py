"""Does memory reach the answer? The evaluation of issue 10, run against live stacks.

    .venv/bin/python -m bench.memory_eval            # ~15-30 min on 2 CPU cores
    .venv/bin/python -m bench.memory_eval --quick    # 10 facts

On `memq/evaluation/data.py` (40 fictional facts among 400 distractors, questions that
paraphrase them): retrieval recall@1/@5 per search mode, the cosine similarity of right and
wrong hits (what the default similarity floor is chosen from), and answer-contains-fact
with memory on and off, for the prompts memq uses now (the model's chat template, memories
in the user message, best last, above a similarity floor) and before (plain `Relevant memories: …
Question: … Answer:` text with every hit), both with the served instruct model (the offline
SmolLM2-135M-Instruct fallback unless `--model-dir` names another). Then multi-turn: a fact
told in turn 1 of a session, asked in turn 10, and asked in a new session of the same user.
Writes bench/results/eval.md and eval.png. `memq eval` runs the retrieval and memory on/off
parts against an already running stack, with the same requests and scoring
(`memq.evaluation.scoring`).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from bench._harness import RESULTS, load_average, machine, subplots, table, write_result
from memq.evaluation.data import FACTS, SAID, Fact, SaidFact, contains_answer, distractors
from memq.evaluation.scoring import (
    MAX_TOKENS,
    MODES,
    answer_hits,
    chat_completion_request,
    recall_of,
    search_request,
    share,
)
from memq.ops.launcher import Stack, start_stack


@dataclass
class Condition:
    name: str
    hits: list[bool]
    seconds: float

    @property
    def rate(self) -> float:
        return share(self.hits)


def _ingest(
    http: httpx.Client, namespace: str, facts: list[Fact], noise: list[str]
) -> dict[str, str]:
    """Store facts and distractors; fact text → memory id."""
    texts = [f.text for f in facts] + noise
    ids: dict[str, str] = {}
    for start in range(0, len(texts), 200):
        items = [{"namespace": namespace, "text": t} for t in texts[start : start + 200]]
        resp = http.post("/v1/memories/batch", json={"items": items}, timeout=300)
        resp.raise_for_status()
        for item in resp.json()["items"]:
            ids[item["text"]] = item["id"]
    return ids


def recall(
    http: httpx.Client, namespace: str, facts: list[Fact], ids: dict[str, str]
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    wanted = [ids[fact.text] for fact in facts]
    for mode in (m.value for m in MODES):
        rankings: list[list[str]] = []
        right, wrong = [], []
        for fact in facts:
            body = search_request(namespace, fact.question, mode)
            hits = http.post("/v1/memories/search", json=body).json()["hits"]
            rankings.append([h["id"] for h in hits])
            if mode == "dense":
                for h in hits:
                    (right if h["id"] == ids[fact.text] else wrong).append(h["similarity"])
        out[mode] = recall_of(rankings, wanted)
        if mode == "dense":
            out["similarity"] = {"right": right, "wrong": wrong}
    return out


def _ask_all(prompts: list[dict[str, Any]], call: Any) -> tuple[list[str], float]:
    start = time.monotonic()
    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(call, prompts))
    return answers, time.monotonic() - start


def answers_now(stack: Stack, namespace: str | None, facts: list[Fact]) -> Condition:
    """memq's prompts: a chat completion, memories in the user message above the floor."""

    def call(fact: Fact) -> str:
        body = chat_completion_request(fact.question, namespace)
        resp = httpx.post(f"{stack.gateway_url}/v1/chat/completions", json=body, timeout=900)
        resp.raise_for_status()
        return str(resp.json()["choices"][0]["message"]["content"])

    answers, seconds = _ask_all(facts, call)  # type: ignore[arg-type]
    name = f"now, memory {'on' if namespace else 'off'}"
    return Condition(name, answer_hits(answers, facts), seconds)


def answers_before(stack: Stack, namespace: str | None, facts: list[Fact]) -> Condition:
    """The prompts of before issue 10: plain text, every hit in, no template."""

    def call(fact: Fact) -> str:
        body: dict[str, Any] = {
            "type": "generate",
            "prompt": f"Question: {fact.question}\nAnswer:",
            "params": {"max_new_tokens": MAX_TOKENS},
        }
        if namespace:
            body["memory"] = {"namespace": namespace, "top_k": 5, "min_similarity": -1}
        with httpx.Client(base_url=stack.gateway_url, timeout=900) as http:
            job_id = http.post("/v1/jobs", json=body).json()["id"]
            while True:
                job = http.get(f"/v1/jobs/{job_id}").json()
                if job["status"] in ("succeeded", "failed", "cancelled"):
                    return str((job.get("result") or {}).get("text", ""))
                time.sleep(0.2)

    answers, seconds = _ask_all(facts, call)  # type: ignore[arg-type]
    name = f"before, memory {'on' if namespace else 'off'}"
    return Condition(name, answer_hits(answers, facts), seconds)


def multi_turn(stack: Stack, facts: list[SaidFact]) -> dict[str, float]:
    """Each fact told by the user in turn 1 of a session, eight other turns, then asked in
    turn 10, and in a new session of the same user (fact extraction on)."""
    fillers = [f"Filler turn {n}: what is a good name for a boat?" for n in range(8)]

    def chat(session: str, user: str, text: str) -> str:
        body = {
            "model": "memq",
            "messages": [{"role": "user", "content": text}],
            "max_tokens": MAX_TOKENS,
            "temperature": 0,
            "user": user,
            "session_id": session,
            "remember_facts": True,
        }
        resp = httpx.post(f"{stack.gateway_url}/v1/chat/completions", json=body, timeout=900)
        resp.raise_for_status()
        return str(resp.json()["choices"][0]["message"]["content"])

    def one(fact: SaidFact) -> tuple[bool, bool]:
        user, session = f"u{uuid.uuid4().hex[:8]}", f"s{uuid.uuid4().hex[:8]}"
        chat(session, user, fact.said)
        for filler in fillers:
            chat(session, user, filler)
        same = contains_answer(chat(session, user, fact.asked), fact)
        fresh_session = f"n{uuid.uuid4().hex[:8]}"
        fresh = contains_answer(chat(fresh_session, user, fact.asked), fact)
        return same, fresh

    with ThreadPoolExecutor(8) as pool:
        outcomes = list(pool.map(one, facts))
    return {
        "turn 10, same session": sum(o[0] for o in outcomes) / len(outcomes),
        "new session, same user": sum(o[1] for o in outcomes) / len(outcomes),
    }


def _stack(root: Path, model_dir: Path, name: str, extra: dict[str, str]) -> Stack:
    env = {
        "MEMQ_MODEL": str(model_dir),
        "MEMQ_LOG_LEVEL": "WARNING",
        "HF_HUB_OFFLINE": "1",
        **extra,
    }
    return start_stack(root / name, env=env)


def write_report(data: dict[str, Any], out: Path) -> None:
    rec = data["recall"]
    lines = [
        "# Memory evaluation (issue 10)",
        "",
        f"Model: {data['model']}; {data['facts']} fictional facts among {data['distractors']} "
        f"distractors; questions paraphrase the facts. Command: `{data['command']}`; "
        f"wall {data['wall_s']:.0f} s; load average at the start {data['load']}.",
        "",
        "## Retrieval (top 5)",
        "",
        *table(
            ["mode", "recall@1", "recall@5"],
            (
                [mode, f"{rec[mode]['recall@1']:.2f}", f"{rec[mode]['recall@5']:.2f}"]
                for mode in ("dense", "keyword", "hybrid")
            ),
        ),
    ]
    sim = rec["similarity"]
    right, wrong = sim["right"], sim["wrong"]
    lines += [
        "",
        "Cosine similarity of the right fact when retrieved: median "
        f"{statistics.median(right):.2f}, min {min(right):.2f}; of the other hits: median "
        f"{statistics.median(wrong):.2f}, "
        f"max {max(wrong):.2f}. Share of right hits kept at a floor of 0.3: "
        f"{sum(s >= 0.3 for s in right) / len(right):.2f}; share of wrong hits dropped: "
        f"{sum(s < 0.3 for s in wrong) / len(wrong):.2f}.",
        "",
        "## Answer contains the fact",
        "",
        *table(
            ["prompts", "memory", "answer contains the fact", "wall (s)"],
            (
                [*c["name"].split(", memory "), f"{c['rate']:.0%}", f"{c['seconds']:.0f}"]
                for c in data["answers"]
            ),
        ),
        "",
        "## Multi-turn",
        "",
        *table(
            ["question asked", "answer contains the fact"],
            ([name, f"{rate:.0%}"] for name, rate in data["multi_turn"].items()),
        ),
    ]
    fig, (a, b) = subplots(1, 2, figsize=(10, 4))
    modes = ["dense", "keyword", "hybrid"]
    a.bar([m + "\n@1" for m in modes], [rec[m]["recall@1"] for m in modes])
    a.bar([m + "\n@5" for m in modes], [rec[m]["recall@5"] for m in modes])
    a.set_ylim(0, 1)
    a.set_title("retrieval recall")
    names = [c["name"] for c in data["answers"]] + list(data["multi_turn"])
    rates = [c["rate"] for c in data["answers"]] + list(data["multi_turn"].values())
    b.barh(names, rates)
    b.set_xlim(0, 1)
    b.set_title("answer contains the fact")
    write_result(out / "eval", lines, machine=data.get("machine"), data=data, figure=fig, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="10 facts, 100 distractors")
    parser.add_argument("--model-dir", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    facts = FACTS[:10] if args.quick else FACTS
    noise = distractors(100 if args.quick else 400)
    started = time.monotonic()
    load = load_average()
    if args.model_dir is None:
        from worker.model_loader import prepare_fallback_model

        args.model_dir = prepare_fallback_model(Path(".memq").resolve())
    with tempfile.TemporaryDirectory(prefix="memq-eval-") as tmp:
        root = Path(tmp)
        namespace = "eval:facts"
        now = _stack(root, args.model_dir, "now", {})
        try:
            with httpx.Client(base_url=now.gateway_url, timeout=120) as http:
                ids = _ingest(http, namespace, facts, noise)
                retrieval = recall(http, namespace, facts, ids)
            print(json.dumps({k: v for k, v in retrieval.items() if k != "similarity"}))
            conditions = [answers_now(now, namespace, facts), answers_now(now, None, facts)]
            turns = multi_turn(now, SAID[:5] if args.quick else SAID)
        finally:
            now.stop()
        before = _stack(
            root,
            args.model_dir,
            "before",
            {"MEMQ_PROMPT_STYLE": "plain", "MEMQ_MIN_SIMILARITY": "-1"},
        )
        try:
            with httpx.Client(base_url=before.gateway_url, timeout=120) as http:
                _ingest(http, namespace, facts, noise)
            conditions += [
                answers_before(before, namespace, facts),
                answers_before(before, None, facts),
            ]
        finally:
            before.stop()
    for c in conditions:
        print(f"{c.name}: {c.rate:.0%} in {c.seconds:.0f} s")
    data = {
        "model": now.model or str(args.model_dir),
        "facts": len(facts),
        "distractors": len(noise),
        "recall": retrieval,
        "answers": [{"name": c.name, "rate": c.rate, "seconds": c.seconds} for c in conditions],
        "multi_turn": turns,
        "command": "python -m bench.memory_eval" + (" --quick" if args.quick else ""),
        "wall_s": time.monotonic() - started,
        "load": load,
        "machine": machine(),
    }
    write_report(data, args.out)
    print(f"wrote {args.out / 'eval.md'}")


if __name__ == "__main__":
    main()
