"""Fact extraction for chat sessions: the heuristic memq uses to keep what a user says
about themselves in their long-term namespace (`user:{id}`), so a new session remembers it.

A sentence of the user's message is a fact when it is a first-person statement about the
user ("I live in …", "My sister is …", "I'm allergic to …"), not a question, a request or
an opinion about the assistant. The sentence is kept verbatim, prefixed "The user said:"
(rewriting it in the third person would need a model call and can get it wrong; a verbatim
sentence retrieves well with MiniLM), and stored with the memory service's dedup, so saying
it twice (or a redelivered job) keeps one memory. Measured on a labelled set in
tests/worker/test_facts.py (precision and recall printed and asserted there).
"""

from __future__ import annotations

import re

_SENTENCES = re.compile(r"(?<=[.!?])\s+|\n+")
_STATEMENT = re.compile(
    r"^(?:i\s+(?:am|'m|live|work|was|have|had|own|grew|speak|like|love|hate|prefer|keep|"
    r"play|study|studied|moved|drive|collect|ride|run|go|went|need|can't|cannot|don't|do not)"
    r"|i'm|i've|i'd|my\s+\w+|we\s+(?:live|have|own|moved))\b",
    re.IGNORECASE,
)
_NOT_A_FACT = re.compile(
    r"\?|^(?:i\s+(?:think|guess|wonder|want you|need you|would like you)|my\s+question)\b|"
    r"\b(?:you|your)\b",
    re.IGNORECASE,
)
MIN_WORDS, MAX_CHARS = 3, 500


def extract_facts(message: str) -> list[str]:
    """The sentences of `message` that state something about the user, verbatim."""
    found = []
    for raw in _SENTENCES.split(message):
        sentence = " ".join(raw.split()).strip(" -*")
        if len(sentence.split()) < MIN_WORDS or len(sentence) > MAX_CHARS:
            continue
        if _STATEMENT.match(sentence) and not _NOT_A_FACT.search(sentence):
            found.append(sentence if sentence.endswith((".", "!")) else sentence + ".")
    return found


def as_memory_text(sentence: str) -> str:
    return f"The user said: {sentence}"
