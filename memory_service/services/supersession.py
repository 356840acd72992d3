"""Does a new fact replace an older one? The rule behind automatic supersession.

A new memory supersedes a current one of its namespace when both state the same attribute
of the same subject and the new one gives another value: a move, a new employer, a renamed
pet, a rotated password, a meeting on another day. Everything else leaves both current:
another subject ("Alice's sister likes tea" next to "Alice likes tea"), another attribute
("Alice works in Lyon" next to "Alice lives in Paris"), another event on the same day, an
addition ("Bob also speaks German"), more detail on the same value, or the same value said
again.

The decision is made offline, without a model call, from the two sentences and their
cosine similarity (the write path's nearest current neighbours are the candidates):

1. the subjects must match: they share a name (or both are the user, "I"/"my"), no
   identifier differs (`Flight ZR 311` is not `Flight ZR 313`), and no relation is added
   ("Alice's sister", "my dog");
2. an addition cue ("also", "too", "another", "as well") keeps both;
3. a change cue in the new fact ("now", "moved", "no longer", "was promoted", "sold", ...)
   with related sentences (cosine at least `CUE_SIMILARITY`) decides for an update;
4. without a cue, the two must share their frame and differ only in values (names,
   numbers, days, colours) at cosine at least `FRAME_SIMILARITY`, on an attribute that
   holds one value at a time (not "speaks", "has visited", "plays", ...).

Measured on memq/evaluation/sets/updates.*.json (bench/results/supersession.md): precision
and recall of supersession on the dev split (which chose the rules and thresholds) and on
the holdout split (never tuned on).
"""

from __future__ import annotations

from dataclasses import dataclass

from memq.entities import (
    FIRST_PERSON,
    STOPWORDS,
    Sentence,
    bare,
    is_value,
    stem,
    words,
)

CANDIDATES = 5
"""Nearest current facts of the namespace judged against each new fact."""
CUE_SIMILARITY = 0.35
"""Least cosine between two same-subject facts for a change cue to decide."""
FRAME_SIMILARITY = 0.75
"""Least cosine between two same-subject facts that differ only in values, without a cue."""

ADDITION_CUES = words("""also too another additionally addition second""")
# Words that say a value changed (matched on the stem of each word of the new fact).
CHANGE_STEMS = words(
    """mov chang switch relocat renam rotat replac updat promot rais expand transferr
    transfer reopen approv deliver cancel trad swapp adopt settl retir marri divorc
    engag separat graduat hir fir resign reassign reschedul postpon delay upgrad
    downgrad increas decreas extend shorten convert"""
)
"""Stems of verbs that report a change ("moved", "was promoted", "renamed", ...)."""
CHANGE_WORDS = words(
    """new started sold bought grown cut closed closes took gave died quit left joined
    became become swapped pushed dropped rose fell finally replaced"""
)
"""Exact words that report a change (their other forms often do not: "starts", "grows")."""
TEMPORAL_CUES = (
    "now",
    "no longer",
    "any more",
    "anymore",
    "as of",
    "these days",
    "nowadays",
    "from now on",
    "instead",
    "currently",
    "used to",
    "since",
)
"""Phrases saying the state changed at some point: enough without a changed name or
number ("parks his bike by the entrance these days")."""
AUXILIARIES = words("""got get gets has have had been become became was were""")
CHANGE_PHRASES = ("took over", "taken over", "went up", "gone up", "brought forward")
# Attributes a subject can have several values of at once: a second value adds, it does
# not replace (only an explicit change cue does).
MULTI_VALUED = words(
    """speak visit like love enjoy play collect know read own member volunteer teach study
    support follow attend offer sell serve stock open has have allergic fan watch listen
    subscrib"""
)
"""(A changed number is never a second value: a count, an amount, a time holds one.)"""


@dataclass(frozen=True)
class Verdict:
    """Whether `new` supersedes `old`, and why (recorded on the superseded memory)."""

    supersedes: bool
    reason: str


def _cue(fact: Sentence) -> tuple[str, bool] | None:
    """The change cue of a fact, and whether it is a temporal one."""
    for phrase in TEMPORAL_CUES:
        if f" {phrase} " in fact.plain:
            return phrase, True
    for phrase in CHANGE_PHRASES:
        if f" {phrase} " in fact.plain:
            return phrase, False
    for word in fact.words:
        low = bare(word.lower())
        if low in CHANGE_WORDS or stem(word) in CHANGE_STEMS:
            return low, False
    return None


def _content(fact: Sentence, skip: set[str]) -> dict[str, str]:
    """Stemmed content word → the word as written when it is a value, else ""."""
    out: dict[str, str] = {}
    for i, word in enumerate(fact.words):
        low = bare(word.lower())
        if low in STOPWORDS or low in skip or low in FIRST_PERSON:
            continue
        out.setdefault(stem(word), bare(word) if is_value(word, i) else "")
    return out


def judge(old: str, new: str, similarity: float) -> Verdict:
    """Whether the fact `new` supersedes the current fact `old` (cosine `similarity`)."""
    a, b = Sentence.of(old), Sentence.of(new)
    entities_a, entities_b = a.entities(), b.entities()
    shared = entities_a & entities_b
    if not shared:
        heads_a = [w for w in a.words if bare(w.lower()) not in STOPWORDS]
        heads_b = [w for w in b.words if bare(w.lower()) not in STOPWORDS]
        heads_match = bool(heads_a and heads_b) and stem(heads_a[0]) == stem(heads_b[0])
        if entities_a or entities_b or not heads_match:
            return Verdict(False, "different subject")
    found = _cue(b)
    ids_a, ids_b = a.identifiers(), b.identifiers()
    if found is None and any(ids_a[n] != ids_b[n] for n in ids_a.keys() & ids_b.keys()):
        return Verdict(False, "different subject (another identifier)")
    words_a = {bare(w.lower()) for w in a.words}
    words_b = {bare(w.lower()) for w in b.words}
    rel_a, rel_b = a.relations(), b.relations()
    still_about_old = bool(rel_a) and rel_a <= words_b
    if (rel_b - words_a and not still_about_old) or rel_a - words_b:
        return Verdict(
            False, f"different subject ({sorted((rel_b - words_a) | (rel_a - words_b))[0]})"
        )
    if {bare(w.lower()) for w in b.words} & ADDITION_CUES or " as well" in b.text:
        return Verdict(False, "adds to the earlier fact")
    skip = shared | rel_a | rel_b
    content_a, content_b = _content(a, skip), _content(b, skip)
    dropped = {k: v for k, v in content_a.items() if k not in content_b}
    added = {k: v for k, v in content_b.items() if k not in content_a}
    old_values = [v for v in dropped.values() if v]
    new_values = [v for v in added.values() if v]
    who = ", ".join(sorted(shared)) or "the same subject"
    subject_a, subject_b = a.before_verb(), b.before_verb()
    if any(v.lower() in subject_a for v in old_values) and any(
        v.lower() in subject_b for v in new_values
    ):
        return Verdict(False, "different subject (named in the subject phrase)")
    values_a = {bare(w).lower() for i, w in enumerate(a.words) if is_value(w, i)} - shared
    if values_a and values_a <= words_b and not new_values:
        return Verdict(False, "same value, another attribute")
    numbers_only = bool(old_values) and all(
        any(ch.isdigit() for ch in v) for v in [*old_values, *new_values]
    )
    if found is not None and similarity >= CUE_SIMILARITY and (dropped or new_values):
        cue, temporal = found
        # "Born in Cusco" -> "got married in Cusco": the cue is itself the new statement,
        # not a new value of the old one.
        beyond_cue = set(added) - {stem(cue), cue} - AUXILIARIES
        if temporal or old_values or new_values or beyond_cue:
            was = ", ".join(old_values) or ", ".join(sorted(dropped)) or "the earlier value"
            now = ", ".join(new_values) or ", ".join(sorted(added))
            return Verdict(True, f"same subject ({who}), changed ({cue!r}): {was} -> {now}")
    if not dropped:
        return Verdict(False, "restates or adds detail")
    if not numbers_only and {stem(w) for w in a.words} & MULTI_VALUED:
        return Verdict(False, "another value of an attribute that can have several")
    only_values = all(dropped.values()) and all(added.values())
    if old_values and new_values and only_values and similarity >= FRAME_SIMILARITY:
        return Verdict(
            True,
            f"same subject ({who}) and statement, new value: "
            f"{', '.join(old_values)} -> {', '.join(new_values)}",
        )
    return Verdict(False, "no change of value stated")


def subject_entities(text: str) -> set[str]:
    """The name words of a fact and "user" for a first-person one (lower-cased)."""
    return Sentence.of(text).entities()
