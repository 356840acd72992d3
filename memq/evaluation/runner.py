"""`memq eval`: the memory evaluation against a running stack, through the SDK.

It stores the set in one namespace, searches it once per question and mode, and asks every
question as an ordinary chat job with memory on and off (bench/memory_eval.py asks the same
through `/v1/chat/completions`, which makes the same job). Creating and deleting the
namespace is the caller's part."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from memq.contracts import JobStatus, SearchMode
from memq.errors import MemqError
from memq.evaluation.data import FACTS, Fact, distractors
from memq.evaluation.scoring import (
    ANSWER_TARGETS,
    MAX_TOKENS,
    MEMORY_OFF,
    MEMORY_ON,
    RECALL_TARGET,
    TOP_K,
    Target,
    answer_hits,
    answer_job,
    recall_of,
    share,
)
from memq.sdk import Client

BATCH = 200
QUICK_FACTS, QUICK_DISTRACTORS = 10, 100
FULL_DISTRACTORS = 400
JOB_TIMEOUT_S = 900.0

Progress = Callable[[str], None]


def quiet(step: str) -> None:
    pass


@dataclass
class EvalReport:
    namespace: str
    facts: int
    distractors: int
    recall: dict[str, dict[str, float]]
    answers: dict[str, float] | None = None
    model: str | None = None
    failed_jobs: int = 0
    seconds: float = 0.0
    deleted: bool = False
    targets: list[dict[str, Any]] = field(default_factory=list)

    def score_targets(self) -> None:
        """Put each target whose number was measured next to it."""
        measured: list[tuple[Target, float]] = []
        hybrid = self.recall.get(SearchMode.hybrid.value)
        if hybrid is not None:
            measured.append((RECALL_TARGET, hybrid["recall@5"]))
        if self.answers is not None:
            on, off = ANSWER_TARGETS
            measured += [(on, self.answers[MEMORY_ON]), (off, self.answers[MEMORY_OFF])]
        self.targets = [
            {
                "metric": target.metric,
                "target": str(target),
                "value": value,
                "shown": target.show(value),
                "met": target.met(value),
                "note": target.note,
            }
            for target, value in measured
        ]

    def to_json(self) -> dict[str, Any]:
        return {
            "namespace": self.namespace,
            "deleted": self.deleted,
            "model": self.model,
            "facts": self.facts,
            "distractors": self.distractors,
            "top_k": TOP_K,
            "recall": self.recall,
            "answers": self.answers,
            "failed_jobs": self.failed_jobs,
            "targets": self.targets,
            "seconds": round(self.seconds, 2),
        }


def eval_set(quick: bool) -> tuple[list[Fact], list[str]]:
    if quick:
        return FACTS[:QUICK_FACTS], distractors(QUICK_DISTRACTORS)
    return list(FACTS), distractors(FULL_DISTRACTORS)


def ingest(
    client: Client, namespace: str, facts: Sequence[Fact], noise: Sequence[str]
) -> list[str]:
    """Store the facts and distractors; the facts' memory ids, in order."""
    texts = [f.text for f in facts] + list(noise)
    ids: list[str] = []
    for start in range(0, len(texts), BATCH):
        added = client.add_memories(texts[start : start + BATCH], namespace=namespace)
        ids += [memory.id for memory in added]
    return ids[: len(facts)]


def retrieval(
    client: Client,
    namespace: str,
    facts: Sequence[Fact],
    fact_ids: Sequence[str],
    modes: Sequence[SearchMode],
    progress: Progress = quiet,
) -> dict[str, dict[str, float]]:
    """recall@1 and recall@5 of each mode, the questions searched one by one."""
    out: dict[str, dict[str, float]] = {}
    for mode in modes:
        progress(f"searching {len(facts)} questions ({mode.value})")
        rankings = [
            [hit.id for hit in client.search(namespace, fact.question, top_k=TOP_K, mode=mode)]
            for fact in facts
        ]
        out[mode.value] = recall_of(rankings, fact_ids)
    return out


def answers(
    client: Client,
    namespace: str,
    facts: Sequence[Fact],
    max_new_tokens: int = MAX_TOKENS,
    progress: Progress = quiet,
) -> tuple[dict[str, float], str | None, int]:
    """answer-contains-fact with memory on and off; the served model; jobs that failed.

    Every job is queued first (on and off alternating, so both see the same load), then
    each is awaited; if the run stops early, the ones not awaited are cancelled."""
    conditions = {MEMORY_ON: namespace, MEMORY_OFF: None}
    queued: list[tuple[str, int, str]] = []
    texts: dict[str, list[str]] = {name: [""] * len(facts) for name in conditions}
    model: str | None = None
    failed = 0
    done = 0
    try:
        for i, fact in enumerate(facts):
            for name, source in conditions.items():
                accepted = client.submit(answer_job(fact.question, source, max_new_tokens))
                queued.append((name, i, accepted.id))
        for name, i, job_id in queued:
            progress(f"answering: {done} of {len(queued)} jobs done")
            job = client.wait(job_id, timeout=JOB_TIMEOUT_S)
            done += 1
            if job.status == JobStatus.succeeded and job.result is not None:
                texts[name][i] = job.result.text
                model = model or job.result.model
            else:
                failed += 1  # scored as an answer without the fact
    finally:
        for _, _, job_id in queued[done:]:
            with contextlib.suppress(MemqError):  # it may have ended meanwhile
                client.cancel(job_id)
    rates = {name: share(answer_hits(texts[name], facts)) for name in conditions}
    return rates, model, failed


def run(
    client: Client,
    namespace: str,
    *,
    quick: bool,
    modes: Sequence[SearchMode],
    with_answers: bool,
    max_new_tokens: int = MAX_TOKENS,
    progress: Progress = quiet,
) -> EvalReport:
    started = time.monotonic()
    facts, noise = eval_set(quick)
    progress(f"storing {len(facts)} facts and {len(noise)} distractors in {namespace}")
    fact_ids = ingest(client, namespace, facts, noise)
    report = EvalReport(
        namespace=namespace,
        facts=len(facts),
        distractors=len(noise),
        recall=retrieval(client, namespace, facts, fact_ids, modes, progress),
    )
    if with_answers:
        report.answers, report.model, report.failed_jobs = answers(
            client, namespace, facts, max_new_tokens, progress
        )
    report.seconds = time.monotonic() - started
    report.score_targets()
    return report
