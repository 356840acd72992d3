"""Chat sessions: a session's transcript and rolling summary; forgetting a session."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request

from gateway.api.deps import Tenant
from gateway.services.sessions import SessionService
from memq.contracts import ErrorResponse, SessionForgotten, SessionId, SessionPublic

router = APIRouter(prefix="/v1/sessions", tags=["sessions"])
_errors: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse} for code in (401, 404, 422, 503)
}


def get_sessions(request: Request) -> SessionService:
    service: SessionService = request.app.state.sessions
    return service


Sessions = Annotated[SessionService, Depends(get_sessions)]


@router.get("/{session_id}", response_model=SessionPublic, responses=_errors)
async def read_session(session_id: SessionId, tenant: Tenant, sessions: Sessions) -> SessionPublic:
    """The session's turns (oldest first) and its rolling summary."""
    return await sessions.read(tenant, session_id)


@router.delete("/{session_id}", response_model=SessionForgotten, responses=_errors)
async def forget_session(
    session_id: SessionId, tenant: Tenant, sessions: Sessions
) -> SessionForgotten:
    """Delete the session's memories and state, and cancel its unfinished chat jobs."""
    return await sessions.forget(tenant, session_id)
