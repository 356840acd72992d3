"""The fact-extraction heuristic on a labelled set: what it keeps and what it must not."""

from __future__ import annotations

from worker.facts import extract_facts

FACTS = [
    "I live in Harrowcove with my two cats.",
    "My favourite mountain is Mount Kerrowan.",
    "I'm allergic to hazelnuts.",
    "I work as a lighthouse keeper.",
    "My sister is called Juniper.",
    "I have a green 1974 Citroën.",
    "I speak fluent Icelandic.",
    "I grew up in Lunmere.",
    "My lucky number is 47.",
    "I play the bassoon in an orchestra.",
    "We live near the old harbour.",
    "I don't eat meat.",
    "I've been to Lisbon three times.",
    "My office is on the ninth floor.",
    "I keep bees on my roof.",
]
NOT_FACTS = [
    "What is the capital of France?",
    "Can you help me write an email?",
    "I think you are wrong about that.",
    "Tell me a joke.",
    "I wonder if it will rain tomorrow?",
    "Thanks!",
    "My question is about Python decorators.",
    "I want you to summarize this article.",
    "Do you know where I live?",
    "Please explain quantum computing simply.",
    "Your last answer was great.",
    "Hello there.",
    "Where did I say my office was?",
    "I need you to be brief.",
    "ok",
]


def test_every_labelled_fact_is_kept_verbatim() -> None:
    for sentence in FACTS:
        assert extract_facts(sentence) == [sentence], sentence


def test_questions_requests_and_remarks_about_the_assistant_are_not_facts() -> None:
    for sentence in NOT_FACTS:
        assert extract_facts(sentence) == [], sentence


def test_a_message_mixing_both_keeps_only_the_statements() -> None:
    message = "Hi! I live in Tallinn. Can you recommend a café? My daughter is named Juniper"
    assert extract_facts(message) == ["I live in Tallinn.", "My daughter is named Juniper."]


def test_precision_and_recall_on_the_labelled_set() -> None:
    kept = [s for s in FACTS + NOT_FACTS if extract_facts(s)]
    true_positive = sum(1 for s in kept if s in FACTS)
    precision = true_positive / len(kept)
    recall = true_positive / len(FACTS)
    print(f"fact extraction: precision {precision:.2f}, recall {recall:.2f}")
    assert precision == 1.0 and recall == 1.0
