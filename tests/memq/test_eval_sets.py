"""The labelled memory evaluation sets (memq/evaluation/sets): every split loads, and the
invariants that make an item unambiguous hold (counts, answers inside the facts and not in
the questions, no name shared between dev and holdout, decoys next to keyword items)."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Iterator
from difflib import SequenceMatcher

import pytest

from memq.evaluation import sets
from memq.evaluation.sets import (
    COMPATIBLE_KINDS,
    RETRIEVAL_KINDS,
    SPLITS,
    UNANSWERABLE_KINDS,
    UPDATE_KINDS,
    AbstentionSet,
    RetrievalItem,
    RetrievalSet,
    SessionSet,
    Split,
    UpdateSet,
)

MINIMUM = {
    "updates": {"dev": 110, "holdout": 60},
    "compatible": {"dev": 110, "holdout": 60},
    "abstention_facts": {"dev": 60, "holdout": 40},
    "answerable": {"dev": 60, "holdout": 50},
    "unanswerable": {"dev": 60, "holdout": 50},
    "session_facts": {"dev": 24, "holdout": 20},
    "filler_topics": {"dev": 4, "holdout": 3},
    "retrieval": {"dev": 60, "holdout": 40},
}

# Capitalised words that are not names: sentence openings, titles, weekdays, months and
# the generic words of place names ("Street", "Road").
_COMMON = """
    A An As At By Can Every For From How I I'm I've In Is Last My On Since The To Under
    What What's Where Which When Who Whom Whose With Why After Call Complaints Explain
    Guests Leadership Lost Press Rent Residents Support Applications Bin Suggest Should
    Any Are Does Do Did Will Would It Its Out Over Plot Refurbishment Invoice Order Ticket
    Flight Part Room Batch Course Booking Container Policy Error Serial Shipment Locker
    Voucher Warehouse Access Bus Route Server Licence Membership SKU Asset Project
    Dr Mr Mrs Ms Professor St
    Monday Tuesday Wednesday Thursday Friday Saturday Sunday
    Mondays Tuesdays Wednesdays Thursdays Fridays Saturdays Sundays
    January February March April May June July August September October November December
    Street Road Lane Row Square Hill Court Park House Hall Point Bay Island Islands Station
    Reserve Trust Group Labs Foods Bank Books Energy Partners Health Travel Studios
    Analytics Dental Freight Mill Little API PIN
"""
COMMON_WORDS = frozenset(_COMMON.split())


def _words(text: str) -> list[str]:
    return re.findall(r"[^\W_][\w'’-]*", text)


def _names(text: str) -> set[str]:
    """Capitalised words of a text that are not common words, possessives stripped."""
    out = set()
    for word in _words(text):
        word = re.sub(r"['’]s?$", "", word)
        if word[:1].isupper() and word not in COMMON_WORDS:
            out.add(word)
    return out


def _lower_words(text: str) -> set[str]:
    return {w.lower() for w in _words(text)}


def _ids_unique(ids: Iterable[str]) -> None:
    counts = Counter(ids)
    assert not [i for i, n in counts.items() if n > 1], counts.most_common(3)


def _texts(split: Split) -> Iterator[str]:
    """Every text of a split, all sets together."""
    upd = sets.updates(split)
    for u in upd.updates:
        yield from (u.old, u.new, u.subject, u.question)
    for c in upd.compatible:
        yield from (c.first, c.second)
    abst = sets.abstention(split)
    for f in abst.facts:
        yield from (f.text, f.subject)
    for q in abst.questions:
        yield q.question
    sess = sets.sessions(split)
    for s in sess.facts:
        yield from (s.said, s.asked)
    for messages in sess.fillers.values():
        yield from messages
    ret = sets.retrieval(split)
    for r in ret.items:
        yield from (r.fact, r.query)
    yield from ret.decoys


def _share(counts: Counter[str], total: int) -> dict[str, float]:
    return {k: n / total for k, n in counts.items()}


# ------------------------------------------------------------------------------ loading


@pytest.mark.parametrize("split", SPLITS)
def test_every_split_loads_with_its_typed_loader(split: Split) -> None:
    assert isinstance(sets.updates(split), UpdateSet)
    assert isinstance(sets.abstention(split), AbstentionSet)
    assert isinstance(sets.sessions(split), SessionSet)
    assert isinstance(sets.retrieval(split), RetrievalSet)


def test_an_unknown_split_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown split"):
        sets.updates("test")  # type: ignore[arg-type]


def test_no_name_is_shared_between_dev_and_holdout() -> None:
    dev = sets.updates("dev").updates
    holdout = sets.updates("holdout").updates
    dev_subjects = {u.subject for u in dev} - {"the user"}
    holdout_subjects = {u.subject for u in holdout} - {"the user"}
    assert not dev_subjects & holdout_subjects
    dev_facts = {f.subject for f in sets.abstention("dev").facts}
    assert not dev_facts & {f.subject for f in sets.abstention("holdout").facts}
    # every capitalised word (people, places, companies, products) of every set
    dev_names = set().union(*(_names(t) for t in _texts("dev")))
    holdout_names = set().union(*(_names(t) for t in _texts("holdout")))
    assert not dev_names & holdout_names, sorted(dev_names & holdout_names)


def test_no_answer_is_shared_between_dev_and_holdout() -> None:
    def answers(split: Split) -> set[str]:
        out = {u.answer.lower() for u in sets.updates(split).updates}
        out |= {q.answer.lower() for q in sets.abstention(split).questions if q.answer}
        out |= {s.answer.lower() for s in sets.sessions(split).facts}
        out |= {r.answer.lower() for r in sets.retrieval(split).items}
        # small numbers, weekdays, months and plain states may recur by chance
        common = {w.lower() for w in COMMON_WORDS} | {"open", "closed"}
        return {a for a in out if not a.isdigit() and a not in common}

    assert not answers("dev") & answers("holdout"), sorted(answers("dev") & answers("holdout"))


# ------------------------------------------------------------------------------ updates


@pytest.mark.parametrize("split", SPLITS)
def test_updates_counts_ids_and_kinds(split: Split) -> None:
    data = sets.updates(split)
    assert len(data.updates) >= MINIMUM["updates"][split]
    assert len(data.compatible) >= MINIMUM["compatible"][split]
    _ids_unique(u.id for u in data.updates)
    _ids_unique(c.id for c in data.compatible)
    assert {u.kind for u in data.updates} == set(UPDATE_KINDS)
    assert {c.kind for c in data.compatible} == set(COMPATIBLE_KINDS)


@pytest.mark.parametrize("split", SPLITS)
def test_an_update_answer_is_in_the_new_fact_and_the_stale_value_in_the_old(
    split: Split,
) -> None:
    for u in sets.updates(split).updates:
        answer, stale, question = u.answer.lower(), u.stale.lower(), u.question.lower()
        assert u.answer and u.stale, u.id
        assert len(u.answer) <= 40 and len(u.stale) <= 40, u.id
        assert u.answer in u.new, u.id
        assert u.stale in u.old, u.id
        assert answer not in u.old.lower(), f"{u.id}: the old fact already contains the answer"
        assert answer not in question and stale not in question, u.id
        assert stale not in answer and answer not in stale, u.id
        assert u.old != u.new and u.old_value != u.new_value, u.id


@pytest.mark.parametrize("split", SPLITS)
def test_updates_vary_their_phrasing_and_speak_in_the_first_person_sometimes(
    split: Split,
) -> None:
    items = sets.updates(split).updates
    first_person = [u for u in items if u.subject == "the user"]
    assert 0.12 <= len(first_person) / len(items) <= 0.20
    for u in first_person:
        assert re.search(r"\b(I|my|My|I'm|I've)\b", u.old), u.id
        assert re.search(r"\b(I|my|My|I'm|I've)\b", u.new), u.id
        assert re.search(r"\b(I|my|me)\b", u.question), u.id
    repeats_old_value = [u for u in items if u.stale.lower() in u.new.lower()]
    assert 0.08 <= len(repeats_old_value) / len(items) <= 0.4  # some, not most
    # many are about organisations, places, projects and things, not people
    things = [u for u in items if u.subject[:1].islower() and u.subject != "the user"]
    assert len(things) / len(items) >= 0.2


@pytest.mark.parametrize("split", SPLITS)
def test_update_subjects_are_unique_so_that_items_do_not_interfere(split: Split) -> None:
    items = sets.updates(split).updates
    _ids_unique(u.subject for u in items if u.subject != "the user")
    attributes = [u.attribute for u in items if u.subject == "the user"]
    _ids_unique(attributes)


@pytest.mark.parametrize("split", SPLITS)
def test_compatible_pairs_are_distinct_and_a_fifth_are_hard(split: Split) -> None:
    pairs = sets.updates(split).compatible
    hard = 0
    for c in pairs:
        assert c.first != c.second and c.why, c.id
        a, b = _lower_words(c.first), _lower_words(c.second)
        if len(a & b) / max(len(a), len(b)) >= 0.6:
            hard += 1
    assert hard / len(pairs) >= 0.2


def test_compatible_kinds_are_distributed_alike_in_both_splits() -> None:
    dev = sets.updates("dev").compatible
    holdout = sets.updates("holdout").compatible
    dev_share = _share(Counter(c.kind for c in dev), len(dev))
    holdout_share = _share(Counter(c.kind for c in holdout), len(holdout))
    for kind in COMPATIBLE_KINDS:
        assert dev_share[kind] >= 0.08 and holdout_share[kind] >= 0.08, kind
        assert abs(dev_share[kind] - holdout_share[kind]) <= 0.03, kind


def test_update_kinds_are_distributed_alike_in_both_splits() -> None:
    dev = sets.updates("dev").updates
    holdout = sets.updates("holdout").updates
    dev_share = _share(Counter(u.kind for u in dev), len(dev))
    holdout_share = _share(Counter(u.kind for u in holdout), len(holdout))
    for kind in UPDATE_KINDS:
        assert abs(dev_share[kind] - holdout_share[kind]) <= 0.03, kind


# --------------------------------------------------------------------------- abstention


@pytest.mark.parametrize("split", SPLITS)
def test_abstention_counts_and_ids(split: Split) -> None:
    data = sets.abstention(split)
    answerable = [q for q in data.questions if q.answerable]
    unanswerable = [q for q in data.questions if not q.answerable]
    assert len(data.facts) >= MINIMUM["abstention_facts"][split]
    assert len(answerable) >= MINIMUM["answerable"][split]
    assert len(unanswerable) >= MINIMUM["unanswerable"][split]
    _ids_unique(f.id for f in data.facts)
    _ids_unique(q.id for q in data.questions)
    _ids_unique(q.question for q in data.questions)
    _ids_unique(f.subject for f in data.facts)
    # one person per first name, so that a question by first name is unambiguous
    first_names = [f.subject.split()[0] for f in data.facts if f.subject[:1].isupper()]
    _ids_unique(first_names)
    for fact in data.facts:
        assert fact.value in fact.text, fact.id


@pytest.mark.parametrize("split", SPLITS)
def test_answerable_questions_paraphrase_an_existing_fact(split: Split) -> None:
    data = sets.abstention(split)
    answered = set()
    for q in data.questions:
        if not q.answerable:
            continue
        assert q.fact_id is not None and q.answer and q.trap is None, q.id
        assert q.near_fact_id is None, q.id
        fact = data.fact(q.fact_id)
        answered.add(fact.id)
        assert q.answer.lower() in fact.text.lower(), q.id
        assert q.answer.lower() not in q.question.lower(), q.id
        assert q.kind is None
        assert _names(fact.subject) & _names(q.question), f"{q.id}: names no subject"
    assert answered == {f.id for f in data.facts}


@pytest.mark.parametrize("split", SPLITS)
def test_unanswerable_questions_sit_next_to_a_fact_with_a_trap(split: Split) -> None:
    data = sets.abstention(split)
    fact_text = " ".join(f.text for f in data.facts)
    kinds: Counter[str] = Counter()
    for q in data.questions:
        if q.answerable:
            continue
        assert q.fact_id is None and q.answer is None, q.id
        assert q.near_fact_id is not None and q.trap, q.id
        near = data.fact(q.near_fact_id)
        assert q.trap.lower() in near.text.lower(), q.id
        assert q.trap.lower() not in q.question.lower(), q.id
        assert q.kind in UNANSWERABLE_KINDS, q.id
        kinds[q.kind] += 1
        if q.kind == "other_subject":
            # the person asked about is in no stored fact
            asked = _names(q.question)
            assert asked and not asked & _names(fact_text), q.id
        elif q.kind != "other_place":  # the same subject, its relative or its other event
            assert _names(near.subject) & _names(q.question), q.id
    assert set(kinds) == set(UNANSWERABLE_KINDS)
    assert max(kinds.values()) - min(kinds.values()) <= 1, kinds


# ----------------------------------------------------------------------------- sessions


@pytest.mark.parametrize("split", SPLITS)
def test_session_facts_have_a_distinctive_answer_in_what_was_said(split: Split) -> None:
    data = sets.sessions(split)
    assert len(data.facts) >= MINIMUM["session_facts"][split]
    _ids_unique(s.id for s in data.facts)
    _ids_unique(s.answer.lower() for s in data.facts)
    for s in data.facts:
        assert s.answer.lower() in s.said.lower(), s.id
        assert s.answer.lower() not in s.asked.lower(), s.id
        assert re.search(r"\b(I|my|My|I'm)\b", s.said) and re.search(r"\b(I|my)\b", s.asked)
    for a in data.facts:
        for b in data.facts:
            if a is not b:
                assert a.answer.lower() not in b.said.lower(), (a.id, b.id)


@pytest.mark.parametrize("split", SPLITS)
def test_session_fillers_are_ordinary_messages_that_mention_no_answer(split: Split) -> None:
    data = sets.sessions(split)
    assert len(data.fillers) >= MINIMUM["filler_topics"][split]
    answers = [s.answer.lower() for other in SPLITS for s in sets.sessions(other).facts]
    for topic, messages in data.fillers.items():
        assert len(set(messages)) == len(messages) >= 10, topic
        for message in messages:
            assert message.rstrip()[-1] in "?.", message
            low = message.lower()
            assert not [a for a in answers if re.search(rf"\b{re.escape(a)}\b", low)], message
            assert not [a for a in answers if len(a) >= 4 and a in low], message


def test_session_topics_differ_between_the_splits() -> None:
    assert not set(sets.sessions("dev").fillers) & set(sets.sessions("holdout").fillers)


# ---------------------------------------------------------------------------- retrieval

_STOPWORDS = """what which where when who whom whose how does did do the a an of in on at for to
is are from with his her their its this that into about"""
STOPWORDS = frozenset(_STOPWORDS.split())


def _keys(item: RetrievalItem) -> set[str]:
    """The exact code or rare name the query shares with the fact."""
    fact_words = {re.sub(r"['’]s$", "", w) for w in _words(item.fact)}
    query_words = [re.sub(r"['’]s$", "", w) for w in _words(item.query)[1:]]
    shared = [w for w in query_words if w in fact_words]
    return {w for w in shared if re.search(r"\d", w) or (w[:1].isupper() and len(w) > 2)}


def _similar(a: str, b: str) -> float:
    return SequenceMatcher(None, a.lower(), b.lower()).ratio()


@pytest.mark.parametrize("split", SPLITS)
def test_retrieval_counts_ids_and_answers(split: Split) -> None:
    data = sets.retrieval(split)
    assert len(data.items) >= MINIMUM["retrieval"][split]
    _ids_unique(r.id for r in data.items)
    _ids_unique(r.fact for r in data.items)
    counts = Counter(r.kind for r in data.items)
    assert set(counts) == set(RETRIEVAL_KINDS)
    assert min(counts.values()) / len(data.items) >= 0.2
    for r in data.items:
        assert r.answer in r.fact, r.id
        assert r.answer.lower() not in r.query.lower(), r.id
        if r.kind == "number":
            assert re.search(r"\d", r.answer), r.id


@pytest.mark.parametrize("split", SPLITS)
def test_every_code_and_rare_name_item_has_a_near_identical_decoy(split: Split) -> None:
    data = sets.retrieval(split)
    _ids_unique(data.decoys)
    facts = {r.fact for r in data.items}
    assert not facts & set(data.decoys)
    for r in data.items:
        if r.kind not in ("code", "rare_name"):
            continue
        keys = _keys(r)
        assert keys, f"{r.id}: the query does not repeat the code or name of the fact"
        decoys = [
            d
            for d in data.decoys
            if _similar(d, r.fact) >= 0.7
            and not keys <= set(_words(d))
            and r.answer.lower() not in d.lower()
        ]
        assert 1 <= len(decoys) <= 3, f"{r.id}: {len(decoys)} decoys"
    for d in data.decoys:
        # a decoy is near one fact and never carries all of its keys
        near = [r for r in data.items if _similar(d, r.fact) >= 0.7]
        assert near, d
        for r in near:
            assert not _keys(r) <= set(_words(d)), (r.id, d)


@pytest.mark.parametrize("split", SPLITS)
def test_paraphrase_queries_share_only_the_name_with_the_fact(split: Split) -> None:
    for r in sets.retrieval(split).items:
        if r.kind != "paraphrase":
            continue
        name = {w.lower() for w in _names(r.fact)}
        fact_words = {w.lower().rstrip("?.,") for w in _words(r.fact)}
        for word in _words(r.query):
            w = re.sub(r"['’]s$", "", word.lower().rstrip("?.,"))
            if w in STOPWORDS or w in name or len(w) < 4:
                continue
            for f in fact_words:
                assert not (f.startswith(w) or (len(f) >= 4 and w.startswith(f))), (r.id, w, f)
