"""Is a retrieved fact about what the question asks? The check behind `different_subject`.

Cosine similarity finds facts *like* the question, and a fact about another person with the
same attribute is very like it: asked "What car does Kofi drive?", the nearest memory is
"Marek drives a red Volvo", and a small model then answers "Kofi drives a red Volvo". So
before a memory goes into the prompt, the question's subject must be the fact's:

- every name the question gives (a capitalised word, not the first word's capital: a
  person, a place, an organisation, a branch) must be in the fact: asked about the Mombasa
  branch, a fact about the Nairobi branch of the same company is about something else;
- when the question asks about a relation of its subject ("Nadia's brother", "my dog"),
  the fact must mention that relation.

Measured on memq/evaluation/sets/abstention.*.json (bench/results/abstention.md): how many
unanswerable questions lose every near fact, and how many answerable ones keep theirs.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Sequence

from memq.contracts import LeftOut, MemoryHit
from memq.entities import (
    FIRST_PERSON,
    RELATIONS,
    STOPWORDS,
    Sentence,
    bare,
    capitalised,
    is_value,
    words,
)

QUESTION_WORDS = words(
    """what which who whom whose where when why how is are was were does do did can could
    tell please name give list"""
)


_SENTENCE_BREAK = re.compile(r"(?<=[.?!:])\s+|\n+")


def names_asked(question: str) -> set[str]:
    """The capitalised names of a question, lower-cased ("Kofi", "Bellweather")."""
    found: set[str] = set()
    for sentence in _SENTENCE_BREAK.split(question):
        words = Sentence.of(sentence).words
        for i, word in enumerate(words):
            low = bare(word).lower()
            if low in QUESTION_WORDS or low in FIRST_PERSON:
                continue
            # A sentence's first word is capitalised anyway ("And now?", "Answer:"), unless
            # it owns something ("Priya's dog ...").
            if capitalised(word, i) and (i > 0 or word.lower().endswith(("'s", "’s"))):
                found.add(low)
    return found


def relations_asked(question: str) -> set[str]:
    """Relations the question asks about: `X's brother`, `my dog`, `his wife`."""
    words = Sentence.of(question).words
    found: set[str] = set()
    for owner, word in itertools.pairwise(words):
        low = owner.lower()
        possessive = low.endswith(("'s", "’s", "s'")) or low in {"my", "his", "her", "their"}
        if possessive and bare(word).lower() in RELATIONS:
            found.add(bare(word).lower())
    return found


def about_something_else(question: str, fact: str) -> bool:
    """True when `fact` is about another subject than `question` asks about."""
    fact_words = {bare(w).lower() for w in Sentence.of(fact).words}
    names = names_asked(question)
    if names - fact_words:
        return True
    return bool(relations_asked(question) - fact_words)


def _details(text: str) -> set[str]:
    """A text's detail words: names, numbers and content words of 4+ letters."""
    found: set[str] = set()
    for i, word in enumerate(Sentence.of(text).words):
        low = bare(word).lower().strip(".,;:!?")
        if low in STOPWORDS or low in FIRST_PERSON:
            continue
        if is_value(word, i) or len(low) >= 4:
            found.add(low)
    return found


def cited(answer: str, question: str, memories: Sequence[MemoryHit]) -> list[MemoryHit]:
    """The memories an answer relies on: those whose own details (a word the memory has and
    the question does not, such as the value asked for) appear in the answer."""
    said = _details(answer)
    asked = _details(question) | {"user", "said"}
    return [m for m in memories if (_details(m.text) - asked) & said]


ABSTAIN_TEXT = "I don't know: my notes hold nothing about {what}."
_UNRELATED = frozenset(
    {LeftOut.different_subject, LeftOut.below_similarity_floor, LeftOut.superseded}
)
"""Reasons that say a memory does not bear on the question (not merely that it did not
fit)."""


def abstention(
    question: str, memories: Sequence[MemoryHit], left_out: dict[str, LeftOut]
) -> str | None:
    """The answer memq gives itself instead of the model's when memory cannot answer: the
    job asked a question, its search found memories, none was used, and at least one was
    left out for being about someone or something else (the others below the similarity
    floor or superseded). A small model shown nothing but the question
    confabulates ("Kofi's car is a mystery", "Kofi drives a red Volvo"); saying so is the
    honest answer. None when the model should answer."""
    asking = question.rstrip().endswith("?") or bool(
        Sentence.of(question).words
        and bare(Sentence.of(question).words[0]).lower() in QUESTION_WORDS
    )
    if not asking or not memories:
        return None
    reasons = [left_out.get(m.id) for m in memories]
    if LeftOut.different_subject not in reasons or any(r not in _UNRELATED for r in reasons):
        return None
    names = [w for w in _names_as_written(question)]
    relations = sorted(relations_asked(question))
    what = " ".join(names) if names else "that"
    if relations and names:
        what = f"{' '.join(names)}'s {relations[0]}"
    return ABSTAIN_TEXT.format(what=what)


def _names_as_written(question: str) -> list[str]:
    asked = names_asked(question)
    seen: list[str] = []
    for word in Sentence.of(question).words:
        plain = bare(word)
        if plain.lower() in asked and plain not in seen:
            seen.append(plain)
    return seen
