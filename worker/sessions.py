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
again with the committed result. `SessionBook.commit` is that protocol, wrapped around the
task's commit; after a committed result it also keeps a finished rolling summary,
remembers the user's facts and schedules the session's next summary when it is due.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from memq.contracts import (
    ChatJobRequest,
    ChatRole,
    JobRequest,
    JobResult,
    JobStatus,
    MemoryCreate,
    MemoryFilter,
    MemoryKind,
    MetadataCondition,
    Priority,
    SessionSummaryTarget,
    SummarizeJobRequest,
    session_namespace,
    user_namespace,
)
from memq.errors import MemqError
from memq.memory_client import MemoryClient
from memq.store.jobs import JobStore
from memq.store.sessions import message_id, summary_id
from worker.facts import as_memory_text, extract_facts
from worker.prompting import Turn

log = logging.getLogger("memq.worker.sessions")

MAX_TURNS_READ = 400
SUMMARY_CLAIM_S = 600
"""A rolling-summary job not done by then may be scheduled again."""

ScheduleJob = Callable[[str, SummarizeJobRequest], object]
"""Records and sends a new job for a tenant (the worker's `memq.broker.dispatch`)."""


@dataclass
class SessionContext:
    """What a chat job sees of its session: the turns not yet summarized (oldest first)
    and the rolling summary of the ones before."""

    turns: list[Turn] = field(default_factory=list)
    summary: str | None = None


@dataclass
class SessionBook:
    memory: MemoryClient
    store: JobStore
    count_tokens: Callable[[str], int]
    summary_budget: int
    """Tokens of a session's unsummarized turns past which its oldest are summarized."""
    recent_turns: int
    """The newest turns, never folded into the summary."""
    schedule: ScheduleJob

    def commit(
        self,
        tenant: str,
        job_id: str,
        request: JobRequest,
        result: JobResult,
        write: Callable[[], bool],
    ) -> bool:
        """Commit a job's result with `write` (True when it wrote it), with the session's
        bookkeeping around it: a chat turn is written back before (a crash in between
        writes the same turns again) and follows the committed outcome when `write` found
        another one; a committed result's follow-ups run after (`_after_success`)."""
        keeps_turns = (
            isinstance(request, ChatJobRequest) and request.session_id and request.write_back
        )
        if keeps_turns:
            assert isinstance(request, ChatJobRequest)
            self.write_back(tenant, job_id, request, result)
        if not write():
            if keeps_turns:
                self._settle_turns(tenant, job_id)
            return False
        self._after_success(tenant, request, result)
        return True

    def _after_success(self, tenant: str, request: JobRequest, result: JobResult) -> None:
        """A finished rolling summary is kept; a chat turn remembers the user's facts and,
        when it made the session long enough, schedules its next summary."""
        try:
            if isinstance(request, SummarizeJobRequest) and request.session_summary:
                self.store_summary(tenant, request.session_summary, result.text)
            if isinstance(request, ChatJobRequest) and request.remember_facts:
                self.remember_facts(tenant, request)
            if isinstance(request, ChatJobRequest) and request.session_id:
                due = self.summary_due(tenant, request.session_id)
                if due is not None:
                    self.schedule(tenant, due)
        except MemqError as exc:
            # The job itself succeeded; the summary is scheduled again by a later turn.
            log.warning("session bookkeeping after job failed: %s", exc)

    def _settle_turns(self, tenant: str, job_id: str) -> None:
        """The session's turns follow the job's committed outcome: none for a cancelled or
        failed job, the committed reply for one another attempt finished first."""
        final = self.store.get(tenant, job_id)
        if final is None:
            return
        request = final.request
        if final.status == JobStatus.succeeded and final.result is not None:
            assert isinstance(request, ChatJobRequest)
            self.write_back(tenant, job_id, request, final.result)
        elif final.status != JobStatus.succeeded:
            self.undo(tenant, job_id)

    def context(self, tenant: str, session_id: str) -> SessionContext:
        _, through = self.store.sessions.state(tenant, session_id)
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

    def remember_facts(self, tenant: str, request: ChatJobRequest) -> list[str]:
        """Keep the user's first-person statements in `user:{id}` (deduplicated by the
        memory service, so a redelivered job adds nothing)."""
        if not request.user_id:
            return []
        kept = []
        for sentence in extract_facts(request.prompt):
            memory = MemoryCreate(
                namespace=user_namespace(request.user_id),
                text=as_memory_text(sentence),
                kind=MemoryKind.fact,
                source=request.session_id,
            )
            kept.append(self.memory.add(tenant, memory.model_dump(mode="json")).id)
        return kept

    def write_back(
        self, tenant: str, job_id: str, request: ChatJobRequest, result: JobResult
    ) -> list[str]:
        """Store the job's user message and reply as the session's next two turns."""
        assert request.session_id is not None
        first = self.store.sessions.reserve_turns(tenant, request.session_id, job_id, 2)
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

    def summary_due(self, tenant: str, session_id: str) -> SummarizeJobRequest | None:
        """The summarize job that folds the session's oldest unsummarized turns (all but
        the `recent_turns` newest) into its rolling summary, when they pass
        `summary_budget` tokens and no such job is already on its way; else None."""
        context = self.context(tenant, session_id)
        foldable = context.turns[: max(len(context.turns) - self.recent_turns, 0)]
        if not foldable:
            return None
        tokens = sum(self.count_tokens(t.content) for t in context.turns)
        if tokens <= self.summary_budget or not self.store.sessions.claim_summary(
            tenant, session_id, SUMMARY_CLAIM_S
        ):
            return None
        lines = (
            [f"Summary of the conversation so far: {context.summary}"] if context.summary else []
        )
        for turn in foldable:
            lines.append(f"{'User' if turn.role == ChatRole.user else 'Assistant'}: {turn.content}")
        through = self._turn_of(tenant, session_id, foldable[-1])
        return SummarizeJobRequest(
            text="\n".join(lines),
            sentences=4,
            priority=Priority.low,
            session_summary=SessionSummaryTarget(session_id=session_id, through_turn=through),
        )

    def _turn_of(self, tenant: str, session_id: str, turn: Turn) -> int:
        assert turn.memory_id is not None
        memory = self.memory.get(tenant, turn.memory_id)
        return int(memory.metadata.get("turn", 1)) if memory else 1

    def store_summary(self, tenant: str, target: SessionSummaryTarget, text: str) -> None:
        """Keep a finished summarize job's text as the session's rolling summary (a new
        version of one memory), then mark the turns it covers."""
        memory = MemoryCreate(
            namespace=session_namespace(target.session_id),
            text=text if text.strip() else "(no summary)",
            kind=MemoryKind.summary,
            metadata={"through_turn": target.through_turn},
        )
        self.memory.put(tenant, summary_id(target.session_id), memory)
        self.store.sessions.summarized(tenant, target.session_id, target.through_turn)

    def undo(self, tenant: str, job_id: str) -> None:
        """Remove a job's written-back turns (its commit found it cancelled)."""
        for role in (ChatRole.user, ChatRole.assistant):
            self.memory.delete(tenant, message_id(job_id, role))
