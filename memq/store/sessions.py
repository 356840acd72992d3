"""Chat sessions: their bookkeeping in Redis (turn numbers, the rolling summary's claim and
progress) and the ids of their memories, shared by the worker (which writes turns) and the
gateway (which reads and forgets sessions).

A session's turns and summaries are memories in the memory service (namespaces
`session_namespace` / `user_namespace` of memq.contracts). Turn ids derive from the job id,
so a redelivered job writes the same memories again instead of new ones; the summary's id
derives from the session id, so each rolling summary is a new version of one memory.

Keys (memq.store.keys): `session`.
"""

from __future__ import annotations

import uuid
from typing import Any

import redis

from memq.contracts import ChatRole
from memq.store import lua
from memq.store.keys import Keys

_IDS = uuid.UUID("0c5d1f7e-6a43-4b8e-9f21-7d3e2b9a1c40")


def message_id(job_id: str, role: ChatRole) -> str:
    return str(uuid.uuid5(_IDS, f"{job_id}/{role.value}"))


def summary_id(session_id: str) -> str:
    return str(uuid.uuid5(_IDS, f"summary/{session_id}"))


class SessionStore:
    """A session's turn numbers and its one rolling-summary claim."""

    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        self.r = client
        self.keys = keys
        self._reserve = client.register_script(lua.RESERVE_TURNS)
        self._claim = client.register_script(lua.CLAIM_SUMMARY)
        self._advance = client.register_script(lua.ADVANCE_SUMMARY)

    def reserve_turns(self, tenant: str, session_id: str, job_id: str, count: int) -> int:
        """The first of `count` consecutive turn numbers for a job's messages in a session;
        the same numbers again for the same job (a redelivery writes the same turns)."""
        first: Any = self._reserve(
            keys=[self.keys.session(tenant, session_id)], args=[f"job:{job_id}", count]
        )
        return int(first)

    def state(self, tenant: str, session_id: str) -> tuple[int, int]:
        """(turns so far, turns covered by the rolling summary)."""
        raw: Any = self.r.hmget(
            self.keys.session(tenant, session_id), "next_turn", "summarized_through"
        )
        return int(raw[0] or 0), int(raw[1] or 0)

    def claim_summary(self, tenant: str, session_id: str, ttl_s: int) -> bool:
        """One rolling-summary job per session at a time (the claim expires by itself)."""
        key = self.keys.session(tenant, session_id)
        claimed: Any = self._claim(keys=[key], args=[ttl_s])
        return bool(claimed)

    def summarized(self, tenant: str, session_id: str, through_turn: int) -> None:
        """The rolling summary now covers turns up to `through_turn` (never moves back)."""
        self._advance(keys=[self.keys.session(tenant, session_id)], args=[through_turn])

    def forget(self, tenant: str, session_id: str) -> None:
        self.r.delete(self.keys.session(tenant, session_id))
