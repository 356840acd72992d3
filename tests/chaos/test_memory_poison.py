"""Chaos test 5 (issue 8): poison attempts against a real memory service process, interleaved
with acknowledged writes from two tenants; then SIGKILL mid-write and a restart on the same
data. Every poison attempt must be a 4xx, the service must come back, every acknowledged
memory must still be there once (lost 0, duplicated 0, unexpected 0) and every tenant must
still be able to write."""

from __future__ import annotations

import json
import random
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.chaos.checker import History
from tests.utils.memory_service import MemoryServiceProcess, auth

pytestmark = [pytest.mark.chaos, pytest.mark.slow]

TENANTS = ("acme", "globex")
NAMESPACE = "chaos"
MIB = 1024 * 1024
BODY_LIMIT = 1 * MIB
IMPORT_LIMIT = 4 * MIB
WORDS = (
    "river", "granite", "violin", "orbit", "saffron", "lantern", "glacier", "pixel",
    "harbor", "meadow", "copper", "falcon", "quartz", "tundra", "velvet", "canyon",
    "ember", "lagoon", "marble", "nectar", "oyster", "prairie", "quiver", "rhubarb",
    "sonnet", "thimble", "umbra", "vortex", "walnut", "yonder", "zephyr", "anchor",
    "bramble", "cobalt", "dune", "echo", "fjord", "garnet", "hollow", "ivory",
    "jasmine", "kelp", "lilac", "mosaic", "nimbus", "opal", "pebble", "quill",
    "raven", "sable", "tango", "umber", "vessel", "willow", "xylem", "yarrow",
    "zinnia", "almond", "beacon", "cinder", "delta", "ferret", "gusto", "hazel",
    "indigo", "juniper", "kiosk", "lotus", "mango", "nutmeg", "orchid", "parsley",
    "quokka", "ribbon", "spruce", "tulip",
)  # fmt: skip


def sentence(key: str, rng: random.Random) -> str:
    return f"{key}: " + " ".join(rng.sample(WORDS, 10))


class Client:
    """HTTP to the service, recording every operation in the history."""

    def __init__(self, url: str, history: History) -> None:
        self.http = httpx.Client(base_url=url, timeout=60.0)
        self.history = history
        self.not_4xx: list[str] = []

    def close(self) -> None:
        self.http.close()

    def write(self, key: str, tenant: str, send: Callable[[httpx.Client], httpx.Response]) -> Any:
        """An operation that should be acknowledged; returns the body when it was."""
        with self.history.operation(key):
            r = send(self.http)
            if r.status_code in (200, 201):
                body = r.json()
                if body.get("deduplicated"):
                    self.history.fail(key, "deduplicated into an existing memory")
                else:
                    self.history.ok(key)
                return body
            if 400 <= r.status_code < 500:
                self.history.fail(key, f"{r.status_code} {r.text[:200]}")
            else:
                self.history.info(key, f"{r.status_code} {r.text[:200]}")
            return None

    def poison(self, key: str, send: Callable[[httpx.Client], httpx.Response], *also: str) -> None:
        """An attempt that must be refused with a 4xx; `also`: keys of good items riding in
        the same request, which must not be stored either."""
        for k in (key, *also):
            self.history.invoke(k, kind="poison")
        try:
            r = send(self.http)
        except httpx.TransportError as exc:
            outcome, detail = self.history.info, f"{type(exc).__name__}: {exc}"
        else:
            refused = 400 <= r.status_code < 500
            outcome = self.history.fail if refused else self.history.info
            detail = f"{r.status_code} {r.text[:200]}"
        if outcome != self.history.fail:
            self.not_4xx.append(f"{key}: {detail}")
        for k in (key, *also):
            outcome(k, detail)


def raw(http: httpx.Client, method: str, path: str, body: str, tenant: str) -> httpx.Response:
    headers = {**auth(tenant), "Content-Type": "application/json"}
    return http.request(method, path, content=body.encode(), headers=headers)


def export_line(key: str, tenant: str, **overrides: Any) -> str:
    line: dict[str, Any] = {
        "id": key,
        "tenant": tenant,
        "namespace": NAMESPACE,
        "kind": "fact",
        "text": f"{key}: imported",
        "metadata": {"chaos_key": key},
        "created_at": "2024-01-01T00:00:00Z",
        "updated_at": "2024-01-01T00:00:00Z",
        "version": 1,
        "content_hash": "0" * 64,
    }
    line.update(overrides)
    return json.dumps(line)


def deep(levels: int) -> dict[str, Any]:
    value: dict[str, Any] = {"chaos": True}
    for _ in range(levels):
        value = {"a": value}
    return value


def poison_round(c: Client, tenant: str, n: int, target_id: str) -> None:
    """Every kind of input issue 8 found the store could not read back, once."""
    k = f"{tenant}-poison{n}"
    ns = NAMESPACE

    def post(body: dict[str, Any]) -> Callable[[httpx.Client], httpx.Response]:
        return lambda http: http.post("/v1/memories", json=body, headers=auth(tenant))

    c.poison(f"{k}-deep", post({"namespace": ns, "text": f"{k}-deep", "metadata": deep(130)}))
    c.poison(
        f"{k}-deep-ttl",
        post({"namespace": ns, "text": f"{k}-deep-ttl", "metadata": deep(9), "ttl_seconds": 1}),
    )
    for label, number in (("nan", "NaN"), ("inf", "Infinity"), ("e309", "1e309")):
        key = f"{k}-{label}"
        body = (
            f'{{"namespace": "{ns}", "text": "{key}", '
            f'"metadata": {{"chaos_key": "{key}", "x": [1, {number}]}}}}'
        )
        c.poison(key, lambda http, b=body: raw(http, "POST", "/v1/memories", b, tenant))
    patch = f'{{"metadata": {{"chaos_key": "{k}-patch", "x": NaN}}}}'
    c.poison(
        f"{k}-patch",
        lambda http: raw(http, "PATCH", f"/v1/memories/{target_id}", patch, tenant),
    )
    good_in_batch = f"{k}-batch-good"
    batch = {
        "items": [
            {"namespace": ns, "text": good_in_batch, "metadata": {"chaos_key": good_in_batch}},
            {"namespace": ns, "text": f"{k}-batch-deep", "metadata": deep(50)},
        ]
    }
    c.poison(
        f"{k}-batch",
        lambda http: http.post("/v1/memories/batch", json=batch, headers=auth(tenant)),
        good_in_batch,
    )
    abuse = {"namespace": ns, "text": "w " * 5000, "chunk_chars": 100, "overlap_chars": 99}
    c.poison(
        f"{k}-overlap",
        lambda http: http.post("/v1/memories/documents", json=abuse, headers=auth(tenant)),
    )
    doc = f'{{"namespace": "{ns}", "text": "{k} doc", "metadata": {{"x": -Infinity}}}}'
    c.poison(f"{k}-doc-inf", lambda http: raw(http, "POST", "/v1/memories/documents", doc, tenant))

    def import_(*lines: str) -> Callable[[httpx.Client], httpx.Response]:
        body = "\n".join(lines).encode()
        return lambda http: http.post(
            f"/v1/namespaces/{ns}/import", content=body, headers=auth(tenant)
        )

    c.poison(f"{k}-imp-huge", import_(export_line(f"{k}-imp-huge", tenant, text="x" * MIB)))
    c.poison(f"{k}-imp-version", import_(export_line(f"{k}-imp-version", tenant, version=-5)))
    c.poison(
        f"{k}-imp-nan",
        import_(export_line(f"{k}-imp-nan", tenant).replace('"chaos_key"', '"x": NaN, "ck"')),
    )
    good_line = f"{k}-imp-good"
    c.poison(
        f"{k}-imp-mixed",
        import_(export_line(good_line, tenant), export_line("i" * 10_000, tenant)),
        good_line,
    )
    c.poison(
        f"{k}-imp-too-big",
        import_(*(export_line(f"{k}-big{i}", tenant, text="y" * 15_000) for i in range(300))),
    )
    c.poison(
        f"{k}-body",
        post({"namespace": ns, "text": f"{k}-body", "metadata": {"pad": "z" * (2 * MIB)}}),
    )

    def chunked(http: httpx.Client) -> httpx.Response:
        pieces = (b" " * (64 * 1024) for _ in range(64))  # 4 MiB, no Content-Length
        return http.post("/v1/memories", content=pieces, headers=auth(tenant))

    c.poison(f"{k}-chunked", chunked)
    c.poison(
        f"{k}-recency",
        lambda http: http.post(
            "/v1/memories/search",
            json={"namespace": ns, "query": "q", "recency_half_life_s": 1e-300},
            headers=auth(tenant),
        ),
    )
    c.poison(
        f"{k}-date",
        lambda http: http.get(
            "/v1/memories",
            params={"namespace": ns, "created_after": "0001-01-01T00:00:00+01:00"},
            headers=auth(tenant),
        ),
    )


def good_write(c: Client, key: str, tenant: str, rng: random.Random) -> Any:
    body = {"namespace": NAMESPACE, "text": sentence(key, rng), "metadata": {"chaos_key": key}}
    return c.write(
        key, tenant, lambda http: http.post("/v1/memories", json=body, headers=auth(tenant))
    )


class Writer(threading.Thread):
    """Writes acknowledged memories (singles, batches, documents, imports) for both tenants
    until stopped; after the kill its requests fail and are recorded as ambiguous."""

    def __init__(self, url: str, history: History) -> None:
        super().__init__(name="chaos-writer", daemon=True)
        self.client = Client(url, history)
        self.stop = threading.Event()
        self.acked = 0
        self.progress = threading.Condition()
        self.rng = random.Random(7)

    def run(self) -> None:
        n = 0
        try:
            while not self.stop.is_set():
                tenant = TENANTS[n % 2]
                key = f"{tenant}-w{n}"
                self._one(n, key, tenant)
                n += 1
        finally:
            self.client.close()

    def _one(self, n: int, key: str, tenant: str) -> None:
        try:
            if n % 5 == 3:
                self._batch(key, tenant)
            elif n % 7 == 5:
                self._document(key, tenant)
            elif n % 11 == 9:
                self._import(key, tenant)
            else:
                good_write(self.client, key, tenant, self.rng)
        except httpx.TransportError:
            self.stop.set()  # the service is gone: recorded as ambiguous, nothing more to do
            return
        with self.progress:
            self.acked += 1
            self.progress.notify_all()

    def _batch(self, key: str, tenant: str) -> None:
        history, keys = self.client.history, [f"{key}-b{i}" for i in range(3)]
        items = [
            {"namespace": NAMESPACE, "text": sentence(k, self.rng), "metadata": {"chaos_key": k}}
            for k in keys
        ]
        for k in keys:
            history.invoke(k)
        try:
            r = self.client.http.post(
                "/v1/memories/batch", json={"items": items}, headers=auth(tenant)
            )
        except httpx.TransportError as exc:
            for k in keys:
                history.info(k, f"{type(exc).__name__}: {exc}")
            raise
        if r.status_code != 200:
            for k in keys:
                (history.fail if r.status_code < 500 else history.info)(k, r.text[:200])
            return
        for k, item in zip(keys, r.json()["items"], strict=True):
            if item["deduplicated"]:
                history.fail(k, "deduplicated into an existing memory")
            else:
                history.ok(k)

    def _document(self, key: str, tenant: str) -> None:
        doc = {
            "namespace": NAMESPACE,
            "document_id": key,
            "chunk_chars": 200,
            "overlap_chars": 40,
            "text": " ".join(sentence(key, self.rng) for _ in range(6)),
        }
        self.client.write(
            key,
            tenant,
            lambda http: http.post("/v1/memories/documents", json=doc, headers=auth(tenant)),
        )

    def _import(self, key: str, tenant: str) -> None:
        line = export_line(key, tenant, id=f"imported-{key}", text=sentence(key, self.rng))
        self.client.write(
            key,
            tenant,
            lambda http: http.post(
                f"/v1/namespaces/{NAMESPACE}/import", content=line.encode(), headers=auth(tenant)
            ),
        )

    def wait_acked(self, at_least: int, timeout: float) -> None:
        with self.progress:
            if not self.progress.wait_for(lambda: self.acked >= at_least, timeout):
                raise AssertionError(
                    f"writer acknowledged {self.acked}, not {at_least}, in {timeout}s"
                )


def final_read(url: str) -> Counter[str]:
    """How many times each key is stored: one memory per key, one document per key."""
    seen: Counter[str] = Counter()
    with httpx.Client(base_url=url, timeout=60.0) as http:
        for tenant in TENANTS:
            documents: set[str] = set()
            cursor: str | None = None
            while True:
                params: dict[str, Any] = {"namespace": NAMESPACE, "limit": 500}
                if cursor:
                    params["cursor"] = cursor
                r = http.get("/v1/memories", params=params, headers=auth(tenant))
                assert r.status_code == 200, r.text
                page = r.json()
                for item in page["items"]:
                    if item["kind"] == "document_chunk":
                        documents.add(item["metadata"]["document_id"])
                    else:
                        seen[item["metadata"].get("chaos_key", f"unkeyed:{item['id']}")] += 1
                cursor = page["next_cursor"]
                if cursor is None:
                    break
            seen.update(documents)
    return seen


@pytest.fixture
def service(tmp_path: Path) -> Iterator[MemoryServiceProcess]:
    proc = MemoryServiceProcess(
        tmp_path / "data",
        tmp_path / "memory.log",
        MEMQ_MEMORY_MAX_BODY_BYTES=str(BODY_LIMIT),
        MEMQ_MEMORY_MAX_IMPORT_BYTES=str(IMPORT_LIMIT),
        MEMQ_TTL_SWEEP_INTERVAL_S="0.5",  # housekeeping runs throughout the attack
    )
    try:
        proc.start()
        yield proc
    finally:
        proc.stop()


def test_poison_then_sigkill_loses_no_acknowledged_memory(service: MemoryServiceProcess) -> None:
    history = History()
    rng = random.Random(11)
    main = Client(service.url, history)
    writer = Writer(service.url, history)
    writer.start()
    try:
        for n in range(3):
            for tenant in TENANTS:
                target = good_write(main, f"{tenant}-m{n}", tenant, rng)
                assert target is not None, "a plain write before the attack must be acknowledged"
                poison_round(main, tenant, n, target["id"])
                good_write(main, f"{tenant}-m{n}-after", tenant, rng)
        writer.wait_acked(writer.acked + 5, timeout=120)
        service.kill()  # while the writer is mid-request
    finally:
        writer.stop.set()
        writer.join(timeout=120)
        main.close()
    assert not writer.is_alive()

    service.start()  # same data dir, same port
    history.observe_all(final_read(service.url))
    summary = history.check()

    assert main.not_4xx == [], "every poison attempt must be refused with a 4xx"
    assert summary.by_kind["poison"] == {"fail": len(history.operations("poison"))}
    assert summary.lost == [] and summary.duplicated == [] and summary.unexpected == []
    assert summary.ok >= 20
    with httpx.Client(base_url=service.url, timeout=60.0) as http:
        assert http.get("/readyz").status_code == 200
        for tenant in TENANTS:
            r = http.post(
                "/v1/memories",
                json={"namespace": NAMESPACE, "text": sentence(f"{tenant}-final", rng)},
                headers=auth(tenant),
            )
            assert r.status_code == 201, r.text
