"""Adapter logic: list, read and delete a tenant's adapters; check a job's adapter at the
door; mark adapters stale when their namespace is forgotten (memq.store.adapters does the
keys)."""

from __future__ import annotations

import logging

from memq.contracts import (
    AdapterDeleted,
    AdapterListResponse,
    AdapterPublic,
    ConsolidateJobRequest,
    JobRequest,
)
from memq.store.adapters import AdapterIncompatible, AdapterRegistry
from memq.store.jobs import JobStore

log = logging.getLogger("memq.gateway.adapters")


class AdapterService:
    def __init__(self, registry: AdapterRegistry, store: JobStore) -> None:
        self.registry = registry
        self.store = store

    @classmethod
    def from_store(cls, store: JobStore, prefix: str) -> AdapterService:
        return cls(AdapterRegistry(store.r, prefix), store)

    def list(self, tenant: str) -> AdapterListResponse:
        return self.registry.listing(tenant)

    def get(self, tenant: str, name: str) -> AdapterPublic:
        return self.registry.get(tenant, name)

    def delete(self, tenant: str, name: str, version: int | None) -> AdapterDeleted:
        deleted = self.registry.delete(tenant, name, version)
        log.info("adapter %s: versions %s deleted", name, deleted.deleted_versions)
        return deleted

    def check(self, tenant: str, request: JobRequest) -> None:
        """A job's adapter exists for this tenant (404 `adapter_not_found`, the same for
        another tenant's) and was trained on the served model (422 `adapter_incompatible`),
        so the job is refused before it waits in a queue."""
        if isinstance(request, ConsolidateJobRequest) or request.adapter is None:
            return
        found = self.registry.resolve(tenant, request.adapter)
        served = self.store.model_info()
        if served is not None and found.base_model != served.name:
            raise AdapterIncompatible(
                f"adapter {request.adapter.name!r} v{found.version} was trained on "
                f"{found.base_model}; the workers serve {served.name}: consolidate again"
            )

    def forget_namespace(self, tenant: str, namespace: str) -> int:
        """The namespace was forgotten: the adapter versions trained on it are stale."""
        return self.registry.mark_stale(tenant, namespace)
