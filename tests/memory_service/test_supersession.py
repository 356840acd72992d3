"""The supersession rule (memory_service/services/supersession.py) on fixed pairs: what
replaces a fact, and what only looks like it does."""

from __future__ import annotations

import pytest

from memory_service.services.supersession import (
    CUE_SIMILARITY,
    FRAME_SIMILARITY,
    judge,
    subject_entities,
)

UPDATES = [
    # (old, new, cosine) — each must supersede
    ("Tomasz Wierzba lives in Gdansk.", "Tomasz Wierzba moved to Krakow.", 0.8),
    ("Tomasz Wierzba lives in Gdansk.", "Tomasz moved out of Gdansk and now lives in Krakow.", 0.9),
    ("The user said: I live in Paris.", "The user said: I moved to Lyon.", 0.6),
    (
        "The wifi password of the Oakridge cabin is pine-42.",
        "The Oakridge cabin's wifi password was changed to cedar-77.",
        0.8,
    ),
    (
        "The Project Halcyon sync is on Tuesdays.",
        "The Project Halcyon sync moved to Thursdays.",
        0.85,
    ),
    ("Marek drives a red Volvo.", "Marek drives a blue Audi.", 0.8),  # no cue: values only
    ("Priya's cat is called Biscuit.", "Priya's cat is called Mango now.", 0.9),
    (
        "Søren is a junior analyst at Brightwater.",
        "Søren was promoted to head of logistics at Brightwater.",
        0.8,
    ),
]

COMPATIBLE = [
    ("Alice Moreau likes green tea.", "Alice Moreau's sister likes green tea.", 0.9),
    ("Alice Moreau lives in Paris.", "Alice Moreau works in Lyon.", 0.7),
    ("The Project Marlin sync is on Tuesdays.", "The Project Marlin retro is on Tuesdays.", 0.85),
    ("Bogdan speaks French.", "Bogdan also speaks German.", 0.8),
    ("Keala speaks Hawaiian.", "Keala speaks Japanese.", 0.9),  # several languages at once
    ("Carla works at Nordlys.", "Carla works at Nordlys as a welder.", 0.9),  # more detail
    ("Odile likes green tea.", "Benedikt likes green tea.", 0.8),  # another person
    ("Flight ZR 311 leaves from gate 14.", "Flight ZR 313 leaves from gate 14.", 0.9),
    ("Wayra Mamani was born in Cusco.", "Wayra Mamani got married in Cusco.", 0.85),
    (
        "Amberfall's Dublin office is on Baggot Street.",
        "Amberfall's Cork office is on Patrick Street.",
        0.8,
    ),
]


@pytest.mark.parametrize(("old", "new", "cosine"), UPDATES)
def test_a_new_value_of_the_same_attribute_supersedes(old: str, new: str, cosine: float) -> None:
    verdict = judge(old, new, cosine)
    assert verdict.supersedes, verdict.reason


@pytest.mark.parametrize(("old", "new", "cosine"), COMPATIBLE)
def test_a_fact_that_only_looks_like_an_update_leaves_both_current(
    old: str, new: str, cosine: float
) -> None:
    verdict = judge(old, new, cosine)
    assert not verdict.supersedes, verdict.reason


def test_the_reason_names_the_subject_the_cue_and_the_values() -> None:
    verdict = judge("Tomasz Wierzba lives in Gdansk.", "Tomasz Wierzba moved to Krakow.", 0.8)
    assert "tomasz" in verdict.reason
    assert "Gdansk" in verdict.reason and "Krakow" in verdict.reason
    assert "moved" in verdict.reason


def test_similarity_thresholds_gate_both_paths() -> None:
    cue = ("Tomasz lives in Gdansk.", "Tomasz moved to Krakow.")
    assert judge(*cue, CUE_SIMILARITY).supersedes
    assert not judge(*cue, CUE_SIMILARITY - 0.01).supersedes
    frame = ("Marek drives a red Volvo.", "Marek drives a blue Audi.")
    assert judge(*frame, FRAME_SIMILARITY).supersedes
    assert not judge(*frame, FRAME_SIMILARITY - 0.01).supersedes


def test_the_same_sentence_again_is_not_an_update() -> None:
    assert not judge("Marek drives a red Volvo.", "Marek drives a red Volvo.", 1.0).supersedes


def test_subjects_are_names_or_the_user() -> None:
    assert subject_entities("Tomasz Wierzba lives in Gdansk.") >= {"tomasz", "wierzba"}
    assert "user" in subject_entities("I live in Paris.")
    assert "user" in subject_entities("My flatmate is Gustavo.")
