"""Chat sessions seen from the gateway: read a session's transcript and summary, forget a
session (its memories, its state, and its unfinished chat jobs)."""

from __future__ import annotations

from typing import Any

from starlette.concurrency import run_in_threadpool

from gateway.services.jobs import JobService
from memq.contracts import (
    ChatJobRequest,
    ChatRole,
    ForgetResponse,
    MemoryListResponse,
    MemoryPublic,
    SessionForgotten,
    SessionPublic,
    SessionSummary,
    SessionTurn,
    session_namespace,
)
from memq.errors import NotFound
from memq.memory_client import AsyncMemoryClient
from memq.store.sessions import summary_id


class SessionNotFound(NotFound):
    code = "session_not_found"


class SessionService:
    def __init__(self, jobs: JobService, memory: AsyncMemoryClient) -> None:
        self.jobs = jobs
        self.memory = memory

    async def read(self, tenant: str, session_id: str) -> SessionPublic:
        turns_so_far, through = await run_in_threadpool(
            self.jobs.store.sessions.state, tenant, session_id
        )
        memories: list[MemoryPublic] = []
        cursor = None
        while True:
            params: dict[str, Any] = {
                "namespace": session_namespace(session_id),
                "kind": "message",
                "limit": 1000,
            }
            if cursor:
                params["cursor"] = cursor
            page = MemoryListResponse.model_validate(
                await self.memory.request(tenant, "GET", "/v1/memories", params=params)
            )
            memories += page.items
            cursor = page.next_cursor
            if cursor is None:
                break
        if not memories and not turns_so_far:
            raise SessionNotFound(f"no session {session_id!r} for this API key's tenant")
        turns = sorted(
            (
                SessionTurn(
                    turn=int(m.metadata.get("turn", 0)),
                    role=ChatRole(m.metadata.get("role", "user")),
                    content=m.text,
                    memory_id=m.id,
                    created_at=m.created_at,
                )
                for m in memories
            ),
            key=lambda t: t.turn,
        )
        summary = None
        found = await self.memory.request(tenant, "GET", f"/v1/memories/{summary_id(session_id)}")
        if found is not None:
            memory = MemoryPublic.model_validate(found)
            covers = int(memory.metadata.get("through_turn", through))
            summary = SessionSummary(text=memory.text, version=memory.version, through_turn=covers)
        return SessionPublic(session_id=session_id, turns=turns, summary=summary)

    async def forget(self, tenant: str, session_id: str) -> SessionForgotten:
        cancelled = await run_in_threadpool(self._cancel_jobs, tenant, session_id)
        gone = await self.memory.request(
            tenant, "DELETE", f"/v1/namespaces/{session_namespace(session_id)}"
        )
        deleted = ForgetResponse.model_validate(gone).deleted
        await run_in_threadpool(self.jobs.store.sessions.forget, tenant, session_id)
        return SessionForgotten(
            session_id=session_id, deleted_memories=deleted, cancelled_jobs=cancelled
        )

    def _cancel_jobs(self, tenant: str, session_id: str) -> int:
        store = self.jobs.store
        cancelled = 0
        for job_tenant, job_id in store.active_jobs(tenant=tenant):
            record = store.get(job_tenant, job_id)
            if (
                record is not None
                and isinstance(record.request, ChatJobRequest)
                and record.request.session_id == session_id
                and store.cancel(job_tenant, job_id) is not None
            ):
                cancelled += 1
        return cancelled
