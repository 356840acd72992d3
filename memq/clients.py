"""HTTP clients: the memory-service client used by the worker, and the memq SDK."""

from __future__ import annotations

import time
from typing import Any

import httpx
from tenacity import retry, retry_if_exception_type, stop_after_attempt, wait_exponential

from memq.contracts import (
    JobAccepted,
    JobPublic,
    MemoryCreate,
    MemoryFilter,
    MemoryKind,
    MemoryListResponse,
    MemoryPublic,
    MemorySearchRequest,
    MemorySearchResponse,
)
from memq.errors import APIError, MemoryRequestRejected, MemoryUnavailable
from memq.log_context import JOB_ID_HEADER
from memq.logs import job_id_var

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


class MemqClient:
    """Python SDK for the memq gateway."""

    def __init__(self, base_url: str = "http://127.0.0.1:8000", api_key: str | None = None) -> None:
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = httpx.Client(base_url=base_url, timeout=30.0, headers=headers)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> MemqClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        resp = self._http.request(method, path, **kwargs)
        body = resp.json() if resp.content else None
        if resp.status_code >= 400:
            if isinstance(body, dict):
                code, message = str(body.get("error", "http_error")), str(body.get("message"))
            else:
                code, message = "http_error", str(body)
            raise APIError(resp.status_code, code, message, body)
        return body

    def add_memory(self, namespace: str, text: str, **fields: Any) -> MemoryPublic:
        body = {"namespace": namespace, "text": text, **fields}
        return MemoryPublic.model_validate(self._call("POST", "/v1/memories", json=body))

    def submit(self, job: dict[str, Any]) -> JobAccepted:
        return JobAccepted.model_validate(self._call("POST", "/v1/jobs", json=job))

    def get(self, job_id: str) -> JobPublic:
        return JobPublic.model_validate(self._call("GET", f"/v1/jobs/{job_id}"))

    def wait(self, job_id: str, timeout: float = 300.0, poll: float = 0.2) -> JobPublic:
        deadline = time.monotonic() + timeout
        while True:
            job = self.get(job_id)
            if job.status.terminal:
                return job
            if time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} still {job.status} after {timeout:.0f}s")
            time.sleep(poll)
