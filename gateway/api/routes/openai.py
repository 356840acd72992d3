"""OpenAI-compatible endpoints: `/v1/completions`, `/v1/chat/completions`, `/v1/models`.

Point the official `openai` client at the gateway (`base_url=".../v1"`, `api_key=` a memq
key) and use memq's options through `extra_body`."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from sse_starlette import EventSourceResponse

from gateway.api.deps import Tenant
from gateway.services.openai import OpenAIService
from memq.contracts.openai import ChatCompletionRequest, CompletionRequest

router = APIRouter(tags=["openai"])

_errors: dict[int | str, dict[str, Any]] = {
    code: {"description": "OpenAI-style error: {error: {message, type, param, code}}"}
    for code in (401, 404, 413, 422, 429, 503)
}


def get_openai(request: Request) -> OpenAIService:
    service: OpenAIService = request.app.state.openai
    return service


OpenAI = Annotated[OpenAIService, Depends(get_openai)]


@router.get("/v1/models")
def list_models(_: Tenant, openai: OpenAI) -> dict[str, Any]:
    """The models the workers serve."""
    return openai.models()


@router.post("/v1/completions", responses=_errors)
async def completions(body: CompletionRequest, tenant: Tenant, openai: OpenAI) -> Any:
    """A completion, run as a `generate` job (streamed with `stream: true`)."""
    if body.stream:
        return EventSourceResponse(await openai.stream(tenant, body), ping=15)
    return JSONResponse(await openai.complete(tenant, body))


@router.post("/v1/chat/completions", responses=_errors)
async def chat_completions(body: ChatCompletionRequest, tenant: Tenant, openai: OpenAI) -> Any:
    """A chat completion, run as a `chat` job (streamed with `stream: true`); with a
    `session_id` it remembers the conversation, with `memory` it retrieves."""
    if body.stream:
        return EventSourceResponse(await openai.stream(tenant, body), ping=15)
    return JSONResponse(await openai.complete(tenant, body))
