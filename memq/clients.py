"""HTTP clients: the memory-service client used by the worker, and the memq SDK."""

from __future__ import annotations

import time
from typing import Any

import httpx
from tenacity import retry, retry_if_exception_type, stop_after_attempt, wait_exponential

from memq.contracts import (
    JobAccepted,
    JobPublic,
    MemoryPublic,
    MemorySearchRequest,
    MemorySearchResponse,
)
from memq.errors import APIError, MemoryRequestRejected, MemoryUnavailable

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

    def _post(self, tenant: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
        try:
            resp = self._http.post(path, json=body, headers={TENANT_HEADER: tenant})
        except httpx.TransportError as exc:
            raise MemoryUnavailable(f"memory service unreachable: {exc!r}") from exc
        if resp.status_code >= 500:
            raise MemoryUnavailable(f"memory service {resp.status_code}: {resp.text[:200]}")
        if resp.status_code >= 400:
            raise MemoryRequestRejected(f"memory service {resp.status_code}: {resp.text[:300]}")
        data: dict[str, Any] = resp.json()
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
