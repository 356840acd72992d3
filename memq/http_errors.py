"""The one place where errors become HTTP answers, for every memq HTTP service (the gateway
and the memory service register through `register_error_handlers`): a `MemqError` answers its
`status_code` with memq's `ErrorResponse` body, request validation answers 422, Starlette's
own errors keep their status, anything else is a 500 with a message; paths given as
`openai_paths` answer in OpenAI's error shape instead."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from memq.contracts import ErrorResponse
from memq.contracts.openai import openai_error
from memq.errors import MemqError


def error_response(
    status: int,
    code: str,
    message: str,
    details: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body = ErrorResponse(error=code, message=message, details=details)
    return JSONResponse(body.model_dump(mode="json"), status_code=status, headers=headers)


def _where(loc: Any) -> str:
    return ".".join(str(p) for p in loc if p != "body")


def register_error_handlers(
    app: FastAPI, log: logging.Logger, openai_paths: tuple[str, ...] = ()
) -> None:
    """Paths under `openai_paths` answer in OpenAI's error shape
    (`{"error": {"message", "type", "code"}}`) so the official client reads them."""

    def answer(
        request: Request,
        status: int,
        code: str,
        message: str,
        details: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> JSONResponse:
        if openai_paths and request.url.path.startswith(openai_paths):
            param = _where(details[0]["loc"]) if details else None
            body = openai_error(status, code, message, param or None)
            return JSONResponse(body, status_code=status, headers=headers)
        return error_response(status, code, message, details, headers)

    @app.exception_handler(MemqError)
    async def _memq_error(request: Request, exc: MemqError) -> JSONResponse:
        if exc.status_code >= 500:
            log.warning("%s: %s", exc.code, exc.message)
        return answer(request, exc.status_code, exc.code, exc.message, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        details = [
            {"loc": list(e.get("loc", ())), "msg": str(e.get("msg")), "type": str(e.get("type"))}
            for e in exc.errors()
        ]
        summary = "; ".join(
            f"{_where(d['loc'])}: {d['msg']}" if _where(d["loc"]) else str(d["msg"])
            for d in details[:5]
        )
        return answer(request, 422, "validation_error", f"fix the request: {summary}", details)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 400:
            # FastAPI's answer to a body it cannot decode at all (not UTF-8, broken multipart);
            # malformed JSON is already a 422: one documented answer for both.
            message = (
                f"fix the request: the body could not be read ({exc.detail}); send UTF-8 JSON, "
                "or multipart/form-data where a route takes a file"
            )
            return answer(request, 422, "validation_error", message)
        code = {404: "not_found", 405: "method_not_allowed", 413: "request_too_large"}.get(
            exc.status_code, "http_error"
        )
        headers = dict(exc.headers) if exc.headers else None
        return answer(request, exc.status_code, code, str(exc.detail), headers=headers)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.error("unhandled error", exc_info=exc)
        return answer(request, 500, "internal_error", f"{app.title} failed; see its log")
