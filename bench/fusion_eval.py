"""Does the default search mode ever lose to its best leg? Issue 20, point 4, in process.

    .venv/bin/python -m bench.fusion_eval              # 400 and 4,000 distractors, ~10 min
    .venv/bin/python -m bench.fusion_eval --sizes 400  # quick

Stores memq/evaluation/data.py's 40 paraphrase facts, a retrieval split's code / rare-name /
number / paraphrase facts with their near-identical decoys, and N distractors in one
namespace of the memory service (`MemoryService` on the embedded engine, MiniLM), then
asks every query in each mode: `dense`, `keyword`, the engine's RRF (k=60: memq's hybrid
before issue 20) and `hybrid` (now: the cosine plus a bounded BM25 bonus). Two distractor
pools: generic facts about other people, and the same facts rewritten to name the eval
facts' people ("shared names": a user's namespace, where every memory is about one person).
Recall@1, recall@5 and MRR per mode, set and pool; writes bench/results/fusion.md + .png.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench._harness import RESULTS, machine, subplots, write_result
from memory_service.core.config import MemorySettings
from memory_service.services.embeddings import embedder_for
from memory_service.services.memories import MemoryService
from memory_service.services.records import namespace_where
from memory_service.store.base import SearchSpec
from memory_service.store.edge import EdgeStore
from memq.contracts import MemoryCreate, MemorySearchRequest, SearchMode
from memq.evaluation import sets
from memq.evaluation.data import FACTS, distractors

MODES = ("dense", "keyword", "rrf (before)", "hybrid (now)")


@dataclass(frozen=True)
class Query:
    text: str
    wanted: str
    group: str


def _shared_names(pool: list[str], seed: int) -> list[str]:
    rng = random.Random(seed)
    names = [" ".join(f.text.split()[:2]).removesuffix("'s") for f in FACTS]
    return [re.sub(r"^\S+ \S+", rng.choice(names), t) for t in pool]


def _rrf_search(service: MemoryService, ns: str, query: str, k: int) -> list[str]:
    """memq's hybrid before issue 20: both legs fused by the engine with RRF k=60."""
    where = namespace_where(ns, service.clock(), include_superseded=False)
    spec = SearchSpec(
        limit=k,
        dense=service.embedder.embed([query])[0].tolist(),
        sparse=service.embedder.sparse_query(query),
        where=where,
    )
    return [f.payload["text"] for f in service.store.search("eval", spec)]


def rank(service: MemoryService, ns: str, mode: str, query: str, k: int = 20) -> list[str]:
    if mode == "rrf (before)":
        return _rrf_search(service, ns, query, k)
    search_mode = {"dense": SearchMode.dense, "keyword": SearchMode.keyword}.get(
        mode, SearchMode.hybrid
    )
    req = MemorySearchRequest(namespace=ns, query=query, top_k=k, mode=search_mode)
    return [h.text for h in service.search("eval", req)]


def scores(rankings: list[list[str]], wanted: list[str]) -> dict[str, float]:
    n = len(wanted)
    r1 = sum(r[:1] == [w] for r, w in zip(rankings, wanted, strict=True)) / n
    r5 = sum(w in r[:5] for r, w in zip(rankings, wanted, strict=True)) / n
    mrr = sum(
        1 / (r.index(w) + 1) if w in r else 0.0 for r, w in zip(rankings, wanted, strict=True)
    )
    return {"recall@1": r1, "recall@5": r5, "MRR": mrr / n}


def run_pool(
    service: MemoryService, ns: str, texts: list[str], queries: list[Query]
) -> dict[str, dict[str, dict[str, float]]]:
    for start in range(0, len(texts), 256):
        items = [
            MemoryCreate(namespace=ns, text=t, auto_supersede=False)
            for t in texts[start : start + 256]
        ]
        service.add_many("eval", items, near_dedup=False)
    out: dict[str, dict[str, dict[str, float]]] = {}
    groups = [*sorted({q.group for q in queries}), "all"]
    for mode in MODES:
        rankings = [rank(service, ns, mode, q.text) for q in queries]
        out[mode] = {}
        for group in groups:
            picked = [i for i, q in enumerate(queries) if group in ("all", q.group)]
            out[mode][group] = scores(
                [rankings[i] for i in picked], [queries[i].wanted for i in picked]
            )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[400, 4000])
    parser.add_argument("--splits", nargs="+", default=["dev", "holdout"])
    parser.add_argument("--out", type=Path, default=RESULTS / "fusion")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="memq-fusion-"))
    settings = MemorySettings(
        data_dir=tmp,
        service_token="x" * 32,
        model_cache_dir=Path(tempfile.gettempdir()) / "memq-test-models",
    )
    embedder = embedder_for(settings)
    service = MemoryService(
        store=EdgeStore(tmp / "qdrant", embedder.dim, flush_on_write=False), embedder=embedder
    )
    results: list[dict[str, Any]] = []
    t0 = time.monotonic()
    for split in args.splits:
        data = sets.retrieval(split)
        queries = [Query(f.question, f.text, "paraphrase (data.py)") for f in FACTS] + [
            Query(item.query, item.fact, item.kind) for item in data.items
        ]
        facts = [f.text for f in FACTS] + [item.fact for item in data.items] + list(data.decoys)
        for size in args.sizes:
            pool = distractors(size, seed=7)
            for label, texts in (("generic", pool), ("shared names", _shared_names(pool, size))):
                ns = f"{split}-{size}-{label.replace(' ', '-')}"
                found = run_pool(service, ns, facts + texts, queries)
                results.append(
                    {"split": split, "distractors": size, "pool": label, "scores": found}
                )
                print(
                    json.dumps(results[-1]["scores"]["hybrid (now)"]["all"]),
                    split,
                    size,
                    label,
                    flush=True,
                )
    write(results, args.out, time.monotonic() - t0)


def write(results: list[dict[str, Any]], out: Path, seconds: float) -> None:
    lines = [
        "# Hybrid search vs its legs (issue 20, point 4)",
        "",
        f"`python -m bench.fusion_eval` ({seconds / 60:.0f} min). MiniLM + the embedded Qdrant "
        "engine, top 20 per query. `rrf (before)`: the engine's RRF k=60, memq's default "
        "before; `hybrid (now)`: cosine + 0.3 x BM25 / best BM25 "
        "(memory_service/services/fusion.py).",
        "",
        "| split | distractors | pool | mode | recall@1 | recall@5 | MRR | code r@1 | "
        "rare name r@1 | paraphrase r@1 |",
        "|---|---:|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        for mode in MODES:
            s = r["scores"][mode]
            lines.append(
                f"| {r['split']} | {r['distractors']:,} | {r['pool']} | {mode} | "
                f"{s['all']['recall@1']:.3f} | {s['all']['recall@5']:.3f} | "
                f"{s['all']['MRR']:.3f} | "
                f"{s.get('code', {}).get('recall@1', float('nan')):.3f} | "
                f"{s.get('rare_name', {}).get('recall@1', float('nan')):.3f} | "
                f"{s.get('paraphrase (data.py)', {}).get('recall@1', float('nan')):.3f} |"
            )
    fig, ax = subplots(figsize=(10, 4))
    labels = [f"{r['split']}\n{r['distractors']}\n{r['pool']}" for r in results]
    width = 0.2
    for i, mode in enumerate(MODES):
        ax.bar(
            [x + i * width for x in range(len(results))],
            [r["scores"][mode]["all"]["MRR"] for r in results],
            width,
            label=mode,
        )
    ax.set_xticks([x + 1.5 * width for x in range(len(results))], labels, fontsize=7)
    ax.set_ylabel("MRR")
    ax.set_ylim(0, 1.05)
    ax.legend(fontsize=8)
    ax.set_title("Hybrid (now) vs dense, keyword and RRF")
    write_result(out, lines, machine=machine(), data={"results": results}, figure=fig)


if __name__ == "__main__":
    main()
