"""The chaos checker on hand-made histories: each verdict, and the bookkeeping errors it
refuses (no fault is injected here)."""

from __future__ import annotations

import threading

import pytest

from tests.chaos.checker import History


def test_clean_history_is_valid_and_counts_each_outcome(capsys: pytest.CaptureFixture[str]) -> None:
    h = History()
    for key in ("a", "b"):
        h.invoke(key)
        h.ok(key)
    h.invoke("p", kind="poison")
    h.fail("p", "422")
    h.invoke("maybe")
    h.info("maybe", "connection reset")
    h.observe_all({"a": 1, "b": 1, "maybe": 1})
    summary = h.check()
    assert summary.valid
    assert (summary.ok, summary.failed, summary.ambiguous, summary.ambiguous_observed) == (
        2,
        1,
        1,
        1,
    )
    assert summary.by_kind == {"write": {"ok": 2, "info": 1}, "poison": {"fail": 1}}
    out = capsys.readouterr().out
    assert "ok 2, failed 1, ambiguous 1 (1 observed)" in out
    assert "lost 0, duplicated 0, unexpected 0" in out


def test_acknowledged_but_unobserved_is_lost() -> None:
    h = History()
    h.invoke("a")
    h.ok("a")
    h.invoke("b")
    h.ok("b")
    h.observe("b")
    h.observe("a", 0)
    summary = h.check()
    assert summary.lost == ["a"]
    assert not summary.valid
    assert "lost: a" in str(summary)


def test_observed_more_than_once_is_duplicated() -> None:
    h = History()
    h.invoke("job-1")
    h.ok("job-1")
    h.observe("job-1")
    h.observe("job-1")
    summary = h.check()
    assert summary.duplicated == ["job-1"]
    assert summary.lost == [] and not summary.valid


def test_ambiguous_observed_twice_is_still_duplicated() -> None:
    h = History()
    h.invoke("x")
    h.info("x")
    h.observe("x", 2)
    assert h.check().duplicated == ["x"]


def test_observed_after_a_definite_failure_or_never_invoked_is_unexpected() -> None:
    h = History()
    h.invoke("refused", kind="poison")
    h.fail("refused")
    h.observe_all({"refused": 1, "ghost": 1, "absent": 0})
    summary = h.check()
    assert summary.unexpected == ["ghost", "refused"]
    assert summary.lost == [] and summary.duplicated == []


def test_failed_and_ambiguous_operations_may_be_absent() -> None:
    h = History()
    h.invoke("refused")
    h.fail("refused")
    h.invoke("dropped")
    h.info("dropped")
    summary = h.check()
    assert summary.valid
    assert summary.ambiguous == 1 and summary.ambiguous_observed == 0


def test_invoked_but_never_completed_counts_as_ambiguous() -> None:
    h = History()
    h.invoke("pending")
    h.observe("pending")
    summary = h.check()
    assert (summary.ambiguous, summary.ambiguous_observed) == (1, 1)
    assert summary.valid


def test_operation_block_that_raises_is_recorded_as_ambiguous() -> None:
    h = History()
    with pytest.raises(ConnectionError), h.operation("w1"):
        raise ConnectionError("reset by peer")
    with h.operation("w2"):
        h.ok("w2")
    [w1, w2] = h.operations()
    assert (w1.outcome, w2.outcome) == ("info", "ok")
    assert "ConnectionError: reset by peer" in w1.detail


def test_bookkeeping_mistakes_are_refused() -> None:
    h = History()
    h.invoke("a")
    with pytest.raises(ValueError, match="already invoked"):
        h.invoke("a")
    h.ok("a")
    with pytest.raises(ValueError, match="already completed as ok"):
        h.fail("a")
    with pytest.raises(ValueError, match="never invoked"):
        h.ok("b")
    with pytest.raises(ValueError, match="0 or more"):
        h.observe("a", -1)


def test_many_threads_record_without_losing_operations() -> None:
    h = History()

    def record(worker: int) -> None:
        for i in range(200):
            key = f"{worker}-{i}"
            h.invoke(key)
            h.ok(key)
            h.observe(key)

    threads = [threading.Thread(target=record, args=(w,)) for w in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    summary = h.check()
    assert summary.ok == 1600 and summary.valid
    assert len(h.operations("write")) == 1600
