"""Chat sessions: what a chat job sees of its session, and how its turn is written back.

A session's turns are `message` memories in the namespace `session:{id}` (so they are
searchable like any memory), numbered in the session's Redis hash (`JobStore`). Its
rolling summary is one `summary` memory with a stable id, rewritten as a new version each
time it grows; `summarized_through` says which turns it covers.

Write-back is exactly once per job: the user's message and the reply get ids derived from
the job id and turn numbers reserved for the job, and are written with PUT (create or
replace), so a redelivered job writes the same two memories again instead of two more.
It happens before the job's result is committed; if the commit then finds the job
cancelled, `undo` deletes them, and if another attempt committed first, `write_back` runs
again with the committed result.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from memq.clients import MemoryClient
from memq.contracts import (
    ChatJobRequest,
    ChatRole,
    JobResult,
    MemoryCreate,
    MemoryFilter,
    MemoryKind,
    MetadataCondition,
    session_namespace,
)
from memq.jobstore import JobStore
from memq.sessions import message_id, summary_id
from worker.pipeline import SessionContext
from worker.prompting import Turn

log = logging.getLogger("memq.worker.sessions")

MAX_TURNS_READ = 400


@dataclass
class SessionBook:
    memory: MemoryClient
    store: JobStore

    def context(self, tenant: str, session_id: str) -> SessionContext:
        _, through = self.store.session_state(tenant, session_id)
        namespace = session_namespace(session_id)
        summary = self.memory.get(tenant, summary_id(session_id)) if through else None
        newer = MemoryFilter(all_of=[MetadataCondition(key="turn", gt=through)])
        found = self.memory.list_all(
            tenant, namespace, kinds=[MemoryKind.message], where=newer, limit=MAX_TURNS_READ
        )
        found.sort(key=lambda m: int(m.metadata.get("turn", 0)))
        turns = [
            Turn(ChatRole(m.metadata.get("role", "user")), m.text, memory_id=m.id) for m in found
        ]
        return SessionContext(turns=turns, summary=summary.text if summary else None)

    def write_back(
        self, tenant: str, job_id: str, request: ChatJobRequest, result: JobResult
    ) -> list[str]:
        """Store the job's user message and reply as the session's next two turns."""
        assert request.session_id is not None
        first = self.store.reserve_turns(tenant, request.session_id, job_id, 2)
        namespace = session_namespace(request.session_id)
        written = []
        for offset, (role, text) in enumerate(
            ((ChatRole.user, request.prompt), (ChatRole.assistant, result.text))
        ):
            if not text.strip():
                continue
            memory = MemoryCreate(
                namespace=namespace,
                text=text,
                kind=MemoryKind.message,
                metadata={"role": role.value, "turn": first + offset, "job_id": job_id},
                source=job_id,
            )
            written.append(self.memory.put(tenant, message_id(job_id, role), memory).id)
        return written

    def undo(self, tenant: str, job_id: str) -> None:
        """Remove a job's written-back turns (its commit found it cancelled)."""
        for role in (ChatRole.user, ChatRole.assistant):
            self.memory.delete(tenant, message_id(job_id, role))
