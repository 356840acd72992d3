"""Chat-session conventions shared by the worker (which writes turns) and the gateway
(which reads and forgets sessions): namespaces and the ids of turn and summary memories.

Turn ids derive from the job id, so a redelivered job writes the same memories again
instead of new ones; the summary's id derives from the session id, so each rolling summary
is a new version of one memory.
"""

from __future__ import annotations

import uuid

from memq.contracts import ChatRole, session_namespace, user_namespace

_IDS = uuid.UUID("0c5d1f7e-6a43-4b8e-9f21-7d3e2b9a1c40")

__all__ = ["message_id", "session_namespace", "summary_id", "user_namespace"]


def message_id(job_id: str, role: ChatRole) -> str:
    return str(uuid.uuid5(_IDS, f"{job_id}/{role.value}"))


def summary_id(session_id: str) -> str:
    return str(uuid.uuid5(_IDS, f"summary/{session_id}"))
