"""File records of the OpenAI-style Files API, in Redis (their bytes are in the gateway's
file storage: gateway/storage.py).

A file's *record* (`FileRecord`: the OpenAI File object plus its tenant and, for a batch's
output and error files, the batch that writes it) is a Redis string under
`Keys.file(tenant, id)`, listed in the tenant's `Keys.files` zset: another tenant's key
simply does not exist, so its file is a 404 like an unknown id.

A batch's output and error files exist from the moment its lines start running: until
the batch is finalized their bytes are the batch's lines in Redis (memq.store.batches),
then they are written to the storage once and `stored` is set.
"""

from __future__ import annotations

import time
from typing import Any

import redis

from memq.contracts import FilePublic, FilePurpose
from memq.settings import DEFAULT_KEY_PREFIX
from memq.store.keys import Keys, as_text


class FileRecord(FilePublic):
    """The stored record: the File object plus what the API does not show."""

    tenant: str
    batch_id: str | None = None
    """Set on a batch's output and error files: the batch whose lines they hold."""
    stored: bool = True
    """False while a batch's output file is still being written (its bytes are in Redis)."""

    def public(self) -> FilePublic:
        return FilePublic.model_validate(self.model_dump(exclude={"tenant", "batch_id", "stored"}))


class FileRecords:
    """File records in Redis (one JSON string per file, a zset per tenant for listing)."""

    def __init__(self, client: redis.Redis, prefix: str = DEFAULT_KEY_PREFIX) -> None:
        self.r = client
        self.keys = Keys(prefix)

    def put(self, record: FileRecord, *, only_new: bool = False) -> bool:
        """Write the record (and list it); with `only_new`, only when it does not exist."""
        key = self.keys.file(record.tenant, record.id)
        if only_new:
            if not self.r.set(key, record.model_dump_json(), nx=True):
                return False
        else:
            self.r.set(key, record.model_dump_json())
        # Listed by the exact time it was first written (created_at is whole seconds).
        self.r.zadd(self.keys.files(record.tenant), {record.id: time.time()}, nx=True)
        return True

    def get(self, tenant: str, file_id: str) -> FileRecord | None:
        raw: Any = self.r.get(self.keys.file(tenant, file_id))
        return FileRecord.model_validate_json(raw) if raw is not None else None

    def delete(self, tenant: str, file_id: str) -> bool:
        pipe = self.r.pipeline(transaction=True)
        pipe.delete(self.keys.file(tenant, file_id))
        pipe.zrem(self.keys.files(tenant), file_id)
        deleted, _ = pipe.execute()
        return bool(deleted)

    def page(
        self,
        tenant: str,
        *,
        limit: int,
        after: str | None = None,
        newest_first: bool = True,
        purpose: FilePurpose | None = None,
    ) -> tuple[list[FileRecord], bool]:
        """A page of the tenant's files and whether more follow; `after` is the last id of
        the previous page (an id the tenant does not have starts from the beginning)."""
        ids = _page_ids(self.r, self.keys.files(tenant), after, newest_first)
        found: list[FileRecord] = []
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            raws: Any = self.r.mget([self.keys.file(tenant, i) for i in chunk])
            for raw in raws:
                if raw is None:
                    continue
                record = FileRecord.model_validate_json(raw)
                if purpose is not None and record.purpose != purpose:
                    continue
                if len(found) == limit:
                    return found, True
                found.append(record)
        return found, False


def _page_ids(client: redis.Redis, index: str, after: str | None, newest_first: bool) -> list[str]:
    """Ids of a zset listing (ordered by score, then id), strictly after `after`."""
    entries: Any = client.zrange(index, 0, -1, desc=newest_first, withscores=True)
    ids = [(as_text(m), s) for m, s in entries]
    if after is not None:
        for position, (member, _) in enumerate(ids):
            if member == after:
                return [m for m, _ in ids[position + 1 :]]
    return [m for m, _ in ids]
