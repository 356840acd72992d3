"""What `Client` and `AsyncClient` share: each API call described once as a `Call` (method,
path, body, how to read the answer), error answers turned into typed exceptions, the job
request builders, Server-Sent Events decoding and the streamed text."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, TypeVar

import httpx
from pydantic import BaseModel, TypeAdapter

from memq import __version__
from memq.contracts import (
    ChatMessage,
    DeleteResponse,
    DocumentIngestResponse,
    GenerationParams,
    JobAccepted,
    JobListResponse,
    JobPublic,
    JobRequest,
    JobStatus,
    JobType,
    MemoryBatchResponse,
    MemoryCreate,
    MemoryKind,
    MemoryListResponse,
    MemoryOptions,
    MemoryPublic,
    MemorySearchResponse,
    NamespaceForgotten,
    Priority,
    SearchMode,
    SessionForgotten,
    SessionPublic,
)
from memq.sdk.errors import APIConnectionError, APIError, APITimeoutError, WaitTimeout
from memq.settings import ClientSettings

T = TypeVar("T")

JobRequestLike = JobRequest | Mapping[str, Any]
"""A job as a contract model (`GenerateJobRequest`, ...) or as the JSON body's dict."""

DEFAULT_TIMEOUT_S = 30.0
SSE_READ_TIMEOUT_S = 30.0
"""The gateway sends a keep-alive comment every 15 s: a stream silent for twice that long is
broken and is resumed from its last event."""
POLL_MAX_S = 2.0
STREAM_RETRIES = 3

_job_request: TypeAdapter[JobRequest] = TypeAdapter(JobRequest)


def connection_error(exc: httpx.TransportError, base_url: str) -> APIConnectionError:
    cls = APITimeoutError if isinstance(exc, httpx.TimeoutException) else APIConnectionError
    what = "did not answer in time" if cls is APITimeoutError else "cannot be reached"
    return cls(
        f"the memq gateway at {base_url} {what} ({type(exc).__name__}: {exc}); is it running "
        "(`memq up`)? MEMQ_GATEWAY_URL says where it is (CLI: --gateway, SDK: base_url=)"
    )


# ------------------------------------------------------------------------------ config


def resolve_config(base_url: str | None, api_key: str | None) -> tuple[str, str | None]:
    """Arguments win; otherwise MEMQ_GATEWAY_URL / MEMQ_API_KEY (environment or `.env`)."""
    if base_url is not None and api_key is not None:
        return base_url, api_key
    settings = ClientSettings()
    key = settings.api_key.get_secret_value() if settings.api_key else None
    return base_url or settings.gateway_url, api_key if api_key is not None else key


def default_headers(api_key: str | None) -> dict[str, str]:
    headers = {"User-Agent": f"memq-sdk/{__version__}"}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    return headers


# ------------------------------------------------------------------------------ calls


@dataclass(frozen=True)
class Call(Generic[T]):
    method: str
    path: str
    parse: Callable[[Any], T]
    json: Any = None
    params: Mapping[str, Any] | None = None
    headers: Mapping[str, str] | None = None


def _model(cls: type[BaseModel]) -> Callable[[Any], Any]:
    return cls.model_validate


def raise_for_status(resp: httpx.Response) -> None:
    """An error answer becomes the `APIError` subclass for its status, carrying the
    server's code and message (memq's `{error, message}` or OpenAI's `{error: {...}}`)."""
    if resp.status_code < 400:
        return
    try:
        body: Any = resp.json()
    except ValueError:
        body = resp.text
    code, message = "http_error", (resp.text[:500] or resp.reason_phrase)
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict):
            code = str(error.get("code") or error.get("type") or code)
            message = str(error.get("message") or message)
        elif error is not None:
            code, message = str(error), str(body.get("message") or message)
    raise APIError.of(resp.status_code, code, message, body, _retry_after(resp))


def _retry_after(resp: httpx.Response) -> float | None:
    value = resp.headers.get("retry-after")
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def parse_response(resp: httpx.Response, call: Call[T]) -> T:
    raise_for_status(resp)
    return call.parse(resp.json() if resp.content else None)


def _drop_none(values: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}


def _dump(model: BaseModel) -> Any:
    return model.model_dump(mode="json", exclude_unset=True)


def submit_call(job: JobRequestLike, idempotency_key: str | None) -> Call[JobAccepted]:
    """A dict is sent as given (the gateway validates it); a model is sent with only the
    fields that were set, so the gateway applies its own defaults."""
    body = _dump(job) if isinstance(job, BaseModel) else dict(job)
    headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
    return Call("POST", "/v1/jobs", _model(JobAccepted), json=body, headers=headers)


def get_call(job_id: str) -> Call[JobPublic]:
    return Call("GET", f"/v1/jobs/{job_id}", _model(JobPublic))


def cancel_call(job_id: str) -> Call[JobPublic]:
    return Call("POST", f"/v1/jobs/{job_id}/cancel", _model(JobPublic))


def replay_call(job_id: str) -> Call[JobAccepted]:
    return Call("POST", f"/v1/jobs/{job_id}/replay", _model(JobAccepted))


def list_jobs_call(
    *,
    status: Sequence[JobStatus | str] | None,
    type: Sequence[JobType | str] | None,
    created_after: datetime | None,
    created_before: datetime | None,
    limit: int,
    cursor: str | None,
) -> Call[JobListResponse]:
    params = _drop_none(
        {
            "status": [str(s) for s in status] if status else None,
            "type": [str(t) for t in type] if type else None,
            "created_after": created_after.isoformat() if created_after else None,
            "created_before": created_before.isoformat() if created_before else None,
            "limit": limit,
            "cursor": cursor,
        }
    )
    return Call("GET", "/v1/jobs", _model(JobListResponse), params=params)


def add_memory_call(
    namespace: str,
    text: str,
    *,
    kind: MemoryKind | str | None,
    metadata: Mapping[str, Any] | None,
    source: str | None,
    ttl_seconds: int | None,
) -> Call[MemoryPublic]:
    body = _drop_none(
        {
            "namespace": namespace,
            "text": text,
            "kind": str(kind) if kind else None,
            "metadata": dict(metadata) if metadata is not None else None,
            "source": source,
            "ttl_seconds": ttl_seconds,
        }
    )
    return Call("POST", "/v1/memories", _model(MemoryPublic), json=body)


def add_memories_call(
    namespace: str | None, items: Iterable[str | MemoryCreate | Mapping[str, Any]]
) -> Call[list[MemoryPublic]]:
    body: list[Any] = []
    for item in items:
        if isinstance(item, str):
            if namespace is None:
                raise ValueError("give a namespace to add plain strings as memories")
            body.append({"namespace": namespace, "text": item})
        else:
            body.append(_dump(item) if isinstance(item, BaseModel) else dict(item))
    return Call(
        "POST",
        "/v1/memories/batch",
        lambda data: MemoryBatchResponse.model_validate(data).items,
        json={"items": body},
    )


def ingest_call(
    namespace: str,
    text: str,
    *,
    document_id: str | None,
    chunk_chars: int | None,
    overlap_chars: int | None,
    metadata: Mapping[str, Any] | None,
    source: str | None,
) -> Call[DocumentIngestResponse]:
    body = _drop_none(
        {
            "namespace": namespace,
            "text": text,
            "document_id": document_id,
            "chunk_chars": chunk_chars,
            "overlap_chars": overlap_chars,
            "metadata": dict(metadata) if metadata is not None else None,
            "source": source,
        }
    )
    return Call("POST", "/v1/memories/documents", _model(DocumentIngestResponse), json=body)


def search_call(
    namespace: str,
    query: str,
    *,
    top_k: int,
    mode: SearchMode | str | None,
    min_score: float | None,
    kinds: Sequence[MemoryKind | str] | None,
) -> Call[MemorySearchResponse]:
    body = _drop_none(
        {
            "namespace": namespace,
            "query": query,
            "top_k": top_k,
            "mode": str(mode) if mode else None,
            "min_score": min_score,
            "kinds": [str(k) for k in kinds] if kinds else None,
        }
    )
    return Call("POST", "/v1/memories/search", _model(MemorySearchResponse), json=body)


def get_memory_call(memory_id: str) -> Call[MemoryPublic]:
    return Call("GET", f"/v1/memories/{memory_id}", _model(MemoryPublic))


def list_memories_call(
    namespace: str, *, kinds: Sequence[MemoryKind | str] | None, limit: int, cursor: str | None
) -> Call[MemoryListResponse]:
    params = _drop_none(
        {
            "namespace": namespace,
            "kind": [str(k) for k in kinds] if kinds else None,
            "limit": limit,
            "cursor": cursor,
        }
    )
    return Call("GET", "/v1/memories", _model(MemoryListResponse), params=params)


def delete_memory_call(memory_id: str) -> Call[DeleteResponse]:
    return Call("DELETE", f"/v1/memories/{memory_id}", _model(DeleteResponse))


def forget_call(namespace: str) -> Call[NamespaceForgotten]:
    return Call("DELETE", f"/v1/namespaces/{namespace}", _model(NamespaceForgotten))


def session_call(session_id: str) -> Call[SessionPublic]:
    return Call("GET", f"/v1/sessions/{session_id}", _model(SessionPublic))


def forget_session_call(session_id: str) -> Call[SessionForgotten]:
    return Call("DELETE", f"/v1/sessions/{session_id}", _model(SessionForgotten))


# ------------------------------------------------------------------------------ job builders


def params_of(
    params: GenerationParams | Mapping[str, Any] | None, **overrides: Any
) -> dict[str, Any] | None:
    """The sampling parameters as the request's `params`: `params` with the keyword
    overrides that are not None applied; None when nothing was given."""
    given = _dump(params) if isinstance(params, BaseModel) else dict(params or {})
    given.update(_drop_none(overrides))
    return given or None


def memory_of(
    memory: MemoryOptions | Mapping[str, Any] | None,
    namespace: str | Sequence[str] | None,
    top_k: int | None,
) -> dict[str, Any] | None:
    given = _dump(memory) if isinstance(memory, BaseModel) else dict(memory or {})
    if isinstance(namespace, str):
        given["namespace"] = namespace
    elif namespace is not None:
        given["namespaces"] = list(namespace)
    if top_k is not None:
        given["top_k"] = top_k
    return given or None


def build_job(body: Mapping[str, Any]) -> JobRequest:
    """Validate a job against the shared contract before sending it: a bad value raises
    pydantic's `ValidationError` here, naming the field, without a round trip."""
    return _job_request.validate_python(_drop_none(body))


def chat_messages(message: str | Sequence[ChatMessage | Mapping[str, Any]]) -> list[Any]:
    if isinstance(message, str):
        return [{"role": "user", "content": message}]
    return [_dump(m) if isinstance(m, BaseModel) else dict(m) for m in message]


def common_job_fields(
    priority: Priority | str | None,
    metadata: Mapping[str, str] | None,
    callback_url: str | None,
) -> dict[str, Any]:
    return {
        "priority": str(priority) if priority else None,
        "metadata": dict(metadata) if metadata is not None else None,
        "callback_url": callback_url,
    }


# ------------------------------------------------------------------------------ events


@dataclass(frozen=True)
class StatusEvent:
    """The job entered `status`."""

    id: str
    status: JobStatus


@dataclass(frozen=True)
class TokenEvent:
    """The text so far is `previous_text[:offset] + delta`, after `tokens` tokens."""

    id: str
    tokens: int
    offset: int
    delta: str


@dataclass(frozen=True)
class ResultEvent:
    """The last event: the finished job (succeeded, failed or cancelled)."""

    id: str
    job: JobPublic


JobEvent = StatusEvent | TokenEvent | ResultEvent


class SSEDecoder:
    """Server-Sent Events, fed one line at a time (the WHATWG parsing rules)."""

    def __init__(self) -> None:
        self._event = ""
        self._data: list[str] = []
        self._id = ""

    def feed(self, line: str) -> tuple[str, str, str] | None:
        """(event, data, id) when `line` ends an event, else None."""
        if not line:
            if not self._data:
                self._event = ""
                return None
            found = (self._event or "message", "\n".join(self._data), self._id)
            self._event, self._data = "", []
            return found
        if line.startswith(":"):
            return None
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "event":
            self._event = value
        elif name == "data":
            self._data.append(value)
        elif name == "id" and "\0" not in value:
            self._id = value
        return None


def job_event(kind: str, data: str, event_id: str) -> JobEvent | None:
    """The typed event; None for kinds this client does not know (newer servers)."""
    if kind == "token":
        raw = TypeAdapter(dict[str, Any]).validate_json(data)
        return TokenEvent(event_id, int(raw["tokens"]), int(raw["offset"]), str(raw["delta"]))
    if kind == "status":
        raw = TypeAdapter(dict[str, Any]).validate_json(data)
        return StatusEvent(event_id, JobStatus(raw["status"]))
    if kind == "result":
        return ResultEvent(event_id, JobPublic.model_validate_json(data))
    return None


@dataclass
class StreamState:
    """Where an event stream is, so a broken connection resumes after the last event."""

    job_id: str
    deadline: float | None
    last_event_id: str | None = None
    failures: int = 0

    def headers(self) -> dict[str, str]:
        return {"Last-Event-ID": self.last_event_id} if self.last_event_id else {}

    def timeout(self) -> httpx.Timeout:
        read = SSE_READ_TIMEOUT_S
        if self.deadline is not None:
            read = max(0.05, min(read, self.deadline - time.monotonic()))
        return httpx.Timeout(DEFAULT_TIMEOUT_S, read=read)

    def expired(self) -> bool:
        return self.deadline is not None and time.monotonic() >= self.deadline

    def timed_out(self) -> WaitTimeout:
        return WaitTimeout(f"job {self.job_id} was not finished by the deadline; it goes on")

    def broken(self, exc: Exception) -> float:
        """Count a broken stream; the delay before resuming it (raises when it keeps
        breaking)."""
        self.failures += 1
        if self.failures > STREAM_RETRIES:
            raise exc
        return min(0.2 * 2.0**self.failures, POLL_MAX_S)


@dataclass
class TextAccumulator:
    """The job's text rebuilt from token events, handed out as append-only deltas.

    A trailing U+FFFD (half of a multi-byte character) is held back until the next token
    completes it. Text the worker revises behind what was already handed out (rare) cannot
    be taken back: `text` and the final job are the authority."""

    text: str = ""
    tokens: int = 0
    shown: int = 0
    job: JobPublic | None = field(default=None)

    def token(self, event: TokenEvent) -> str:
        self.text = self.text[: event.offset] + event.delta
        self.tokens = event.tokens
        return self._more(len(self.text.rstrip("\ufffd")))

    def result(self, job: JobPublic) -> str:
        self.job = job
        if job.result is not None:
            self.text = job.result.text
        elif job.progress is not None:
            self.text = job.progress.text
        return self._more(len(self.text))

    def _more(self, stable: int) -> str:
        if stable <= self.shown:
            return ""
        delta = self.text[self.shown : stable]
        self.shown = stable
        return delta


def next_poll(delay: float) -> float:
    return min(delay * 1.5, POLL_MAX_S)
