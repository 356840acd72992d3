"""Job endpoints: submit, list, read, cancel, replay, and stream a job's events."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Body, Header, Path, Query, Response, status
from sse_starlette import EventSourceResponse
from starlette.concurrency import run_in_threadpool

from gateway.api.deps import AsyncRedis, Jobs, QueueRoom, Settings, Tenant
from memq.contracts import (
    ErrorResponse,
    JobAccepted,
    JobListResponse,
    JobPublic,
    JobRequest,
    JobStatus,
    JobType,
)
from memq.store.jobs import Created
from memq.webhooks import status_url

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])

JobId = Annotated[str, Path(pattern=r"^[A-Za-z0-9\-]{1,64}$", description="The job's id.")]
_errors: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse} for code in (401, 404, 410, 413, 422, 429, 503)
}
PARTIAL_WAIT_S = 5.0


def _accepted(created: Created, jobs: Jobs, settings: Settings, response: Response) -> JobAccepted:
    record = created.record
    if created.existing:
        response.headers["Idempotent-Replayed"] = "true"
    return JobAccepted(
        id=record.id, status=record.status, status_url=status_url(settings.gateway_url, record.id)
    )


@router.post(
    "",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=JobAccepted,
    responses=_errors,
    dependencies=[QueueRoom],
)
def submit_job(
    tenant: Tenant,
    jobs: Jobs,
    settings: Settings,
    response: Response,
    job: JobRequest = Body(),
    idempotency_key: Annotated[
        str | None,
        Header(
            min_length=1,
            max_length=255,
            description="The same key and body within 24 h return the original job.",
        ),
    ] = None,
) -> JobAccepted:
    """Queue a generate or summarize job; poll the status URL or stream its events."""
    created = jobs.submit(tenant, job, idempotency_key=idempotency_key)
    return _accepted(created, jobs, settings, response)


@router.get("", response_model=JobListResponse, responses=_errors)
def list_jobs(
    tenant: Tenant,
    jobs: Jobs,
    status_: Annotated[
        list[JobStatus] | None, Query(alias="status", description="Only these states.")
    ] = None,
    type_: Annotated[list[JobType] | None, Query(alias="type", description="Only these.")] = None,
    created_after: datetime | None = None,
    created_before: datetime | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=256)] = None,
) -> JobListResponse:
    """The tenant's jobs, newest first; pass `next_cursor` back as `cursor`."""
    return jobs.list(
        tenant,
        limit=limit,
        cursor=cursor,
        statuses=status_ or [],
        types=type_ or [],
        created_after=created_after,
        created_before=created_before,
    )


@router.get("/{job_id}", response_model=JobPublic, responses=_errors)
def get_job(job_id: JobId, tenant: Tenant, jobs: Jobs, settings: Settings) -> JobPublic:
    """A job's status, per-state timestamps, progress while running, and its result."""
    return jobs.get(tenant, job_id).public(status_url=status_url(settings.gateway_url, job_id))


@router.post(
    "/{job_id}/cancel",
    response_model=JobPublic,
    responses={**_errors, 409: {"model": ErrorResponse}},
)
def cancel_job(job_id: JobId, tenant: Tenant, jobs: Jobs, settings: Settings) -> JobPublic:
    """Cancel a queued job (it never runs) or a running one (it stops at its next decode
    step and keeps its partial text); a finished job is a 409."""
    return jobs.cancel(tenant, job_id).public(status_url=status_url(settings.gateway_url, job_id))


@router.post(
    "/{job_id}/replay",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=JobAccepted,
    responses={**_errors, 409: {"model": ErrorResponse}},
    dependencies=[QueueRoom],
)
def replay_job(
    job_id: JobId, tenant: Tenant, jobs: Jobs, settings: Settings, response: Response
) -> JobAccepted:
    """Run a finished job again against what it saw (the same memories, parameters and
    seed); a new job whose `replay_of` names this one."""
    return _accepted(jobs.replay(tenant, job_id), jobs, settings, response)


@router.get(
    "/{job_id}/events",
    response_class=EventSourceResponse,
    responses={
        **_errors,
        200: {
            "content": {"text/event-stream": {}},
            "description": "Server-Sent Events: `status`, `token` (`tokens`, `offset`, "
            "`delta`: the text is `text[:offset] + delta`), then `result` (the job). Each "
            "event has an id; reconnect with `Last-Event-ID` to resume.",
        },
    },
)
async def job_events(
    job_id: JobId,
    tenant: Tenant,
    jobs: Jobs,
    settings: Settings,
    aredis: AsyncRedis,
    last_event_id: Annotated[str | None, Header(max_length=64)] = None,
) -> EventSourceResponse:
    """Stream a job's state changes and tokens, ending with the final job."""
    await run_in_threadpool(jobs.get, tenant, job_id)  # 404 / 410 before the stream starts
    after = last_event_id if last_event_id and _is_stream_id(last_event_id) else "0"

    async def stream() -> AsyncIterator[dict[str, str]]:
        position = after
        ran = drained = False
        while True:
            events = await jobs.store.read_events_async(
                aredis, tenant, job_id, position, block_ms=None if drained else 15_000
            )
            for event_id, event in events:
                position = event_id
                kind = event.pop("event")
                if kind == "partial":
                    continue
                yield {"id": event_id, "event": kind, "data": json.dumps(event)}
                if kind == "status" and event["status"] == JobStatus.running:
                    ran = True
            record = await run_in_threadpool(jobs.store.get, tenant, job_id)
            if record is None:
                return
            if record.status.terminal:
                if not drained:
                    # Events written after the read above (the last tokens, the terminal
                    # status) go out before the result: read once more, without waiting.
                    drained = True
                    continue
                if record.status == JobStatus.cancelled and ran and record.result is None:
                    # The worker stops at its next decode step and attaches what it had.
                    deadline = time.monotonic() + PARTIAL_WAIT_S
                    while record.result is None and time.monotonic() < deadline:
                        late = await jobs.store.read_events_async(
                            aredis, tenant, job_id, position, block_ms=500
                        )
                        position = late[-1][0] if late else position
                        record = await run_in_threadpool(jobs.store.get, tenant, job_id) or record
                public = record.public(status_url=status_url(settings.gateway_url, job_id))
                yield {"id": position, "event": "result", "data": public.model_dump_json()}
                return
            ran = ran or record.status == JobStatus.running

    return EventSourceResponse(stream(), ping=15)


def _is_stream_id(value: str) -> bool:
    millis, _, seq = value.partition("-")
    return millis.isdigit() and seq.isdigit()
