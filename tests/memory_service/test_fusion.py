"""Hybrid ranking (memory_service/services/fusion.py): a cosine plus a bounded keyword bonus,
recency and MMR, on fixed numbers."""

from __future__ import annotations

import math

import pytest

from memory_service.core.config import KEYWORD_WEIGHT
from memory_service.services.fusion import (
    Candidate,
    fused_scores,
    mmr_order,
    rank,
    recency_factor,
)


def test_keyword_bonus_is_the_share_of_the_best_bm25_times_the_weight() -> None:
    candidates = [Candidate("a", 0.50, 8.0), Candidate("b", 0.40, 2.0), Candidate("c", 0.45)]
    assert fused_scores(candidates, 0.3) == pytest.approx([0.80, 0.475, 0.45])


def test_without_keyword_matches_the_order_is_the_dense_order() -> None:
    candidates = [Candidate("a", 0.2), Candidate("b", 0.9), Candidate("c", 0.5)]
    assert fused_scores(candidates, KEYWORD_WEIGHT) == [0.2, 0.9, 0.5]
    assert [c.key for c, _ in rank(candidates)] == ["b", "c", "a"]


def test_a_cosine_lead_larger_than_the_weight_is_never_overturned() -> None:
    # The keyword leg's favourite cannot beat a memory whose cosine is ahead by more than
    # the largest bonus: fusion cannot lose to the dense leg by more than the weight.
    dense_best = Candidate("dense", 0.80, 0.0)
    keyword_best = Candidate("keyword", 0.80 - KEYWORD_WEIGHT - 0.01, 50.0)
    assert [c.key for c, _ in rank([keyword_best, dense_best])] == ["dense", "keyword"]


def test_an_exact_rare_token_decides_between_near_equal_cosines() -> None:
    decoy = Candidate("KX-4417", 0.71, 3.0)
    fact = Candidate("KX-4471", 0.70, 9.0)
    assert [c.key for c, _ in rank([decoy, fact])] == ["KX-4471", "KX-4417"]


def test_ties_are_broken_by_key_whatever_the_input_order() -> None:
    one, two = Candidate("m1", 0.5), Candidate("m2", 0.5)
    assert [c.key for c, _ in rank([two, one])] == ["m1", "m2"]
    assert [c.key for c, _ in rank([one, two])] == ["m1", "m2"]


def test_recency_halves_the_score_per_half_life_either_side_of_now() -> None:
    assert recency_factor(1000.0, 1000.0, 10.0) == 1.0
    assert recency_factor(990.0, 1000.0, 10.0) == pytest.approx(0.5)
    assert recency_factor(1010.0, 1000.0, 10.0) == pytest.approx(0.5)
    assert recency_factor(970.0, 1000.0, 10.0) == pytest.approx(0.125)
    assert recency_factor(None, 1000.0, 10.0) == 1.0


def test_recency_reorders_two_equally_relevant_memories() -> None:
    old = Candidate("old", 0.9, created_ts=0.0)
    new = Candidate("new", 0.8, created_ts=100.0)
    ranked = rank([old, new], now=100.0, recency_half_life_s=50.0)
    assert [c.key for c, _ in ranked] == ["new", "old"]
    assert ranked[1][1] == pytest.approx(0.9 * 0.25)


def test_mmr_prefers_a_different_memory_over_a_near_copy_of_the_first() -> None:
    query = [1.0, 0.0]
    s = math.sqrt(0.5)
    first = Candidate("first", 0.0, vector=[1.0, 0.0])
    copy = Candidate("copy", 0.0, vector=[0.99, math.sqrt(1 - 0.99**2)])
    other = Candidate("other", 0.0, vector=[s, -s])
    assert mmr_order(query, [first, copy, other], 0.3, 3) == [0, 2, 1]
    assert mmr_order(query, [first, copy, other], 1.0, 3) == [0, 1, 2]
    assert mmr_order(query, [first, copy, other], 0.5, 1) == [0]
    assert mmr_order(query, [], 0.5, 3) == []
