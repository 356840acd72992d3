"""How a memory maps to a store point: ids, content hashes, payload layout, filters."""

from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ValidationError

from memory_service.store.base import Condition, Match, MatchAny, Payload, Range, Where
from memq.contracts import (
    MemoryFilter,
    MemoryKind,
    MemoryPublic,
    MemoryRecord,
    MemoryVersion,
    MetadataCondition,
)

_POINT_NAMESPACE = uuid.UUID("6f1c3b9e-2a51-4d8e-9c0f-5b7a1e3d4c21")


def point_id(tenant: str, memory_id: str) -> str:
    """Store key of a memory. Derived from the tenant, so one tenant's ids (even replayed
    through an import) can never address another tenant's point."""
    return str(uuid.uuid5(_POINT_NAMESPACE, f"{tenant}\x1f{memory_id}"))


def content_hash(text: str) -> str:
    """Hash of the text with whitespace runs collapsed: the exact-duplicate key."""
    return hashlib.sha256(" ".join(text.split()).encode()).hexdigest()


SUPERSEDED = "superseded"
"""The payload's `validity` of a memory that is no longer current."""


def utcnow() -> datetime:
    return datetime.now(UTC)


def to_payload(record: MemoryRecord) -> Payload:
    payload: Payload = {
        "tenant": record.tenant,
        "memory_id": record.id,
        "namespace": record.namespace,
        "kind": record.kind.value,
        "text": record.text,
        "metadata": record.metadata,
        "source": record.source,
        "created_at": record.created_at.isoformat(),
        "updated_at": record.updated_at.isoformat(),
        "expires_at": record.expires_at.isoformat() if record.expires_at else None,
        "created_ts": record.created_at.timestamp(),
        "version": record.version,
        "content_hash": record.content_hash,
        "history": [v.model_dump(mode="json") for v in record.history],
    }
    if record.expires_at is not None:
        payload["expires_ts"] = record.expires_at.timestamp()
    valid_from = record.valid_from or record.created_at
    payload["valid_from"] = valid_from.isoformat()
    payload["valid_from_ts"] = valid_from.timestamp()
    payload["supersedes"] = list(record.supersedes)
    if record.superseded_by is not None:
        # A keyword, not a bool: the embedded engine's match on booleans does not find them.
        payload["validity"] = SUPERSEDED
        payload["superseded_by"] = record.superseded_by
        payload["valid_to"] = record.valid_to.isoformat() if record.valid_to else None
        payload["valid_to_ts"] = (record.valid_to or record.updated_at).timestamp()
        if record.supersession is not None:
            payload["supersession"] = record.supersession.model_dump(mode="json")
    return payload


class _StoredVersion(BaseModel):
    version: int
    text: str
    kind: MemoryKind
    metadata: dict[str, Any] = {}
    source: str | None = None
    content_hash: str
    updated_at: datetime


def from_payload(payload: Payload) -> MemoryRecord:
    fields: dict[str, Any] = {
        k: v for k, v in payload.items() if not k.endswith("_ts") and k != "validity"
    }
    fields["id"] = fields.pop("memory_id")
    try:
        return MemoryRecord.model_validate(fields)
    except ValidationError:
        return _stored_before_the_bounds(fields)


def _stored_before_the_bounds(fields: dict[str, Any]) -> MemoryRecord:
    """A memory written before the current write bounds (deeper metadata, a longer history,
    an id an old import took) stays readable, updatable, exportable and deletable; importing
    its export applies the bounds, with a 422 naming what to fix."""
    public = MemoryPublic.model_validate(fields)
    history = [
        MemoryVersion.model_construct(**_StoredVersion.model_validate(v).model_dump())
        for v in fields.get("history") or []
    ]
    return MemoryRecord.model_construct(**public.model_dump(), history=history)


def alive(now: datetime) -> Condition:
    return Where(must_not=[Range("expires_ts", lte=now.timestamp())])


def current() -> Condition:
    """Memories nobody superseded (a memory stored before supersession existed is current)."""
    return Where(must_not=[Match("validity", SUPERSEDED)])


def valid_at(moment: datetime) -> Condition:
    """Memories that were true at `moment`: valid from then or earlier, not ended by then."""
    ts = moment.timestamp()
    return Where(must=[Range("valid_from_ts", lte=ts)], must_not=[Range("valid_to_ts", lte=ts)])


def namespace_where(
    namespace: str,
    now: datetime,
    *,
    kinds: list[MemoryKind] | None = None,
    created_after: datetime | None = None,
    created_before: datetime | None = None,
    metadata: MemoryFilter | None = None,
    as_of: datetime | None = None,
    include_superseded: bool = True,
) -> Where:
    """The live memories of a namespace matching the filters; with `as_of`, those valid at
    that time; with `include_superseded=False`, only current ones."""
    must: list[Condition] = [Match("namespace", namespace), alive(now)]
    if as_of is not None:
        must.append(valid_at(as_of))
    elif not include_superseded:
        must.append(current())
    if kinds:
        must.append(MatchAny("kind", [k.value for k in kinds]))
    if created_after or created_before:
        must.append(
            Range(
                "created_ts",
                gte=created_after.timestamp() if created_after else None,
                lt=created_before.timestamp() if created_before else None,
            )
        )
    if metadata is not None:
        must.append(metadata_where(metadata))
    return Where(must=must)


def metadata_where(f: MemoryFilter) -> Where:
    """User filters only ever address keys under `metadata.`, so no crafted key can reach the
    tenant or namespace fields; and they nest under the tenant `must`, so OR cannot escape."""

    def one(c: MetadataCondition | MemoryFilter) -> Condition:
        if isinstance(c, MemoryFilter):
            return metadata_where(c)
        key = f"metadata.{c.key}"
        if c.eq is not None:
            return Match(key, c.eq)
        if c.any is not None:
            return MatchAny(key, c.any)
        return Range(key, gt=c.gt, gte=c.gte, lt=c.lt, lte=c.lte)

    return Where(
        must=[one(c) for c in f.all_of],
        should=[one(c) for c in f.any_of],
        must_not=[one(c) for c in f.none_of],
    )
