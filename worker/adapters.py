"""Serving adapters: on-demand loading, an LRU of loaded adapters, an engine per adapter.

A job that names an adapter runs on that adapter's own engine: rows are grouped by
adapter, never mixed in one batch (the batched engine drives one model). Loading builds
the adapted model with `worker.lora.adapted_model` over the base model's weights, merged
(`merge=True`, the default) or not; worker.lora says what each costs.

The registry (memq.store.adapters) is asked on every job, so a deleted adapter stops serving at
once even while it is loaded here; evicted adapters' engines close once no job uses them.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from memq.contracts import AdapterRef, AdapterServed
from memq.store.adapters import AdapterIncompatible, AdapterRegistry, AdapterVersionRecord
from worker.engine.base import Engine
from worker.lora import adapted_model, private_bytes
from worker.model_loader import LoadedModel

log = logging.getLogger("memq.worker.adapters")

EngineFactory = Callable[[LoadedModel], Engine]
_Key = tuple[str, str, int]  # tenant, adapter name, version


@dataclass
class _Loaded:
    engine: Engine | None = None  # None until its loader has built it
    bytes: int = 0
    users: int = 0
    ready: threading.Event = field(default_factory=threading.Event)
    error: BaseException | None = None


class AdapterPool:
    def __init__(
        self,
        lm: LoadedModel,
        registry: AdapterRegistry,
        build_engine: EngineFactory,
        *,
        capacity: int,
        merge: bool = True,
    ) -> None:
        self.lm = lm
        self.registry = registry
        self.build_engine = build_engine
        self.capacity = capacity
        self.merge = merge
        self._lock = threading.Lock()
        self._loaded: OrderedDict[_Key, _Loaded] = OrderedDict()

    def resolve(self, tenant: str, ref: AdapterRef) -> AdapterVersionRecord:
        """The registered version `ref` names, checked against the served model
        (AdapterNotFound, AdapterIncompatible)."""
        record = self.registry.resolve(tenant, ref)
        if record.base_model != self.lm.name:
            raise AdapterIncompatible(
                f"adapter {ref.name!r} v{record.version} was trained on {record.base_model}; "
                f"this worker serves {self.lm.name}: consolidate again on this model"
            )
        return record

    @contextmanager
    def engine(self, tenant: str, ref: AdapterRef) -> Iterator[tuple[Engine, AdapterServed]]:
        """The engine of the adapter version `ref` names, loaded on first use, held (not
        evicted) until the block ends."""
        record = self.resolve(tenant, ref)
        key = (tenant, ref.name, record.version)
        loaded, load = self._take(key)
        if load:
            try:
                model = adapted_model(self.lm.model, Path(record.path), merge=self.merge)
                adapted = LoadedModel(
                    name=self.lm.name,
                    model=model,
                    tokenizer=self.lm.tokenizer,
                    context_window=self.lm.context_window,
                    eos_token_id=self.lm.eos_token_id,
                )
                loaded.bytes = private_bytes(model, self.lm.model)
                loaded.engine = self.build_engine(adapted)
                log.info(
                    "adapter %s v%d of %s loaded (%.1f MB of its own)",
                    ref.name,
                    record.version,
                    tenant,
                    loaded.bytes / 1e6,
                )
            except BaseException as exc:
                loaded.error = exc
                with self._lock:
                    self._loaded.pop(key, None)
                loaded.ready.set()
                self._release(loaded)
                raise
            loaded.ready.set()
        else:
            loaded.ready.wait()
            if loaded.error is not None:
                self._release(loaded)
                raise loaded.error
        engine = loaded.engine
        assert engine is not None  # set before `ready`, or `error` was
        try:
            yield engine, AdapterServed(name=ref.name, version=record.version, stale=record.stale)
        finally:
            self._release(loaded)

    def _take(self, key: _Key) -> tuple[_Loaded, bool]:
        """The entry for `key`, marked used; True when the caller must load it."""
        with self._lock:
            found = self._loaded.get(key)
            load = found is None
            if found is None:
                found = _Loaded()
                self._loaded[key] = found
            self._loaded.move_to_end(key)
            found.users += 1
            doomed = self._evict()
        _close(doomed)
        return found, load

    def _evict(self) -> list[_Loaded]:
        """Drop least recently used entries past capacity (caller holds the lock); their
        engines close when their last user is done."""
        doomed: list[_Loaded] = []
        for key in list(self._loaded):
            if len(self._loaded) <= self.capacity:
                break
            entry = self._loaded[key]
            if entry.users == 0:
                del self._loaded[key]
                doomed.append(entry)
        return doomed

    def _release(self, loaded: _Loaded) -> None:
        with self._lock:
            loaded.users -= 1
            doomed = self._evict()
        _close(doomed)

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return {
                "loaded": [f"{t}/{n}/v{v}" for t, n, v in self._loaded],
                "bytes": sum(e.bytes for e in self._loaded.values()),
            }

    def close(self) -> None:
        with self._lock:
            entries = list(self._loaded.values())
            self._loaded.clear()
        _close(entries)


def _close(entries: list[_Loaded]) -> None:
    for entry in entries:
        if entry.engine is not None:
            entry.engine.close()
