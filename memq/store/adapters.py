"""The adapter registry: a tenant's LoRA adapters (implicit memory), in Redis.

An adapter is a name with versions; each version is what one consolidation job trained on
a namespace's memories. The registry keeps each version's record (`AdapterVersionRecord`:
what it learned from, how, where its files are) and whether it went stale (its namespace
was forgotten since). Keys (memq.store.keys) are `adapter`, `adapters` and
`forgotten_namespaces`; every key carries the tenant, so another tenant's adapter is
exactly as unknown as a name nobody used.

Version numbers are handed out once per job (`reserve_version` is idempotent per job id), so
a job that runs twice (a slow worker, not a dead one) makes one version, not two.

AdapterNotFound (404 `adapter_not_found`) and AdapterIncompatible (422
`adapter_incompatible`) are branches of memq.errors' NotFound and InvalidInput.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import redis

from memq.contracts import (
    AdapterDeleted,
    AdapterListResponse,
    AdapterPublic,
    AdapterRef,
    AdapterVersionPublic,
)
from memq.errors import InvalidInput, NotFound
from memq.settings import DEFAULT_KEY_PREFIX
from memq.store import lua
from memq.store.keys import Keys, as_text

VERSION_FIELD = "v"
STALE_FIELD = "stale:"
JOB_FIELD = "job:"
NEXT_FIELD = "next"


class AdapterNotFound(NotFound):
    code = "adapter_not_found"


class AdapterIncompatible(InvalidInput):
    code = "adapter_incompatible"


class AdapterVersionRecord(AdapterVersionPublic):
    """A version as stored: the public view plus where its files are."""

    path: str

    def public(self) -> AdapterVersionPublic:
        return AdapterVersionPublic.model_validate(self.model_dump(exclude={"path"}))


def tenant_dir_name(tenant: str) -> str:
    """The tenant's directory under the adapter root (`.` and `..` are tenant names the
    pattern allows but not directory names)."""
    return tenant if tenant.strip(".") else tenant.replace(".", "%2E")


def version_dir(root: Path, tenant: str, name: str, version: int) -> Path:
    """Where a version's files live: `{root}/{tenant}/{name}/v{n}`."""
    return root / tenant_dir_name(tenant) / name / f"v{version}"


def _utcnow() -> datetime:
    return datetime.now(UTC)


class AdapterRegistry:
    def __init__(self, client: redis.Redis, prefix: str = DEFAULT_KEY_PREFIX) -> None:
        self.r = client
        self.keys = Keys(prefix)
        self._reserve = self.r.register_script(lua.ADAPTER_RESERVE_VERSION)

    # writes (the worker) ------------------------------------------------------------------
    def reserve_version(self, tenant: str, name: str, job_id: str) -> int:
        """The version number `job_id` makes of adapter `name` (the same on every call)."""
        keys = [self.keys.adapter(tenant, name), self.keys.adapters(tenant)]
        return int(self._reserve(keys=keys, args=[job_id, _utcnow().timestamp(), name]))

    def put(self, tenant: str, name: str, record: AdapterVersionRecord, started: datetime) -> None:
        """Register a trained version. When its namespace was forgotten after the training
        started, it is stale from the start."""
        key = self.keys.adapter(tenant, name)
        pipe = self.r.pipeline(transaction=True)
        pipe.hset(key, f"{VERSION_FIELD}{record.version}", record.model_dump_json())
        pipe.zadd(self.keys.adapters(tenant), {name: _utcnow().timestamp()}, nx=True)
        pipe.hget(self.keys.forgotten_namespaces(tenant), record.namespace)
        forgotten_at = pipe.execute()[-1]
        if forgotten_at is not None and float(forgotten_at) >= started.timestamp():
            at = datetime.fromtimestamp(float(forgotten_at), UTC)
            self._stale(key, record.version, at, _forgotten_reason(record.namespace))

    # reads ----------------------------------------------------------------------------------
    def versions(self, tenant: str, name: str) -> list[AdapterVersionRecord]:
        """Every trained version of `name`, newest first, with its staleness."""
        raw: dict[bytes, bytes] = self.r.hgetall(self.keys.adapter(tenant, name))  # type: ignore[assignment]
        return _parse_versions(raw)

    def resolve(self, tenant: str, ref: AdapterRef) -> AdapterVersionRecord:
        """The version `ref` names (its latest when it names none); AdapterNotFound when the
        tenant has no such adapter or version."""
        versions = self.versions(tenant, ref.name)
        if not versions:
            raise AdapterNotFound(
                f"no adapter {ref.name!r} for this API key's tenant; GET /v1/adapters lists "
                "them, a consolidate job makes one"
            )
        if ref.version is None:
            return versions[0]
        for found in versions:
            if found.version == ref.version:
                return found
        have = ", ".join(str(v.version) for v in reversed(versions))
        raise AdapterNotFound(
            f"adapter {ref.name!r} has no version {ref.version}; its versions are {have}"
        )

    def get(self, tenant: str, name: str) -> AdapterPublic:
        versions = self.versions(tenant, name)
        if not versions:
            raise AdapterNotFound(
                f"no adapter {name!r} for this API key's tenant; GET /v1/adapters lists them"
            )
        return _public(name, versions)

    def listing(self, tenant: str) -> AdapterListResponse:
        names = self._names(tenant)
        pipe = self.r.pipeline(transaction=False)
        for name in names:
            pipe.hgetall(self.keys.adapter(tenant, name))
        items = []
        for name, raw in zip(names, pipe.execute(), strict=True):
            versions = _parse_versions(raw)
            if versions:  # a version still training, or a deletion under way, lists nothing
                items.append(_public(name, versions))
        return AdapterListResponse(items=sorted(items, key=lambda a: a.name))

    # deletion and staleness (the gateway) ---------------------------------------------------
    def delete(self, tenant: str, name: str, version: int | None = None) -> AdapterDeleted:
        """Remove every version of `name` (or one) from the registry and their files from
        disk where this process can reach them; AdapterNotFound when there is none."""
        versions = self.versions(tenant, name)
        doomed = [v for v in versions if version is None or v.version == version]
        if not doomed:
            if versions:
                have = ", ".join(str(v.version) for v in reversed(versions))
                raise AdapterNotFound(
                    f"adapter {name!r} has no version {version}; its versions are {have}"
                )
            raise AdapterNotFound(
                f"no adapter {name!r} for this API key's tenant; GET /v1/adapters lists them"
            )
        key = self.keys.adapter(tenant, name)
        pipe = self.r.pipeline(transaction=True)
        if len(doomed) == len(versions):
            pipe.delete(key)
            pipe.zrem(self.keys.adapters(tenant), name)
        else:
            for v in doomed:
                pipe.hdel(key, f"{VERSION_FIELD}{v.version}", f"{STALE_FIELD}{v.version}")
        pipe.execute()
        for v in doomed:
            _remove_files(Path(v.path), tenant, name, v.version)
        return AdapterDeleted(name=name, deleted_versions=sorted(v.version for v in doomed))

    def mark_stale(self, tenant: str, namespace: str) -> int:
        """The namespace was forgotten: every version trained on it is stale from now (and
        a training under way is stale when it registers). Returns how many were marked."""
        now = _utcnow()
        self.r.hset(self.keys.forgotten_namespaces(tenant), namespace, repr(now.timestamp()))
        marked = 0
        for name in self._names(tenant):
            key = self.keys.adapter(tenant, name)
            for v in self.versions(tenant, name):
                if v.namespace == namespace and not v.stale:
                    self._stale(key, v.version, now, _forgotten_reason(namespace))
                    marked += 1
        return marked

    def _names(self, tenant: str) -> list[str]:
        found: Any = self.r.zrange(self.keys.adapters(tenant), 0, -1)
        return [as_text(n) for n in found]

    def _stale(self, key: str, version: int, at: datetime, reason: str) -> None:
        value = json.dumps({"at": at.isoformat(), "reason": reason})
        self.r.hsetnx(key, f"{STALE_FIELD}{version}", value)


def _forgotten_reason(namespace: str) -> str:
    return f"namespace {namespace!r} was forgotten (DELETE /v1/namespaces/{namespace})"


def _parse_versions(raw: dict[Any, Any]) -> list[AdapterVersionRecord]:
    fields = {as_text(k): as_text(v) for k, v in raw.items()}
    found: list[AdapterVersionRecord] = []
    for field, value in fields.items():
        if not field.startswith(VERSION_FIELD) or not field[1:].isdigit():
            continue
        record = AdapterVersionRecord.model_validate_json(value)
        stale = fields.get(f"{STALE_FIELD}{record.version}")
        if stale is not None:
            data = json.loads(stale)
            record.stale = True
            record.stale_at = datetime.fromisoformat(data["at"])
            record.stale_reason = data["reason"]
        found.append(record)
    return sorted(found, key=lambda r: r.version, reverse=True)


def _public(name: str, versions: Iterable[AdapterVersionRecord]) -> AdapterPublic:
    public = [v.public() for v in versions]
    latest = public[0]
    return AdapterPublic(name=name, latest=latest.version, stale=latest.stale, versions=public)


def _remove_files(path: Path, tenant: str, name: str, version: int) -> None:
    """Delete a version's directory, only when it is where the registry says versions live
    (a record is never a licence to delete an arbitrary path)."""
    expected = (tenant_dir_name(tenant), name, f"v{version}")
    if path.is_absolute() and path.parts[-3:] == expected and path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
