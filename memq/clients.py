"""HTTP clients: the memory-service client used by the worker; the memq SDK is `memq.sdk`
(`memq.Client`), re-exported here under its old name `MemqClient`."""

from __future__ import annotations

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
from memq.sdk import Client

TENANT_HEADER = "X-Memq-Tenant"

_transient = retry_if_exception_type(MemoryUnavailable)


class MemoryClient:
    """Service-to-service client of the memory service (shared token + tenant header)."""

    def __init__(self, base_url: str, service_token: str, timeout: float = 10.0) -> None:
        self._http = httpx.Client(
            base_url=base_url,
            timeout=timeout,
            headers={"Authorization": f"Bearer {service_token}"},
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
        headers = {TENANT_HEADER: tenant}
        job_id = job_id_var.get()
        if job_id is not None:
            headers[JOB_ID_HEADER] = job_id  # the memory service logs it with the request
        try:
            resp = self._http.request(method, path, json=body, params=params, headers=headers)
        except httpx.TransportError as exc:
            raise MemoryUnavailable(f"memory service unreachable: {exc!r}") from exc
        if resp.status_code >= 500:
            raise MemoryUnavailable(f"memory service {resp.status_code}: {resp.text[:200]}")
        if resp.status_code == 404 and method == "GET":
            return None
        if resp.status_code >= 400:
            raise MemoryRequestRejected(f"memory service {resp.status_code}: {resp.text[:300]}")
        return resp.json()

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


# The SDK moved to memq.sdk (`memq.Client`); the old name keeps working.
MemqClient = Client
