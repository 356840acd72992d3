"""How hybrid search ranks its two legs' candidates: the dense cosine plus a bounded keyword
bonus, then the optional recency weight and MMR, all in the service, so the embedded engine
and a Qdrant server rank the same candidates identically.

Why not reciprocal rank fusion (the engine's `Fusion.Rrf`, memq's default before): RRF
weighs a leg by rank alone, so a weak keyword leg pulls a weak candidate level with the
dense winner. In a user's namespace every memory names the same person; BM25 then ranks
by the name and noise, and RRF lost to plain dense (recall@1 0.60 vs 0.975 on the dev set
with shared names, bench/results/fusion.md). A cosine plus a bonus of at most
`KEYWORD_WEIGHT` (BM25 divided by the best BM25 among the candidates) keeps dense's order
wherever cosines differ by more than the bonus, and lets an exact rare token (a code, an
unusual name) decide between candidates the embedding cannot tell apart.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from memory_service.core.config import KEYWORD_WEIGHT


@dataclass(frozen=True)
class Candidate:
    """One memory found by either leg: its cosine to the query and its BM25 score (0 when
    the keyword leg did not return it)."""

    key: str
    similarity: float
    keyword: float = 0.0
    created_ts: float | None = None
    vector: Sequence[float] | None = None


def fused_scores(candidates: Sequence[Candidate], keyword_weight: float) -> list[float]:
    """Each candidate's score: its cosine plus `keyword_weight` times its share of the best
    BM25 score among the candidates."""
    best = max((c.keyword for c in candidates), default=0.0)
    if best <= 0.0:
        return [c.similarity for c in candidates]
    return [c.similarity + keyword_weight * c.keyword / best for c in candidates]


def recency_factor(created_ts: float | None, now: float, half_life_s: float) -> float:
    """Qdrant's `exp_decay` with midpoint 0.5: a memory `half_life_s` old counts half; one
    without a creation time counts as new (the engine path's default)."""
    if created_ts is None:
        return 1.0
    return math.pow(0.5, abs(now - created_ts) / half_life_s)


def mmr_order(
    query: Sequence[float], candidates: Sequence[Candidate], lambda_: float, limit: int
) -> list[int]:
    """Maximal marginal relevance over `candidates` (indices into it, best first):
    `lambda_ * cos(query, c) - (1 - lambda_) * max cos(c, chosen)`. Every candidate needs
    its vector."""
    if not candidates:
        return []
    vectors = np.array([c.vector for c in candidates], dtype=np.float32)
    relevance = vectors @ np.asarray(query, dtype=np.float32)
    chosen: list[int] = []
    closest = np.zeros(len(candidates), dtype=np.float32)
    open_ = np.ones(len(candidates), dtype=bool)
    while open_.any() and len(chosen) < limit:
        value = lambda_ * relevance - (1.0 - lambda_) * closest if chosen else relevance
        # argmax takes the first maximum: ties go to the better-ranked candidate.
        best = int(np.argmax(np.where(open_, value, -np.inf)))
        chosen.append(best)
        open_[best] = False
        similar = vectors @ vectors[best]
        closest = similar if len(chosen) == 1 else np.maximum(closest, similar)
    return chosen


def rank(
    candidates: Sequence[Candidate],
    *,
    keyword_weight: float = KEYWORD_WEIGHT,
    now: float = 0.0,
    recency_half_life_s: float | None = None,
) -> list[tuple[Candidate, float]]:
    """Candidates with their final scores, best first (ties by key, so the order never
    depends on which leg answered first)."""
    scores = fused_scores(candidates, keyword_weight)
    if recency_half_life_s is not None:
        scores = [
            s * recency_factor(c.created_ts, now, recency_half_life_s)
            for c, s in zip(candidates, scores, strict=True)
        ]
    ranked = sorted(zip(candidates, scores, strict=True), key=lambda cs: (-cs[1], cs[0].key))
    return ranked
