"""How the memory evaluation asks and scores, shared by `memq eval` and bench/memory_eval.py:
the requests both send (search, and the question as a chat turn) and the numbers both
compute from the answers (recall@k, answer-contains-fact)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from memq.contracts import SearchMode
from memq.evaluation.data import Fact, contains_answer

TOP_K = 5
MAX_TOKENS = 32
MODES: tuple[SearchMode, ...] = (SearchMode.dense, SearchMode.keyword, SearchMode.hybrid)
MEMORY_ON = "memory on"
MEMORY_OFF = "memory off"


@dataclass(frozen=True)
class Target:
    """One of issue 10's targets; reported next to the measured number, never enforced."""

    metric: str
    at_least: float | None = None
    at_most: float | None = None
    percent: bool = False
    note: str = ""

    def met(self, value: float) -> bool:
        low = self.at_least is None or value >= self.at_least
        return low and (self.at_most is None or value <= self.at_most)

    def show(self, value: float) -> str:
        return f"{value:.0%}" if self.percent else f"{value:.2f}"

    def __str__(self) -> str:
        if self.at_least is not None:
            return f"≥ {self.show(self.at_least)}"
        return f"≈ 0 (≤ {self.show(self.at_most)})" if self.at_most is not None else ""


RECALL_TARGET = Target("hybrid recall@5", at_least=0.95)
# An invented fact cannot be known without memory; a short answer may still hit a number
# like "47" by chance, hence a small allowance instead of exactly 0.
ANSWER_TARGETS = (
    Target(
        f"answer contains the fact, {MEMORY_ON}",
        at_least=0.60,
        percent=True,
        note="meaningful with an instruct model",
    ),
    Target(f"answer contains the fact, {MEMORY_OFF}", at_most=0.05, percent=True),
)


def search_request(
    namespace: str, question: str, mode: SearchMode | str, top_k: int = TOP_K
) -> dict[str, Any]:
    """The body of `POST /v1/memories/search` for one question."""
    return {"namespace": namespace, "query": question, "top_k": top_k, "mode": str(mode)}


def chat_completion_request(
    question: str, namespace: str | None, max_tokens: int = MAX_TOKENS
) -> dict[str, Any]:
    """The body of `POST /v1/chat/completions` asking one question, greedy, retrieving the
    top 5 from `namespace` (above the stack's similarity floor) or nothing."""
    body: dict[str, Any] = {
        "model": "memq",
        "messages": [{"role": "user", "content": question}],
        "max_tokens": max_tokens,
        "temperature": 0,
    }
    if namespace:
        body["memory"] = {"namespaces": [namespace], "top_k": TOP_K}
    return body


def answer_job(
    question: str, namespace: str | None, max_new_tokens: int = MAX_TOKENS
) -> dict[str, Any]:
    """The chat job `chat_completion_request` becomes, for `POST /v1/jobs`."""
    return {
        "type": "chat",
        "messages": [{"role": "user", "content": question}],
        "params": {"max_new_tokens": max_new_tokens, "temperature": 0.0},
        "memory": {"namespaces": [namespace], "top_k": TOP_K} if namespace else {"top_k": 0},
    }


def recall_at(rankings: Sequence[Sequence[str]], wanted: Sequence[str], k: int) -> float:
    """The share of questions whose memory (`wanted[i]`) is among the first `k` ids of
    their hits (`rankings[i]`, best first)."""
    if len(rankings) != len(wanted):
        raise ValueError(f"{len(rankings)} rankings for {len(wanted)} questions")
    if not wanted:
        raise ValueError("recall of no questions")
    return sum(want in ranked[:k] for ranked, want in zip(rankings, wanted, strict=True)) / len(
        wanted
    )


def recall_of(rankings: Sequence[Sequence[str]], wanted: Sequence[str]) -> dict[str, float]:
    return {"recall@1": recall_at(rankings, wanted, 1), "recall@5": recall_at(rankings, wanted, 5)}


def answer_hits(answers: Sequence[str], facts: Sequence[Fact]) -> list[bool]:
    return [contains_answer(a, f) for a, f in zip(answers, facts, strict=True)]


def share(hits: Sequence[bool]) -> float:
    if not hits:
        raise ValueError("share of no answers")
    return sum(hits) / len(hits)
