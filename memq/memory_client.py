"""The one client of the memory service, and the one mapping of what can go wrong on the way.

The worker reads and writes memories with `MemoryClient` (blocking, reads retried); the
gateway forwards its memory routes and reads sessions with `AsyncMemoryClient`. Both
authenticate with the shared service token and send, on every request, the caller's tenant
(`X-Memq-Tenant`, from authentication, never from a request body) and, inside a job, the
job's id (`X-Memq-Job-Id`: the memory service logs the request with it).

What a caller sees:

    the service unreachable (connect error, timeout)  MemoryUnavailable (503: retry later)
    a 5xx answer                                      MemoryUnavailable
    a 404 answer to a GET                             None
    any other 4xx answer                              MemoryRequestRejected (422)

except `AsyncMemoryClient.forward`, which the gateway's memory routes use: only the first
rule applies there, and the answer, whatever its status, is relayed as the service gave it.
"""

from __future__ import annotations

from collections.abc import AsyncIterable
from typing import Any

import httpx
from tenacity import retry, retry_if_exception_type, stop_after_attempt, wait_exponential

from memq.contracts import (
    MemoryCreate,
    MemoryFilter,
    MemoryKind,
    MemoryListResponse,
    MemoryPublic,
    MemorySearchRequest,
    MemorySearchResponse,
)
from memq.errors import MemoryRequestRejected, MemoryUnavailable
from memq.log_context import JOB_ID_HEADER
from memq.logs import job_id_var

TENANT_HEADER = "X-Memq-Tenant"

_transient = retry_if_exception_type(MemoryUnavailable)


def _headers(tenant: str, content_type: str | None = None) -> dict[str, str]:
    headers = {TENANT_HEADER: tenant}
    job_id = job_id_var.get()
    if job_id is not None:
        headers[JOB_ID_HEADER] = job_id
    if content_type is not None:
        headers["content-type"] = content_type
    return headers


def _unreachable(exc: httpx.TransportError) -> MemoryUnavailable:
    return MemoryUnavailable(f"the memory service is unreachable: {exc!r}")


def _answer(method: str, resp: httpx.Response) -> Any:
    """The answer's JSON, None for a GET that found nothing, or the error it maps to."""
    if resp.status_code >= 500:
        raise MemoryUnavailable(f"memory service {resp.status_code}: {resp.text[:200]}")
    if resp.status_code == 404 and method == "GET":
        return None
    if resp.status_code >= 400:
        raise MemoryRequestRejected(f"memory service {resp.status_code}: {resp.text[:300]}")
    return resp.json()


class MemoryClient:
    """The worker's client: blocking; its idempotent calls are retried while the service is
    unavailable."""

    def __init__(
        self,
        base_url: str,
        service_token: str,
        timeout: float = 10.0,
        *,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._http = httpx.Client(
            base_url=base_url,
            timeout=timeout,
            headers={"Authorization": f"Bearer {service_token}"},
            transport=transport,
        )

    def close(self) -> None:
        self._http.close()

    def _request(
        self,
        tenant: str,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        params: dict[str, Any] | None = None,
    ) -> Any:
        try:
            resp = self._http.request(
                method, path, json=body, params=params, headers=_headers(tenant)
            )
        except httpx.TransportError as exc:
            raise _unreachable(exc) from exc
        return _answer(method, resp)

    def _post(self, tenant: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
        data: dict[str, Any] = self._request(tenant, "POST", path, body)
        return data

    @retry(
        retry=_transient,
        stop=stop_after_attempt(4),
        wait=wait_exponential(multiplier=0.2, max=2),
        reraise=True,
    )
    def search(self, tenant: str, request: MemorySearchRequest) -> MemorySearchResponse:
        data = self._post(tenant, "/v1/memories/search", request.model_dump(exclude_none=True))
        return MemorySearchResponse.model_validate(data)

    def add(self, tenant: str, body: dict[str, Any]) -> MemoryPublic:
        return MemoryPublic.model_validate(self._post(tenant, "/v1/memories", body))

    @retry(
        retry=_transient,
        stop=stop_after_attempt(4),
        wait=wait_exponential(multiplier=0.2, max=2),
        reraise=True,
    )
    def put(self, tenant: str, memory_id: str, body: MemoryCreate) -> MemoryPublic:
        """Create the memory under this id, or write a new version of it (idempotent)."""
        data = self._request(
            tenant, "PUT", f"/v1/memories/{memory_id}", body.model_dump(mode="json")
        )
        return MemoryPublic.model_validate(data)

    @retry(
        retry=_transient,
        stop=stop_after_attempt(4),
        wait=wait_exponential(multiplier=0.2, max=2),
        reraise=True,
    )
    def delete(self, tenant: str, memory_id: str) -> bool:
        """Delete a memory; False when there was none."""
        try:
            self._request(tenant, "DELETE", f"/v1/memories/{memory_id}")
        except MemoryRequestRejected as exc:
            if " 404:" in str(exc):
                return False
            raise
        return True

    @retry(
        retry=_transient,
        stop=stop_after_attempt(4),
        wait=wait_exponential(multiplier=0.2, max=2),
        reraise=True,
    )
    def get(self, tenant: str, memory_id: str) -> MemoryPublic | None:
        data = self._request(tenant, "GET", f"/v1/memories/{memory_id}")
        return None if data is None else MemoryPublic.model_validate(data)

    @retry(
        retry=_transient,
        stop=stop_after_attempt(4),
        wait=wait_exponential(multiplier=0.2, max=2),
        reraise=True,
    )
    def list_all(
        self,
        tenant: str,
        namespace: str,
        *,
        kinds: list[MemoryKind] | None = None,
        where: MemoryFilter | None = None,
        limit: int = 1000,
    ) -> list[MemoryPublic]:
        """Every memory of a namespace that matches (pages followed), up to `limit`."""
        found: list[MemoryPublic] = []
        cursor: str | None = None
        while len(found) < limit:
            params: dict[str, Any] = {"namespace": namespace, "limit": min(1000, limit)}
            if kinds:
                params["kind"] = [k.value for k in kinds]
            if where is not None:
                params["metadata"] = where.model_dump_json(exclude_defaults=True)
            if cursor:
                params["cursor"] = cursor
            page = MemoryListResponse.model_validate(
                self._request(tenant, "GET", "/v1/memories", params=params)
            )
            found += page.items
            cursor = page.next_cursor
            if cursor is None:
                break
        return found[:limit]


class AsyncMemoryClient:
    """The gateway's client: built once in its lifespan, shared by every request."""

    def __init__(
        self,
        base_url: str,
        service_token: str,
        timeout: float = 10.0,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._http = httpx.AsyncClient(
            base_url=base_url,
            timeout=timeout,
            headers={"Authorization": f"Bearer {service_token}"},
            transport=transport,
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    async def request(
        self, tenant: str, method: str, path: str, *, params: dict[str, Any] | None = None
    ) -> Any:
        """The answer's JSON, mapped as the module docstring says."""
        try:
            resp = await self._http.request(method, path, params=params, headers=_headers(tenant))
        except httpx.TransportError as exc:
            raise _unreachable(exc) from exc
        return _answer(method, resp)

    async def forward(
        self,
        tenant: str,
        method: str,
        path: str,
        *,
        body: Any = None,
        params: dict[str, Any] | None = None,
        content: AsyncIterable[bytes] | None = None,
        content_type: str | None = None,
        stream: bool = False,
    ) -> httpx.Response:
        """Send a request on the tenant's behalf and return the answer whatever its status
        (`MemoryUnavailable` only when the service does not answer). Parameters that are None
        are left out. With `stream`, the body is not read: the caller closes the answer."""
        request = self._http.build_request(
            method,
            path,
            json=body,
            content=content,
            params={k: v for k, v in (params or {}).items() if v is not None},
            headers=_headers(tenant, content_type),
        )
        try:
            return await self._http.send(request, stream=stream)
        except httpx.TransportError as exc:
            raise _unreachable(exc) from exc

    async def live(self, timeout: float) -> int:
        """The status of the service's `/livez` (an `httpx.HTTPError` when it does not
        answer within `timeout`): what the gateway's readiness check reports."""
        resp = await self._http.get("/livez", timeout=timeout)
        return resp.status_code
