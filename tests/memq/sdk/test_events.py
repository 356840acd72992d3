"""Event streams: decoded, accumulated into text, resumed after their last event; `wait` falls
back to polling and gives up at its deadline."""

from __future__ import annotations

import httpx
import pytest

from memq.contracts import JobPublic, JobStatus
from memq.sdk import ResultEvent, TokenEvent
from memq.sdk._core import SSEDecoder, TextAccumulator
from memq.sdk.errors import NotFoundError, WaitTimeout
from tests.utils.scripted_gateway import error_answer, job_json, scripted_client, stream_answer


def test_sse_decoder_joins_data_lines_and_skips_comments() -> None:
    decoder = SSEDecoder()
    lines = [": keep-alive", "id: 1-0", "event: token", "data: a", "data: b", "", ""]
    found = [e for line in lines if (e := decoder.feed(line)) is not None]
    assert found == [("token", "a\nb", "1-0")]


def test_text_accumulator_applies_offsets_and_holds_back_half_characters() -> None:
    acc = TextAccumulator()
    deltas = [
        acc.token(TokenEvent("1", 1, 0, " Par")),
        acc.token(TokenEvent("2", 2, 4, "is \ufffd")),  # half of a multi-byte character
        acc.token(TokenEvent("3", 3, 7, "é.")),  # the worker rewrote the half character
    ]
    assert deltas == [" Par", "is ", "é."]
    assert acc.text == " Paris é." and acc.tokens == 3
    assert acc.result(JobPublic.model_validate(job_json(text=" Paris é. More"))) == " More"


def test_stream_yields_the_text_as_it_grows_then_holds_the_finished_job() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/v1/jobs/j1/events"
        return stream_answer(
            ("1-0", "status", {"status": "running"}),
            ("2-0", "token", {"tokens": 1, "offset": 0, "delta": " Par"}),
            ("3-0", "token", {"tokens": 2, "offset": 4, "delta": "is."}),
            ("4-0", "result", job_json(text=" Paris.")),
        )

    with scripted_client(handler) as client:
        stream = client.stream("j1")
        assert list(stream) == [" Par", "is."]
    assert stream.job is not None and stream.job.status == JobStatus.succeeded
    assert stream.text == " Paris." and stream.tokens == 2
    assert stream.status == JobStatus.succeeded


def test_a_broken_event_stream_is_resumed_after_its_last_event() -> None:
    asked: list[str | None] = []

    def handler(request: httpx.Request) -> httpx.Response:
        asked.append(request.headers.get("Last-Event-ID"))
        if len(asked) == 1:  # the connection ends before the result
            return stream_answer(("1-0", "token", {"tokens": 1, "offset": 0, "delta": " Pa"}))
        return stream_answer(
            ("2-0", "token", {"tokens": 2, "offset": 3, "delta": "ris."}),
            ("3-0", "result", job_json(text=" Paris.")),
        )

    with scripted_client(handler) as client:
        events = list(client.events("j1"))
    assert asked == [None, "1-0"]
    assert [e.id for e in events] == ["1-0", "2-0", "3-0"]
    assert isinstance(events[-1], ResultEvent) and events[-1].job.result is not None


def test_events_of_an_unknown_job_raise_not_found() -> None:
    answer = error_answer(404, "job_not_found", "no job 'nope' for this tenant")
    with scripted_client(lambda r: answer) as client, pytest.raises(NotFoundError, match="nope"):
        list(client.events("nope"))


def test_wait_falls_back_to_polling_when_the_event_stream_is_unavailable() -> None:
    polls: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/events"):
            return error_answer(503, "queue_unavailable", "Redis is down")
        polls.append(request.url.path)
        return httpx.Response(200, json=job_json("running" if len(polls) < 3 else "succeeded"))

    with scripted_client(handler) as client:
        job = client.wait("j1", timeout=60, poll=0.01)
    assert job.status == JobStatus.succeeded
    assert polls == ["/v1/jobs/j1"] * 3


def test_wait_gives_up_at_its_deadline_with_a_timeout_error() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=job_json("queued"))

    with scripted_client(handler) as client, pytest.raises(WaitTimeout, match="still queued"):
        client.wait("j1", timeout=0.2, poll=0.01, events=False)
    assert issubclass(WaitTimeout, TimeoutError)
