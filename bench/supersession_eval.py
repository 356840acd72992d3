"""How well does automatic supersession decide? Issue 20, point 2, in process, ~1 min.

    .venv/bin/python -m bench.supersession_eval

For every labelled pair of memq/evaluation/sets/updates.{dev,holdout}.json, the rule the
memory service applies on write (`memory_service.services.supersession.judge`, with the
MiniLM cosine of the two facts): an update pair must supersede, a near-but-compatible pair
must not. Reports missed updates and false supersessions per split and kind (dev chose the
rule's words and thresholds; holdout was looked at once, after, and is reported as measured
then and now) and writes bench/results/supersession.md + .json.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from bench._harness import RESULTS, machine, write_result
from memory_service.core.config import MemorySettings
from memory_service.services.embeddings import embedder_for
from memory_service.services.supersession import judge
from memq.evaluation import sets

FIRST_HOLDOUT_LOOK = {"missed": 0.375, "false": 0.031}
"""Holdout as first measured, before any change informed by it (the rule then missed 24
of 64 updates and falsely superseded 2 of 64 compatible pairs)."""


def evaluate(split: str, embed: Any) -> dict[str, Any]:
    data = sets.updates(split)
    olds = embed([u.old for u in data.updates])
    news = embed([u.new for u in data.updates])
    firsts = embed([c.first for c in data.compatible])
    seconds = embed([c.second for c in data.compatible])
    missed, false = [], []
    for u, a, b in zip(data.updates, olds, news, strict=True):
        verdict = judge(u.old, u.new, float(np.dot(a, b)))
        if not verdict.supersedes:
            missed.append({"kind": u.kind, "old": u.old, "new": u.new, "why": verdict.reason})
    for c, a, b in zip(data.compatible, firsts, seconds, strict=True):
        verdict = judge(c.first, c.second, float(np.dot(a, b)))
        if verdict.supersedes:
            false.append(
                {"kind": c.kind, "first": c.first, "second": c.second, "why": verdict.reason}
            )
    n_up, n_co = len(data.updates), len(data.compatible)
    found = n_up - len(missed)
    return {
        "split": split,
        "updates": n_up,
        "compatible": n_co,
        "missed": len(missed) / n_up,
        "false": len(false) / n_co,
        "precision": found / max(1, found + len(false)),
        "recall": found / n_up,
        "missed_by_kind": Counter(m["kind"] for m in missed),
        "false_by_kind": Counter(f["kind"] for f in false),
        "missed_examples": missed,
        "false_examples": false,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=RESULTS / "supersession")
    args = parser.parse_args()
    settings = MemorySettings(
        data_dir=Path(tempfile.mkdtemp()),
        service_token="x" * 32,
        model_cache_dir=Path(tempfile.gettempdir()) / "memq-test-models",
    )
    embedder = embedder_for(settings)
    rows = [evaluate(split, embedder.embed) for split in ("dev", "holdout")]
    lines = [
        "# Automatic supersession (issue 20, point 2)",
        "",
        "`python -m bench.supersession_eval`: the write path's rule "
        "(memory_service/services/supersession.py) on the labelled pairs of "
        "memq/evaluation/sets/updates.*.json, with MiniLM cosines. Targets: false "
        "supersession <= 2 %, missed updates <= 10 %.",
        "",
        "| split | updates | compatible pairs | missed updates | false supersessions "
        "| precision | recall |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['split']} | {r['updates']} | {r['compatible']} | {r['missed']:.1%} | "
            f"{r['false']:.1%} | {r['precision']:.3f} | {r['recall']:.3f} |"
        )
    lines += [
        f"| holdout, first look | 64 | 64 | {FIRST_HOLDOUT_LOOK['missed']:.1%} | "
        f"{FIRST_HOLDOUT_LOOK['false']:.1%} | | |",
        "",
        "The dev split chose the rule's cue words and thresholds. The holdout split was run "
        "once with that rule (the last row); its errors then showed four structural gaps "
        "(a relation in value position, a name inside the subject phrase, the same value "
        "under another attribute, an identifier change with a change cue), which were fixed "
        "as rules, not as words; no cue word was added from it. The holdout is therefore no "
        "longer unseen. What it says: the rule is precise (0 false supersessions in 176 "
        "compatible pairs) but its recall depends on the change being said with a cue it "
        "knows; unseen phrasings of a change ('rechristened', 'appointed', 'passed to', "
        "'is down to') are missed, and the stale fact then stays current beside the new "
        "one. A model-based judge (an NLI model or an instruct model of ~1B parameters "
        "asked per candidate pair) is what would close that gap; none is available offline "
        "here.",
        "",
    ]
    for r in rows:
        lines.append(f"## {r['split']}: what was missed, by kind")
        lines.append("")
        lines.append(
            ", ".join(f"{k} {v}" for k, v in sorted(r["missed_by_kind"].items())) or "none"
        )
        lines.append("")
        for m in r["missed_examples"][:12]:
            lines.append(f"- `{m['old']}` -> `{m['new']}` ({m['why']})")
        lines.append("")
        if r["false_examples"]:
            lines.append(f"## {r['split']}: false supersessions")
            lines.append("")
            for f in r["false_examples"]:
                lines.append(f"- `{f['first']}` / `{f['second']}` ({f['why']})")
            lines.append("")
    data = json.loads(json.dumps({"rows": rows}, default=dict))
    write_result(args.out, lines, machine=machine(), data=data)


if __name__ == "__main__":
    main()
