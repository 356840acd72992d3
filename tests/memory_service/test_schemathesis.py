"""Property-based fuzzing of every operation of the memory service's OpenAPI schema with
schemathesis' strategies (real app, real Qdrant Edge): whatever it sends with a valid token
and tenant, the answer is never a 5xx. The NDJSON import body, which schemathesis cannot
generate, is fuzzed in test_poison.py."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from memory_service.main import create_app
from memory_service.services.embeddings import Embedder
from tests.memory_service.conftest import app_for, settings_for
from tests.utils.memory_service import auth

pytestmark = pytest.mark.slow

# The schema does not depend on state: an app that never starts is enough to read it.
SCHEMA = schemathesis.openapi.from_dict(
    create_app(settings_for(Path(tempfile.gettempdir()) / "memq-schema-only")).openapi()
)
OPERATIONS = {
    f"{op.method.upper()} {op.path}": op
    for op in (result.ok() for result in SCHEMA.get_all_operations())
    if op.path != "/v1/namespaces/{namespace}/import"
}


@pytest.fixture(scope="module")
def shared_client(
    tmp_path_factory: pytest.TempPathFactory, embedder: Embedder
) -> Iterator[TestClient]:
    with TestClient(app_for(tmp_path_factory.mktemp("fuzz"), embedder)) as client:
        yield client


@pytest.mark.parametrize("label", sorted(OPERATIONS))
@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_no_input_makes_the_memory_service_answer_5xx(
    shared_client: TestClient, label: str, data: st.DataObject
) -> None:
    case = data.draw(OPERATIONS[label].as_strategy())
    kwargs = case.as_transport_kwargs(base_url="http://testserver", headers=auth())
    kwargs.pop("cookies", None)  # the API takes none; per-request cookies are deprecated
    response = shared_client.request(**kwargs)
    assert response.status_code < 500, f"{label}: {response.text}"
