"""`memq.Client`: the blocking Python client of the gateway."""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any, TypeVar

import httpx

from memq.contracts import (
    ChatMessage,
    DeleteResponse,
    DocumentIngestResponse,
    GenerationParams,
    JobAccepted,
    JobListResponse,
    JobPublic,
    JobStatus,
    JobSummary,
    JobType,
    MemoryCreate,
    MemoryHit,
    MemoryKind,
    MemoryListResponse,
    MemoryOptions,
    MemoryPublic,
    NamespaceForgotten,
    Priority,
    SearchMode,
    SessionForgotten,
    SessionPublic,
)
from memq.sdk import _core
from memq.sdk._core import (
    Call,
    JobEvent,
    JobRequestLike,
    ResultEvent,
    StatusEvent,
    TextAccumulator,
    TokenEvent,
)
from memq.sdk.errors import APIConnectionError, ServiceUnavailableError, WaitTimeout

T = TypeVar("T")


class TextStream:
    """A running job's text as it is generated. Iterate for append-only deltas; afterwards
    `job` is the finished job and `text` its final text.

        stream = client.stream(job_id)
        for delta in stream:
            print(delta, end="", flush=True)
        print(stream.job.status)
    """

    def __init__(self, events: Iterator[JobEvent]) -> None:
        self._events = events
        self._acc = TextAccumulator()
        self.status: JobStatus | None = None

    @property
    def text(self) -> str:
        return self._acc.text

    @property
    def tokens(self) -> int:
        return self._acc.tokens

    @property
    def job(self) -> JobPublic | None:
        """The finished job, once the stream has ended."""
        return self._acc.job

    def __iter__(self) -> Iterator[str]:
        for event in self._events:
            if isinstance(event, TokenEvent):
                delta = self._acc.token(event)
            elif isinstance(event, StatusEvent):
                self.status, delta = event.status, ""
            else:
                self.status, delta = event.job.status, self._acc.result(event.job)
            if delta:
                yield delta

    def until_done(self) -> JobPublic:
        """Read the rest of the stream; the finished job."""
        for _ in self:
            pass
        assert self._acc.job is not None  # the event stream ends with the result
        return self._acc.job


class Client:
    """The memq gateway from Python (blocking; see `AsyncClient` for asyncio).

        with memq.Client() as client:    # MEMQ_GATEWAY_URL, MEMQ_API_KEY (or .env)
            client.add_memory("user:42", "Alice lives in Paris.")
            job = client.wait(client.generate("Where does Alice live?", namespace="user:42").id)
            print(job.result.text, [m.similarity for m in job.result.memories])

    Error answers raise `memq.sdk.errors.APIError` subclasses (`NotFoundError`, `ConflictError`,
    `RateLimitError`, ...) carrying the server's code and message; an unreachable gateway
    raises `APIConnectionError`.
    """

    def __init__(
        self,
        base_url: str | None = None,
        api_key: str | None = None,
        *,
        timeout: float = _core.DEFAULT_TIMEOUT_S,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.base_url, api_key = _core.resolve_config(base_url, api_key)
        self._http = httpx.Client(
            base_url=self.base_url,
            timeout=timeout,
            headers=_core.default_headers(api_key),
            transport=transport,
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _send(self, call: Call[T]) -> T:
        try:
            resp = self._http.request(
                call.method, call.path, json=call.json, params=call.params, headers=call.headers
            )
        except httpx.TransportError as exc:
            raise _core.connection_error(exc, self.base_url) from exc
        return _core.parse_response(resp, call)

    # -------------------------------------------------------------------------- jobs

    def submit(self, job: JobRequestLike, *, idempotency_key: str | None = None) -> JobAccepted:
        """Queue a job given as a contract model (`GenerateJobRequest`, ...) or a JSON dict.
        The same `idempotency_key` and body within 24 h return the original job."""
        return self._send(_core.submit_call(job, idempotency_key))

    def generate(
        self,
        prompt: str,
        *,
        namespace: str | Sequence[str] | None = None,
        top_k: int | None = None,
        max_new_tokens: int | None = None,
        temperature: float | None = None,
        seed: int | None = None,
        params: GenerationParams | Mapping[str, Any] | None = None,
        memory: MemoryOptions | Mapping[str, Any] | None = None,
        priority: Priority | str | None = None,
        metadata: Mapping[str, str] | None = None,
        callback_url: str | None = None,
        idempotency_key: str | None = None,
    ) -> JobAccepted:
        """Queue a generate job that retrieves from `namespace` (one or several)."""
        job = _core.build_job(
            {
                "type": "generate",
                "prompt": prompt,
                "params": _core.params_of(
                    params, max_new_tokens=max_new_tokens, temperature=temperature, seed=seed
                ),
                "memory": _core.memory_of(memory, namespace, top_k),
                **_core.common_job_fields(priority, metadata, callback_url),
            }
        )
        return self.submit(job, idempotency_key=idempotency_key)

    def summarize(
        self,
        text: str,
        *,
        max_new_tokens: int | None = None,
        sentences: int | None = None,
        params: GenerationParams | Mapping[str, Any] | None = None,
        priority: Priority | str | None = None,
        metadata: Mapping[str, str] | None = None,
        callback_url: str | None = None,
        idempotency_key: str | None = None,
    ) -> JobAccepted:
        """Queue a summarize job (text longer than the context is map-reduced)."""
        job = _core.build_job(
            {
                "type": "summarize",
                "text": text,
                "sentences": sentences,
                "params": _core.params_of(params, max_new_tokens=max_new_tokens),
                **_core.common_job_fields(priority, metadata, callback_url),
            }
        )
        return self.submit(job, idempotency_key=idempotency_key)

    def chat(
        self,
        message: str | Sequence[ChatMessage | Mapping[str, Any]],
        *,
        session_id: str | None = None,
        user_id: str | None = None,
        max_new_tokens: int | None = None,
        temperature: float | None = None,
        params: GenerationParams | Mapping[str, Any] | None = None,
        write_back: bool | None = None,
        priority: Priority | str | None = None,
        metadata: Mapping[str, str] | None = None,
        idempotency_key: str | None = None,
    ) -> JobAccepted:
        """Queue one chat turn. With a `session_id` memq remembers the conversation (send
        only the new message); with a `user_id` it also retrieves that user's memories."""
        job = _core.build_job(
            {
                "type": "chat",
                "messages": _core.chat_messages(message),
                "session_id": session_id,
                "user_id": user_id,
                "write_back": write_back,
                "params": _core.params_of(
                    params, max_new_tokens=max_new_tokens, temperature=temperature
                ),
                **_core.common_job_fields(priority, metadata, None),
            }
        )
        return self.submit(job, idempotency_key=idempotency_key)

    def get(self, job_id: str) -> JobPublic:
        return self._send(_core.get_call(job_id))

    def cancel(self, job_id: str) -> JobPublic:
        """Cancel a queued job (it never runs) or a running one (it keeps its partial text);
        a finished job raises `ConflictError`."""
        return self._send(_core.cancel_call(job_id))

    def replay(self, job_id: str) -> JobAccepted:
        """Run a finished job again with the same memories, parameters and seed."""
        return self._send(_core.replay_call(job_id))

    def list_jobs(
        self,
        *,
        status: Sequence[JobStatus | str] | None = None,
        type: Sequence[JobType | str] | None = None,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> JobListResponse:
        """One page of the tenant's jobs, newest first; pass `next_cursor` back as `cursor`."""
        return self._send(
            _core.list_jobs_call(
                status=status,
                type=type,
                created_after=created_after,
                created_before=created_before,
                limit=limit,
                cursor=cursor,
            )
        )

    def iter_jobs(
        self,
        *,
        status: Sequence[JobStatus | str] | None = None,
        type: Sequence[JobType | str] | None = None,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
        page_size: int = 50,
    ) -> Iterator[JobSummary]:
        """Every matching job, newest first, fetching pages as it goes."""
        cursor: str | None = None
        while True:
            page = self.list_jobs(
                status=status,
                type=type,
                created_after=created_after,
                created_before=created_before,
                limit=page_size,
                cursor=cursor,
            )
            yield from page.items
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    def events(
        self, job_id: str, *, last_event_id: str | None = None, timeout: float | None = None
    ) -> Iterator[JobEvent]:
        """The job's events as they happen (`StatusEvent`, `TokenEvent`, then one
        `ResultEvent`), from the start or after `last_event_id`. A dropped connection is
        resumed where it broke; `WaitTimeout` once `timeout` seconds have passed."""
        deadline = None if timeout is None else time.monotonic() + timeout
        state = _core.StreamState(job_id, deadline, last_event_id)
        path = f"/v1/jobs/{job_id}/events"
        while True:
            try:
                with self._http.stream(
                    "GET", path, headers=state.headers(), timeout=state.timeout()
                ) as resp:
                    if resp.status_code >= 400:
                        resp.read()
                        _core.raise_for_status(resp)
                    decoder = _core.SSEDecoder()
                    for line in resp.iter_lines():
                        raw = decoder.feed(line)
                        event = _core.job_event(*raw) if raw else None
                        if event is None:
                            continue
                        state.last_event_id, state.failures = event.id, 0
                        yield event
                        if isinstance(event, ResultEvent):
                            return
                delay = state.broken(APIConnectionError(f"the event stream of {job_id} ended"))
            except httpx.TransportError as exc:
                if state.expired():
                    raise state.timed_out() from exc
                delay = state.broken(_core.connection_error(exc, self.base_url))
            if state.expired():
                raise state.timed_out()
            time.sleep(delay)

    def stream(self, job_id: str, *, timeout: float | None = None) -> TextStream:
        """The job's text as it is generated (see `TextStream`)."""
        return TextStream(self.events(job_id, timeout=timeout))

    def wait(
        self, job_id: str, timeout: float = 300.0, poll: float = 0.2, *, events: bool = True
    ) -> JobPublic:
        """The finished job. Follows its event stream; if the stream cannot be had, polls
        with backoff from `poll` seconds. `WaitTimeout` after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        if events:
            try:
                for event in self.events(job_id, timeout=timeout):
                    if isinstance(event, ResultEvent):
                        return event.job
            except (APIConnectionError, ServiceUnavailableError):
                pass  # polling below retries until the deadline
        return self._poll(job_id, deadline, poll)

    def _poll(self, job_id: str, deadline: float, delay: float) -> JobPublic:
        seen = "unknown"
        while True:
            try:
                job = self.get(job_id)
                if job.status.terminal:
                    return job
                seen = job.status.value
            except (APIConnectionError, ServiceUnavailableError) as exc:
                seen = f"unknown ({exc.message})"
            left = deadline - time.monotonic()
            if left <= 0:
                raise WaitTimeout(f"job {job_id} is still {seen} at the deadline; it goes on")
            time.sleep(min(delay, left))
            delay = _core.next_poll(delay)

    # -------------------------------------------------------------------------- memories

    def add_memory(
        self,
        namespace: str,
        text: str,
        *,
        kind: MemoryKind | str | None = None,
        metadata: Mapping[str, Any] | None = None,
        source: str | None = None,
        ttl_seconds: int | None = None,
    ) -> MemoryPublic:
        """Store a memory (or get the existing near-duplicate back, `deduplicated: true`)."""
        return self._send(
            _core.add_memory_call(
                namespace,
                text,
                kind=kind,
                metadata=metadata,
                source=source,
                ttl_seconds=ttl_seconds,
            )
        )

    def add_memories(
        self,
        items: Iterable[str | MemoryCreate | Mapping[str, Any]],
        *,
        namespace: str | None = None,
    ) -> list[MemoryPublic]:
        """Store up to 1,000 memories in one batch (strings go to `namespace`)."""
        return self._send(_core.add_memories_call(namespace, items))

    def ingest_document(
        self,
        namespace: str,
        text: str,
        *,
        document_id: str | None = None,
        chunk_chars: int | None = None,
        overlap_chars: int | None = None,
        metadata: Mapping[str, Any] | None = None,
        source: str | None = None,
    ) -> DocumentIngestResponse:
        """Split a document into overlapping chunks stored as memories."""
        return self._send(
            _core.ingest_call(
                namespace,
                text,
                document_id=document_id,
                chunk_chars=chunk_chars,
                overlap_chars=overlap_chars,
                metadata=metadata,
                source=source,
            )
        )

    def search(
        self,
        namespace: str,
        query: str,
        *,
        top_k: int = 5,
        mode: SearchMode | str | None = None,
        min_score: float | None = None,
        kinds: Sequence[MemoryKind | str] | None = None,
    ) -> list[MemoryHit]:
        """The best matches in a namespace, best first (`score`, `similarity`)."""
        call = _core.search_call(
            namespace, query, top_k=top_k, mode=mode, min_score=min_score, kinds=kinds
        )
        return self._send(call).hits

    def get_memory(self, memory_id: str) -> MemoryPublic:
        return self._send(_core.get_memory_call(memory_id))

    def list_memories(
        self,
        namespace: str,
        *,
        kinds: Sequence[MemoryKind | str] | None = None,
        limit: int = 100,
        cursor: str | None = None,
    ) -> MemoryListResponse:
        """One page of a namespace's memories; pass `next_cursor` back as `cursor`."""
        return self._send(
            _core.list_memories_call(namespace, kinds=kinds, limit=limit, cursor=cursor)
        )

    def iter_memories(
        self,
        namespace: str,
        *,
        kinds: Sequence[MemoryKind | str] | None = None,
        page_size: int = 100,
    ) -> Iterator[MemoryPublic]:
        """Every memory of a namespace, fetching pages as it goes."""
        cursor: str | None = None
        while True:
            page = self.list_memories(namespace, kinds=kinds, limit=page_size, cursor=cursor)
            yield from page.items
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    def delete_memory(self, memory_id: str) -> DeleteResponse:
        return self._send(_core.delete_memory_call(memory_id))

    def forget(self, namespace: str) -> NamespaceForgotten:
        """Delete every memory of a namespace and cancel the queued jobs that would read it."""
        return self._send(_core.forget_call(namespace))

    # -------------------------------------------------------------------------- sessions

    def get_session(self, session_id: str) -> SessionPublic:
        """A chat session's transcript (oldest first) and rolling summary."""
        return self._send(_core.session_call(session_id))

    def forget_session(self, session_id: str) -> SessionForgotten:
        """Delete a session's memories and state and cancel its unfinished chat jobs."""
        return self._send(_core.forget_session_call(session_id))
