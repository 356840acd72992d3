"""Unit test (a stand-in transport, not a server): the Qdrant server backend's HTTP requests,
checked offline against qdrant-client's REST API.

No Qdrant server runs here, so `ServerStore` talks to a fake transport given to qdrant-client's
own HTTP client. The fake knows Qdrant's REST routes from qdrant-client's generated API
(`qdrant_client.http.api`, generated from Qdrant's OpenAPI document): for every request it
finds the route by method and path, refuses query parameters the route does not take, and
validates the JSON body against the route's REST model (`qdrant_client.http.models`, which
forbid unknown fields). It answers with bodies that qdrant-client parses with its response
models. Every store operation runs through it; the contract suite runs against a real server
where one exists (tests/deploy/test_compose_stack.py, MEMQ_TEST_QDRANT_URL).
"""

from __future__ import annotations

import ast
import json
import re
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import TypeAdapter
from qdrant_client import QdrantClient
from qdrant_client import models as qm
from qdrant_client.http import api as rest_api

from memory_service.store.base import (
    DENSE,
    SPARSE,
    HasId,
    Match,
    MatchAny,
    MmrSpec,
    Range,
    SearchSpec,
    SparseVec,
    StoredPoint,
    Where,
)
from memory_service.store.schema import FLOAT_FIELDS, KEYWORD_FIELDS, TENANT_KEY
from memory_service.store.server import ServerStore

DIM = 4
COLLECTION = "memq_memories"
API_KEY = "test-api-key"


@dataclass(frozen=True)
class Route:
    operation: str
    method: str
    path: re.Pattern[str]
    query: frozenset[str]
    body: str | None
    """Name of the REST model the body must validate as (None: no body)."""


def rest_routes() -> list[Route]:
    """Every REST operation qdrant-client knows, read from its generated API modules."""
    routes = []
    for module in sorted(Path(rest_api.__file__).parent.glob("*_api.py")):
        for fn in ast.walk(ast.parse(module.read_text())):
            if not (isinstance(fn, ast.FunctionDef) and fn.name.startswith("_build_for_")):
                continue
            call = next(
                n
                for n in ast.walk(fn)
                if isinstance(n, ast.Call) and ast.unparse(n.func) == "self.api_client.request"
            )
            kw = {k.arg: k.value for k in call.keywords}
            query = {
                str(t.slice.value)
                for n in ast.walk(fn)
                if isinstance(n, ast.Assign)
                for t in n.targets
                if isinstance(t, ast.Subscript)
                and ast.unparse(t.value) == "query_params"
                and isinstance(t.slice, ast.Constant)
            }
            encoded = [
                n.args[0].id
                for n in ast.walk(fn)
                if isinstance(n, ast.Call)
                and ast.unparse(n.func) == "jsonable_encoder"
                and isinstance(n.args[0], ast.Name)
            ]
            body = None
            if encoded:
                arg = next(a for a in fn.args.args if a.arg == encoded[0])
                assert arg.annotation is not None
                body = ast.unparse(arg.annotation).removeprefix("m.")
            url, method = kw["url"], kw["method"]
            assert isinstance(url, ast.Constant) and isinstance(method, ast.Constant)
            pattern = re.sub(r"\\\{[a-z_]+\\\}", "[^/]+", re.escape(str(url.value)))
            routes.append(
                Route(
                    fn.name.removeprefix("_build_for_"),
                    str(method.value),
                    re.compile(pattern + "$"),
                    frozenset(query),
                    body,
                )
            )
    return routes


ROUTES = rest_routes()


def _ok(result: Any) -> httpx.Response:
    return httpx.Response(200, json={"result": result, "status": "ok", "time": 0.0})


def _update() -> dict[str, Any]:
    return {"operation_id": 1, "status": "completed"}


def _point(with_vector: bool) -> dict[str, Any]:
    point: dict[str, Any] = {
        "id": "5c56c793-69f3-4fbf-87e6-c4bf54c28c26",
        "payload": {TENANT_KEY: "acme", "namespace": "user:1", "text": "Alice lives in Paris"},
    }
    if with_vector:
        point["vector"] = {DENSE: [0.5, 0.5, 0.5, 0.5]}
    return point


@dataclass
class FakeQdrant:
    """Validates each request against its REST route and answers like a server would."""

    collection_exists: bool = False
    seen: list[tuple[str, dict[str, str], Any]] = field(default_factory=list)
    """(operation, query parameters, JSON body) of every request, in order."""

    def handle(self, request: httpx.Request) -> httpx.Response:
        assert request.headers.get("api-key") == API_KEY, "every request carries the API key"
        matches = [
            r
            for r in ROUTES
            if r.method == request.method and r.path.match(request.url.path.rstrip("/"))
        ]
        assert len(matches) == 1, f"no single REST route for {request.method} {request.url.path}"
        route = matches[0]
        params = dict(request.url.params)
        unknown = set(params) - route.query
        assert not unknown, f"{route.operation} takes no query parameter {unknown}"
        body = json.loads(request.content) if request.content else None
        if route.body is not None:
            assert body is not None, f"{route.operation} needs a {route.body} body"
            TypeAdapter(getattr(qm, route.body)).validate_json(request.content)
        else:
            assert body is None, f"{route.operation} takes no body"
        self.seen.append((route.operation, params, body))
        return self.answer(route.operation, body)

    def answer(self, operation: str, body: Any) -> httpx.Response:
        if operation == "collection_exists":
            return _ok({"exists": self.collection_exists})
        if operation == "create_collection":
            return _ok(True)
        if operation == "get_collection":
            return _ok(self._collection_info())
        if operation in ("create_field_index", "upsert_points", "delete_points"):
            return _ok(_update())
        if operation == "scroll_points":
            with_vector = bool(body.get("with_vector"))
            return _ok({"points": [_point(with_vector)], "next_page_offset": None})
        if operation == "count_points":
            return _ok({"count": 1})
        if operation == "query_batch_points":
            answers = []
            for search in body["searches"]:
                scored = _point(bool(search.get("with_vector"))) | {"version": 3, "score": 0.8}
                answers.append({"points": [scored]})
            return _ok(answers)
        raise AssertionError(f"ServerStore is not expected to call {operation}")

    def _collection_info(self) -> dict[str, Any]:
        """What a server says about a collection made the way ServerStore makes it
        (qdrant-client's local mode builds the same CollectionInfo model)."""
        local = QdrantClient(":memory:")
        local.create_collection(
            COLLECTION,
            vectors_config={DENSE: qm.VectorParams(size=DIM, distance=qm.Distance.COSINE)},
            sparse_vectors_config={SPARSE: qm.SparseVectorParams(modifier=qm.Modifier.IDF)},
        )
        info = local.get_collection(COLLECTION).model_dump(mode="json", exclude_none=True)
        local.close()
        return dict(info)

    def operations(self) -> list[str]:
        return [op for op, _, _ in self.seen]


@pytest.fixture
def fake() -> FakeQdrant:
    return FakeQdrant()


@pytest.fixture
def store(fake: FakeQdrant) -> Iterator[ServerStore]:
    client = QdrantClient(
        url="https://qdrant.invalid:6333",
        api_key=API_KEY,
        check_compatibility=False,
        transport=httpx.MockTransport(fake.handle),
    )
    server = ServerStore(client, COLLECTION, DIM)
    yield server
    server.close()


def _where() -> Where:
    return Where(
        must=[Match("namespace", "user:1"), Range("created_ts", gte=1.0, lt=2.0)],
        should=[MatchAny("kind", ["fact", "message"]), HasId([str(uuid.uuid4())])],
        must_not=[Where(must=[Match("pinned", True)])],
    )


def _tenant_required(flt: dict[str, Any], tenant: str) -> bool:
    """The filter's top level requires the tenant (so no `should` can widen it)."""
    return {"key": TENANT_KEY, "match": {"value": tenant}} in (flt.get("must") or [])


def _prefetches(query: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for stage in query.get("prefetch") or []:
        yield stage
        yield from _prefetches(stage)


def test_route_table_covers_every_operation_the_store_uses() -> None:
    operations = {r.operation for r in ROUTES}
    assert {
        "collection_exists",
        "create_collection",
        "get_collection",
        "create_field_index",
        "upsert_points",
        "scroll_points",
        "count_points",
        "delete_points",
        "query_batch_points",
    } <= operations
    scroll = next(r for r in ROUTES if r.operation == "scroll_points")
    assert scroll.body == "ScrollRequest" and scroll.method == "POST"


def test_the_fake_refuses_a_body_the_rest_api_does_not_take(fake: FakeQdrant) -> None:
    """The check can fail: a field the REST model does not have is refused."""
    request = httpx.Request(
        "POST",
        f"https://qdrant.invalid:6333/collections/{COLLECTION}/points/scroll",
        headers={"api-key": API_KEY},
        json={"limit": 1, "with_vectors": True},
    )
    with pytest.raises(Exception, match="with_vectors"):
        fake.handle(request)


def test_opening_creates_the_collection_and_every_index(
    fake: FakeQdrant, store: ServerStore
) -> None:
    ops = fake.operations()
    assert ops[:3] == ["collection_exists", "create_collection", "get_collection"]
    create = fake.seen[1][2]
    assert create["vectors"] == {DENSE: {"size": DIM, "distance": "Cosine"}}
    assert create["sparse_vectors"] == {SPARSE: {"modifier": "idf"}}
    indexes = {body["field_name"]: body["field_schema"] for op, _, body in fake.seen[3:]}
    assert indexes[TENANT_KEY] == {"type": "keyword", "is_tenant": True}
    for name in KEYWORD_FIELDS:
        assert indexes[name] == "keyword"
    for name in FLOAT_FIELDS:
        assert indexes[name] == "float"
    assert all(params.get("wait") == "true" for op, params, _ in fake.seen[3:])


def test_writes_wait_for_the_server_to_apply_them(fake: FakeQdrant, store: ServerStore) -> None:
    store.upsert(
        "acme",
        [
            StoredPoint(
                point_id=str(uuid.uuid4()),
                dense=[0.1, 0.2, 0.3, 0.4],
                sparse=SparseVec(indices=[3, 17], values=[0.5, 1.25]),
                payload={TENANT_KEY: "acme", "namespace": "user:1", "meta": {"a": [1, 2.5]}},
            )
        ],
    )
    assert store.delete("acme", _where()) == 1
    assert store.delete_expired(now=1e9) == 1
    assert store.readiness() is None
    writes = [
        (op, params) for op, params, _ in fake.seen if op in ("upsert_points", "delete_points")
    ]
    assert [op for op, _ in writes] == [
        "upsert_points",
        "delete_points",
        "delete_points",
        "upsert_points",
    ]
    assert all(params.get("wait") == "true" for _, params in writes)
    upsert = next(body for op, _, body in fake.seen if op == "upsert_points")
    assert upsert["points"][0]["vector"][SPARSE] == {"indices": [3, 17], "values": [0.5, 1.25]}


def test_reads_are_scoped_to_the_tenant_and_parsed(fake: FakeQdrant, store: ServerStore) -> None:
    found, cursor = store.scroll("acme", _where(), limit=5, cursor=str(uuid.uuid4()))
    assert cursor is None and found[0].payload["text"] == "Alice lives in Paris"
    assert found[0].dense is None
    found, _ = store.scroll("acme", None, limit=5, with_dense=True)
    assert found[0].dense == [0.5, 0.5, 0.5, 0.5]
    assert store.count("acme", _where()) == 1
    reads = [body for op, _, body in fake.seen if op in ("scroll_points", "count_points")]
    assert len(reads) == 3
    assert all(_tenant_required(body["filter"], "acme") for body in reads)


SEARCHES: dict[str, Callable[[], SearchSpec]] = {
    "dense": lambda: SearchSpec(limit=3, dense=[0.1] * DIM),
    "sparse": lambda: SearchSpec(limit=3, sparse=SparseVec([1, 2], [0.3, 0.7])),
    "hybrid": lambda: SearchSpec(
        limit=3, dense=[0.1] * DIM, sparse=SparseVec([1], [1.0]), where=_where(), with_dense=True
    ),
    "hybrid+recency": lambda: SearchSpec(
        limit=3,
        dense=[0.1] * DIM,
        sparse=SparseVec([1], [1.0]),
        recency_half_life_s=3600.0,
        now=1.7e9,
    ),
    "dense+mmr": lambda: SearchSpec(limit=3, dense=[0.1] * DIM, mmr=MmrSpec([0.1] * DIM, 0.7)),
    "everything": lambda: SearchSpec(
        limit=3,
        dense=[0.1] * DIM,
        sparse=SparseVec([1], [1.0]),
        where=_where(),
        recency_half_life_s=60.0,
        now=1.7e9,
        mmr=MmrSpec([0.1] * DIM, 0.5),
        hnsw_ef=64,
        with_dense=True,
        candidates=40,
    ),
}


@pytest.mark.parametrize("kind", sorted(SEARCHES))
def test_every_kind_of_search_is_a_valid_query_request(
    fake: FakeQdrant, store: ServerStore, kind: str
) -> None:
    spec = SEARCHES[kind]()
    hits = store.search("acme", spec)
    assert hits[0].score == pytest.approx(0.8)
    assert hits[0].payload[TENANT_KEY] == "acme"
    assert (hits[0].dense is not None) == spec.with_dense
    op, _, body = fake.seen[-1]
    assert op == "query_batch_points"
    (search,) = body["searches"]
    assert _tenant_required(search["filter"], "acme")
    for stage in _prefetches(search):
        assert _tenant_required(stage["filter"], "acme")


def test_search_many_sends_one_batch_and_answers_in_order(
    fake: FakeQdrant, store: ServerStore
) -> None:
    specs = [SEARCHES["dense"](), SEARCHES["hybrid"](), SEARCHES["everything"]()]
    results = store.search_many("acme", specs)
    assert len(results) == 3
    op, _, body = fake.seen[-1]
    assert op == "query_batch_points" and len(body["searches"]) == 3


def test_an_existing_collection_is_reused(fake: FakeQdrant) -> None:
    fake.collection_exists = True
    client = QdrantClient(
        url="https://qdrant.invalid:6333",
        api_key=API_KEY,
        check_compatibility=False,
        transport=httpx.MockTransport(fake.handle),
    )
    ServerStore(client, COLLECTION, DIM).close()
    assert "create_collection" not in fake.operations()
