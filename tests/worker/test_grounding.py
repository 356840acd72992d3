"""Is a retrieved fact about what the question asks (worker/grounding.py), on fixed pairs."""

from __future__ import annotations

import pytest

from memq.contracts import LeftOut, MemoryHit
from worker.grounding import (
    about_something_else,
    abstention,
    cited,
    names_asked,
    relations_asked,
)
from worker.prompting import gate

ANSWERED = [
    ("What is Anjali's feline called?", "Anjali Raman's cat is called Marmalade."),
    (
        "Which street is Caldera Labs' Lisbon office on?",
        "The Lisbon office of Caldera Labs is on Rua Augusta.",
    ),
    ("Where can I send Babajide an email?", "Babajide Okonjo's email is bj@tallgrass.example."),
    ("What is my dog called?", "The user said: My dog's name is Rufus."),
    ("And now?", "Alice lives in Paris."),  # no name asked: nothing to check
]
SOMEONE_ELSE = [
    ("What car does Kofi drive?", "Marek Dvořák drives a red Volvo."),
    ("What is Nadia's brother's job?", "Nadia Benali works as a radiographer."),
    ("What is Priya's dog called?", "Priya's cat is called Biscuit."),
    (
        "Who manages the Mombasa branch of Bellweather?",
        "The Nairobi branch of Bellweather is run by Wanjiku.",
    ),
]


@pytest.mark.parametrize(("question", "fact"), ANSWERED)
def test_a_fact_about_the_asked_subject_is_kept(question: str, fact: str) -> None:
    assert not about_something_else(question, fact)


@pytest.mark.parametrize(("question", "fact"), SOMEONE_ELSE)
def test_a_fact_about_someone_else_is_left_out(question: str, fact: str) -> None:
    assert about_something_else(question, fact)


def test_names_skip_question_words_the_asker_and_sentence_starts() -> None:
    assert names_asked("Where can I send Babajide an email?") == {"babajide"}
    assert names_asked("What time is it. And Kofi?") == {"kofi"}
    assert names_asked("Priya's dog is called what?") == {"priya"}
    assert relations_asked("What is Nadia's brother's job?") == {"brother"}
    assert relations_asked("What is my dog called?") == {"dog"}


def test_the_gate_reports_a_memory_about_someone_else() -> None:
    hits = [
        MemoryHit(
            id="m1", score=0.9, text="Marek drives a red Volvo.", namespace="n", similarity=0.8
        ),
        MemoryHit(id="m2", score=0.5, text="Kofi rides a bike.", namespace="n", similarity=0.5),
    ]
    kept, left_out = gate(hits, 0.3, "What does Kofi drive?")
    assert [h.id for h in kept] == ["m2"]
    assert left_out == {"m1": LeftOut.different_subject}
    kept, left_out = gate(hits, 0.3, None)
    assert [h.id for h in kept] == ["m1", "m2"] and left_out == {}


def _memory(i: int, text: str) -> MemoryHit:
    return MemoryHit(id=f"m{i}", score=1.0, text=text, namespace="n", version=2)


def test_an_answer_cites_the_memory_whose_value_it_states() -> None:
    memories = [
        _memory(1, "Priya Raman's cat is called Biscuit."),
        _memory(2, "Marek drives a red Volvo."),
        _memory(3, "Priya Raman works as a baker."),
    ]
    question = "What is Priya's cat called?"
    assert [m.id for m in cited("Her cat is called Biscuit.", question, memories)] == ["m1"]
    assert cited("I don't know.", question, memories) == []
    # Words the question already has (the name, "cat") are no evidence of use.
    assert cited("Priya's cat.", question, memories) == []


def test_memq_abstains_when_every_memory_is_about_someone_else() -> None:
    marek = _memory(1, "Marek drives a red Volvo.")
    left = {"m1": LeftOut.different_subject}
    said = abstention("What car does Kofi drive?", [marek], left)
    assert said == "I don't know: my notes hold nothing about Kofi."
    asked = abstention("What is Nadia's brother's job?", [marek], left)
    assert asked == "I don't know: my notes hold nothing about Nadia's brother."
    # Not a question, nothing retrieved, or one memory kept (or left out otherwise): the
    # model answers.
    assert abstention("Kofi drives", [marek], left) is None
    assert abstention("What car does Kofi drive?", [], {}) is None
    assert abstention("What car does Kofi drive?", [marek], {}) is None
    below = {"m1": LeftOut.below_similarity_floor}
    assert abstention("What car does Kofi drive?", [marek], below) is None
    far = _memory(2, "Kofi's sister paints.")
    mixed = {"m1": LeftOut.different_subject, "m2": LeftOut.below_similarity_floor}
    assert abstention("What car does Kofi drive?", [marek, far], mixed) is not None
    no_room = {"m1": LeftOut.different_subject, "m2": LeftOut.did_not_fit}
    assert abstention("What car does Kofi drive?", [marek, far], no_room) is None


def test_labels_and_sentence_starts_are_not_names() -> None:
    assert names_asked("Question: Where does Alice live?\nAnswer:") == {"alice"}
    assert names_asked("Q: What does Kofi drive? A:") == {"kofi"}
