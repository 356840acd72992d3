"""Names, relations and values in short English statements: the text heuristics shared by
the memory service (does a new fact supersede an old one?) and the worker (is a retrieved
fact about what the question asks?). Pure standard library, no model."""

from __future__ import annotations

import re
from dataclasses import dataclass


def words(text: str) -> frozenset[str]:
    return frozenset(text.split())


WORD = re.compile(r"[A-Za-z0-9\u00C0-\u024F][\w@.\-/:&\u00C0-\u024F]*(?:['’][A-Za-z]+)?")

FIRST_PERSON = words("""i my me mine i'm i've i'd i'll myself""")
# People and animals a fact can be about instead of its named subject ("Alice's sister").
RELATIONS = words(
    """sister brother mother father mom mum dad wife husband son daughter child children
    kid kids boss manager colleague colleagues friend friends partner neighbour neighbor
    cousin uncle aunt nephew niece grandmother grandfather grandma grandpa assistant
    roommate flatmate dog cat pet parrot horse fiancee fiance girlfriend boyfriend
    parents family landlord sibling siblings twin stepson stepdaughter puppy kitten"""
)
SUBJECT_WORDS = 4
"""A relation ("sister", "dog") within the first this many words makes another subject."""
COPULAS = words("""is are was were has have had will""")
STOPWORDS = words(
    """a an the of in on at to for from by with and or but is are was were be been being
    has have had do does did it its this that these those there their they them he she
    his her him we our us you your as into onto over under about than then so such very
    just who whom which what when where why how will would can could should shall may
    might must not no yes also too now new"""
)
COMMON_CAPITALISED = words(
    """the a an my our his her their this that these those as since after before last next
    in on at from every each your its there it he she they we i you for to all until
    during when finally"""
)
DAYS_MONTHS = words(
    """monday tuesday wednesday thursday friday saturday sunday mondays tuesdays wednesdays
    thursdays fridays saturdays sundays january february march april may june july
    august september october november december weekend weekends morning mornings
    afternoon afternoons evening evenings noon midnight"""
)
COLOURS = words(
    """red blue green yellow black white grey gray silver gold orange purple pink brown
    beige teal maroon navy violet"""
)


def bare(word: str) -> str:
    for suffix in ("'s", "’s", "'", "’"):
        if word.endswith(suffix) and len(word) > len(suffix):
            return word[: -len(suffix)]
    return word.rstrip(".,:;!?")


def stem(word: str) -> str:
    word = bare(word.lower())
    for suffix in ("ies", "es", "s", "ed", "ing", "d"):
        if len(word) > len(suffix) + 2 and word.endswith(suffix):
            return word[: -len(suffix)]
    return word


def capitalised(word: str, position: int) -> bool:
    plain = bare(word)
    return plain[:1].isupper() and (position > 0 or plain.lower() not in COMMON_CAPITALISED)


def is_value(word: str, position: int) -> bool:
    """A word that states a value rather than an attribute: a name, a number or code, a
    day, a month, a colour, an address."""
    plain = bare(word)
    low = plain.lower()
    if any(ch.isdigit() for ch in plain) or low in DAYS_MONTHS or low in COLOURS:
        return True
    if "@" in plain:
        return True
    return capitalised(word, position)


@dataclass(frozen=True)
class Sentence:
    words: list[str]
    text: str
    plain: str

    @classmethod
    def of(cls, text: str) -> Sentence:
        lowered = " ".join(text.lower().split())
        plain = " ".join(re.sub(r"[^\w'’@\-]+", " ", lowered).split())
        return cls(WORD.findall(text), f" {lowered} ", f" {plain} ")

    @property
    def stems(self) -> set[str]:
        return {stem(w) for w in self.words}

    def first_person(self) -> bool:
        return any(bare(w.lower()) in FIRST_PERSON or w.lower() in FIRST_PERSON for w in self.words)

    def entities(self) -> set[str]:
        """Name words and the user ("I", "my")."""
        found: set[str] = {"user"} if self.first_person() else set()
        for i, word in enumerate(self.words):
            if capitalised(word, i) and bare(word).lower() not in DAYS_MONTHS:
                found.add(bare(word).lower())
        return found

    def identifiers(self) -> dict[str, str]:
        """Name word → the number or code written right after it (`Flight ZR 311`)."""
        found: dict[str, str] = {}
        for i in range(1, len(self.words)):
            word, before = bare(self.words[i]), self.words[i - 1]
            if any(ch.isdigit() for ch in word) and "@" not in word and capitalised(before, i - 1):
                found[bare(before).lower()] = word.lower()
        return found

    def before_verb(self) -> set[str]:
        """Words before the first copula: the subject phrase ("Amberfall's Dublin office")."""
        out: set[str] = set()
        for word in self.words:
            if word.lower() in COPULAS:
                return out
            out.add(bare(word).lower())
        return set()

    def relations(self) -> set[str]:
        """Relations attached to a subject: `X's sister`, `my dog`, `his family`."""
        found: set[str] = set()
        # Only in subject position: "gave the budgies to my niece" names a new value.
        for i, word in enumerate(self.words[: min(SUBJECT_WORDS, len(self.words)) - 1]):
            owner = word.lower()
            nxt = bare(self.words[i + 1].lower())
            possessive = owner.endswith(("'s", "’s")) or owner in {
                "my",
                "his",
                "her",
                "their",
                "our",
            }
            if possessive and nxt in RELATIONS:
                found.add(nxt)
        return found
