"""Labelled evaluation sets for memq's memory, each in two splits: `dev` (tuned on) and
`holdout` (never tuned on; no name, place or code is shared with `dev`).

- `updates`: facts that replace an older fact (`UpdatePair`: ask `question`, expect
  `answer`, never `stale`) and look-alike pairs where both facts stay true
  (`CompatiblePair`).
- `abstention`: stored facts and questions about them; the unanswerable ones are about
  something no fact states, next to a fact whose value (`trap`) a careless model would give.
  The kind of an unanswerable question is the start of its `why` (see `UNANSWERABLE_WHY`).
- `sessions`: facts a user states in a long chat, the later question about each, and
  ordinary chat messages by topic to put between them.
- `retrieval`: facts whose query hinges on an exact code, a rare name, a paraphrase or a
  figure, and decoys that differ from a fact only in its code or name.

Everything is invented, so a model cannot know any answer without its memory. The JSON
files sit beside this module and are read with importlib.resources.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from importlib.resources import files
from types import MappingProxyType
from typing import Any, Literal, TypeAlias, TypeVar, get_args

Split: TypeAlias = Literal["dev", "holdout"]
UpdateKind: TypeAlias = Literal[
    "move",
    "job",
    "employer",
    "rename",
    "password",
    "schedule",
    "phone",
    "email",
    "car",
    "pet",
    "relationship",
    "preference",
    "status",
    "owner",
    "location_of_thing",
    "count",
    "other",
]
CompatibleKind: TypeAlias = Literal[
    "other_subject",
    "related_subject",
    "other_attribute",
    "other_event",
    "additive",
    "multi_valued",
    "more_detail",
    "negation_other",
    "same_value_paraphrase",
]
UnanswerableKind: TypeAlias = Literal[
    "other_attribute", "other_subject", "other_place", "other_event", "relative"
]
RetrievalKind: TypeAlias = Literal["code", "rare_name", "paraphrase", "number"]

SPLITS: tuple[Split, ...] = get_args(Split)
UPDATE_KINDS: tuple[UpdateKind, ...] = get_args(UpdateKind)
COMPATIBLE_KINDS: tuple[CompatibleKind, ...] = get_args(CompatibleKind)
UNANSWERABLE_KINDS: tuple[UnanswerableKind, ...] = get_args(UnanswerableKind)
RETRIEVAL_KINDS: tuple[RetrievalKind, ...] = get_args(RetrievalKind)

# How the `why` of an unanswerable question starts, by kind.
UNANSWERABLE_WHY: Mapping[UnanswerableKind, str] = MappingProxyType(
    {
        "other_attribute": "same subject, other attribute",
        "other_subject": "other subject, same attribute",
        "other_place": "other place or organisation",
        "other_event": "other event",
        "relative": "relative of the subject",
    }
)

# ----------------------------------------------------------------------------- updates


@dataclass(frozen=True)
class UpdatePair:
    """`new` replaces `old`: asked `question`, the answer contains `answer`, not `stale`."""

    id: str
    kind: UpdateKind
    old: str
    new: str
    subject: str
    attribute: str
    old_value: str
    new_value: str
    question: str
    answer: str
    stale: str


@dataclass(frozen=True)
class CompatiblePair:
    """Two facts that look alike but are both true: `second` must not supersede `first`."""

    id: str
    kind: CompatibleKind
    first: str
    second: str
    why: str


@dataclass(frozen=True)
class UpdateSet:
    updates: tuple[UpdatePair, ...]
    compatible: tuple[CompatiblePair, ...]


# -------------------------------------------------------------------------- abstention


@dataclass(frozen=True)
class AbstentionFact:
    id: str
    text: str
    subject: str
    attribute: str
    value: str


@dataclass(frozen=True)
class AbstentionQuestion:
    """Answerable: `fact_id` and `answer` are set. Unanswerable: `near_fact_id` is the
    look-alike fact and `trap` its value, which the answer must not state."""

    id: str
    question: str
    answerable: bool
    fact_id: str | None
    near_fact_id: str | None
    answer: str | None
    trap: str | None
    why: str

    @property
    def kind(self) -> UnanswerableKind | None:
        """Why an unanswerable question has no answer; None for answerable ones."""
        if self.answerable:
            return None
        for kind, prefix in UNANSWERABLE_WHY.items():
            if self.why.startswith(prefix):
                return kind
        raise ValueError(f"{self.id}: unknown kind of unanswerable question: {self.why!r}")


@dataclass(frozen=True)
class AbstentionSet:
    facts: tuple[AbstentionFact, ...]
    questions: tuple[AbstentionQuestion, ...]

    def fact(self, fact_id: str) -> AbstentionFact:
        for fact in self.facts:
            if fact.id == fact_id:
                return fact
        raise KeyError(fact_id)


# ---------------------------------------------------------------------------- sessions


@dataclass(frozen=True)
class SessionFact:
    """What the user `said` early in a chat, what they ask later, the word the reply needs."""

    id: str
    said: str
    asked: str
    answer: str


@dataclass(frozen=True)
class SessionSet:
    facts: tuple[SessionFact, ...]
    fillers: Mapping[str, tuple[str, ...]]  # topic -> ordinary user messages


# --------------------------------------------------------------------------- retrieval


@dataclass(frozen=True)
class RetrievalItem:
    id: str
    fact: str
    query: str
    answer: str
    kind: RetrievalKind


@dataclass(frozen=True)
class RetrievalSet:
    items: tuple[RetrievalItem, ...]
    decoys: tuple[str, ...]  # near-copies of code/rare_name facts with another code or name


# ----------------------------------------------------------------------------- loading

_K = TypeVar("_K", bound=str)


def _load(name: str, split: str) -> dict[str, Any]:
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}: expected one of {SPLITS}")
    text = files("memq.evaluation.sets").joinpath(f"{name}.{split}.json").read_text("utf-8")
    data = json.loads(text)
    if not isinstance(data, dict):
        raise ValueError(f"{name}.{split}.json: expected a JSON object")
    return data


def _obj(value: object, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ValueError(f"{where}: expected an object")
    return value


def _list(data: Mapping[str, Any], key: str) -> list[Any]:
    value = data.get(key)
    if not isinstance(value, list):
        raise ValueError(f"{key!r}: expected a list")
    return value


def _str(data: Mapping[str, Any], key: str) -> str:
    value = data.get(key)
    if not isinstance(value, str):
        raise ValueError(f"{data.get('id', '?')}: {key!r} must be a string")
    return value


def _opt_str(data: Mapping[str, Any], key: str) -> str | None:
    value = data.get(key)
    if value is not None and not isinstance(value, str):
        raise ValueError(f"{data.get('id', '?')}: {key!r} must be a string or null")
    return value


def _bool(data: Mapping[str, Any], key: str) -> bool:
    value = data.get(key)
    if not isinstance(value, bool):
        raise ValueError(f"{data.get('id', '?')}: {key!r} must be a boolean")
    return value


def _kind(data: Mapping[str, Any], allowed: tuple[_K, ...]) -> _K:
    value = _str(data, "kind")
    for kind in allowed:
        if kind == value:
            return kind
    raise ValueError(f"{data.get('id', '?')}: unknown kind {value!r}")


def updates(split: Split) -> UpdateSet:
    """Superseding facts and look-alike compatible pairs."""
    return _updates(split)


@cache
def _updates(split: str) -> UpdateSet:
    data = _load("updates", split)
    pairs = []
    for raw in _list(data, "updates"):
        item = _obj(raw, "updates")
        pairs.append(
            UpdatePair(
                id=_str(item, "id"),
                kind=_kind(item, UPDATE_KINDS),
                old=_str(item, "old"),
                new=_str(item, "new"),
                subject=_str(item, "subject"),
                attribute=_str(item, "attribute"),
                old_value=_str(item, "old_value"),
                new_value=_str(item, "new_value"),
                question=_str(item, "question"),
                answer=_str(item, "answer"),
                stale=_str(item, "stale"),
            )
        )
    compatible = []
    for raw in _list(data, "compatible"):
        item = _obj(raw, "compatible")
        compatible.append(
            CompatiblePair(
                id=_str(item, "id"),
                kind=_kind(item, COMPATIBLE_KINDS),
                first=_str(item, "first"),
                second=_str(item, "second"),
                why=_str(item, "why"),
            )
        )
    return UpdateSet(updates=tuple(pairs), compatible=tuple(compatible))


def abstention(split: Split) -> AbstentionSet:
    """Stored facts, and questions that they answer or must not be used to answer."""
    return _abstention(split)


@cache
def _abstention(split: str) -> AbstentionSet:
    data = _load("abstention", split)
    facts = []
    for raw in _list(data, "facts"):
        item = _obj(raw, "facts")
        facts.append(
            AbstentionFact(
                id=_str(item, "id"),
                text=_str(item, "text"),
                subject=_str(item, "subject"),
                attribute=_str(item, "attribute"),
                value=_str(item, "value"),
            )
        )
    questions = []
    for raw in _list(data, "questions"):
        item = _obj(raw, "questions")
        questions.append(
            AbstentionQuestion(
                id=_str(item, "id"),
                question=_str(item, "question"),
                answerable=_bool(item, "answerable"),
                fact_id=_opt_str(item, "fact_id"),
                near_fact_id=_opt_str(item, "near_fact_id"),
                answer=_opt_str(item, "answer"),
                trap=_opt_str(item, "trap"),
                why=_str(item, "why"),
            )
        )
    return AbstentionSet(facts=tuple(facts), questions=tuple(questions))


def sessions(split: Split) -> SessionSet:
    """Facts a user states in a long chat, and filler messages by topic."""
    return _sessions(split)


@cache
def _sessions(split: str) -> SessionSet:
    data = _load("sessions", split)
    facts = []
    for raw in _list(data, "facts"):
        item = _obj(raw, "facts")
        facts.append(
            SessionFact(
                id=_str(item, "id"),
                said=_str(item, "said"),
                asked=_str(item, "asked"),
                answer=_str(item, "answer"),
            )
        )
    fillers: dict[str, tuple[str, ...]] = {}
    for topic, messages in _obj(data.get("fillers"), "fillers").items():
        if not isinstance(messages, list) or not all(isinstance(m, str) for m in messages):
            raise ValueError(f"fillers[{topic!r}]: expected a list of strings")
        fillers[str(topic)] = tuple(messages)
    return SessionSet(facts=tuple(facts), fillers=MappingProxyType(fillers))


def retrieval(split: Split) -> RetrievalSet:
    """Facts whose retrieval hinges on exact keywords, and near-identical decoys."""
    return _retrieval(split)


@cache
def _retrieval(split: str) -> RetrievalSet:
    data = _load("retrieval", split)
    items = []
    for raw in _list(data, "items"):
        item = _obj(raw, "items")
        items.append(
            RetrievalItem(
                id=_str(item, "id"),
                fact=_str(item, "fact"),
                query=_str(item, "query"),
                answer=_str(item, "answer"),
                kind=_kind(item, RETRIEVAL_KINDS),
            )
        )
    decoys = _list(data, "decoys")
    if not all(isinstance(d, str) for d in decoys):
        raise ValueError("decoys: expected a list of strings")
    return RetrievalSet(items=tuple(items), decoys=tuple(decoys))
