"""The subject check and citations on the abstention sets (issue 28), without a model.

    .venv/bin/python -m bench.grounding_eval      # seconds

For every question of memq/evaluation/sets/abstention.{dev,holdout}.json: does the worker's
subject check (`worker.grounding.about_something_else`) keep the fact of an answerable
question and leave out the near fact of an unanswerable one? And with the expected answer
as the model's answer, do citations (`worker.grounding.cited`) point at the question's fact
among it and four other facts? Writes bench/results/grounding.md + .json. What the served
model then says is measured by bench/answer_eval.py.
"""

from __future__ import annotations

import random
from collections import Counter
from typing import Any

from bench._harness import RESULTS, machine, table, write_result
from memq.contracts import MemoryHit
from memq.evaluation import sets
from worker.grounding import about_something_else, cited


def evaluate(split: str) -> dict[str, Any]:
    data = sets.abstention(split)
    facts = {f.id: f for f in data.facts}
    rng = random.Random(1)
    kept = dropped = answerable = unanswerable = 0
    cited_right = cited_all = found = 0
    missed_kinds: Counter[str] = Counter()
    for q in data.questions:
        if q.answerable and q.fact_id is not None:
            answerable += 1
            fact = facts[q.fact_id]
            kept += not about_something_else(q.question, fact.text)
            others = rng.sample([f for f in data.facts if f.id != fact.id], 4)
            memories = [
                MemoryHit(id=f.id, score=1.0, text=f.text, namespace="eval")
                for f in (fact, *others)
            ]
            ids = [m.id for m in cited(f"{q.answer}.", q.question, memories)]
            cited_all += len(ids)
            cited_right += ids.count(fact.id)
            found += fact.id in ids
        elif q.near_fact_id is not None:
            unanswerable += 1
            out = about_something_else(q.question, facts[q.near_fact_id].text)
            dropped += out
            if not out:
                missed_kinds[q.kind] += 1
    return {
        "split": split,
        "answerable": answerable,
        "unanswerable": unanswerable,
        "answerable fact kept": kept / answerable,
        "unanswerable near fact left out": dropped / unanswerable,
        "citation precision": cited_right / max(1, cited_all),
        "citation recall": found / answerable,
        "near facts kept, by kind": dict(missed_kinds),
    }


def main() -> None:
    rows = [evaluate(split) for split in ("dev", "holdout")]
    lines = [
        "# Subject check and citations (issue 28)",
        "",
        "`python -m bench.grounding_eval`: worker/grounding.py on the labelled questions of "
        "memq/evaluation/sets/abstention.*.json, no model. The check keys on names and "
        "relations; what it cannot see (another attribute or event of the same subject: "
        "'Priya's bank card PIN' next to 'Priya's office alarm PIN') is left to the prompt's "
        "don't-know path, measured with the model in answers.md.",
        "",
        *table(
            [
                "split",
                "answerable fact kept",
                "unanswerable near fact left out",
                "citation precision",
                "citation recall",
            ],
            [
                [
                    r["split"],
                    f"{r['answerable fact kept']:.0%} of {r['answerable']}",
                    f"{r['unanswerable near fact left out']:.0%} of {r['unanswerable']}",
                    f"{r['citation precision']:.2f}",
                    f"{r['citation recall']:.2f}",
                ]
                for r in rows
            ],
            "lrrrr",
        ),
        "",
        *(
            f"- {r['split']}: near facts kept, by kind: {r['near facts kept, by kind']}"
            for r in rows
        ),
    ]
    write_result(RESULTS / "grounding", lines, machine=machine(), data={"rows": rows})


if __name__ == "__main__":
    main()
