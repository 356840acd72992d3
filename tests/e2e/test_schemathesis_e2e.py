"""Schemathesis against the running gateway's own OpenAPI document (`/openapi.json`), with
an API key (authentication on): for every operation, whatever schemathesis generates, the
gateway never answers 5xx, and every answer has a documented status code and content type
and a body that matches its schema."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import SecretStr
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.core.result import Ok
from schemathesis.schemas import APIOperation

from gateway.core.config import GatewaySettings
from gateway.main import create_app
from memq.ops.launcher import Stack
from tests.e2e.ops import FUZZ_KEY

pytestmark = pytest.mark.e2e

AUTH = {"Authorization": f"Bearer {FUZZ_KEY}"}
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
EXCLUDED = {
    # The body is NDJSON, which schemathesis cannot generate (import is fuzzed through the
    # memory service's tests, tests/memory_service/test_poison.py).
    "POST /v1/namespaces/{namespace}/import",
}


def _labels() -> list[str]:
    """The operations to fuzz, known at collection time from the app's own schema (the
    cases are drawn from the running gateway's /openapi.json; a test below checks that the
    two agree)."""
    spec = create_app(GatewaySettings(service_token=SecretStr("schema-only"))).openapi()
    found = {f"{method.upper()} {path}" for path, ops in spec["paths"].items() for method in ops}
    return sorted(found - EXCLUDED)


LABELS = _labels()
Operation = APIOperation[Any, Any, Any, Any]


@pytest.fixture(scope="module")
def live_operations(ops_stack: Stack) -> Iterator[dict[str, Operation]]:
    schema = schemathesis.openapi.from_url(f"{ops_stack.gateway_url}/openapi.json")
    yield {
        f"{op.method.upper()} {op.path}": op
        for result in schema.get_all_operations()
        if isinstance(result, Ok)
        for op in [result.ok()]
    }
    # Leave the stack quiet for the tests after these: cancel what the fuzzing queued.
    with httpx.Client(base_url=ops_stack.gateway_url, headers=AUTH, timeout=60) as http:
        page = http.get("/v1/jobs", params={"status": ["queued", "running"], "limit": 200})
        for job in page.json()["items"]:
            http.post(f"/v1/jobs/{job['id']}/cancel")


def test_every_operation_of_the_running_gateway_is_fuzzed(
    live_operations: dict[str, Operation],
) -> None:
    assert sorted(set(live_operations) - EXCLUDED) == LABELS


@pytest.mark.parametrize("label", LABELS)
@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
@given(data=st.data())
def test_the_gateway_answers_within_its_schema(
    live_operations: dict[str, Operation], ops_stack: Stack, label: str, data: st.DataObject
) -> None:
    operation = live_operations[label]
    mode = data.draw(st.sampled_from(list(GenerationMode)), label="mode")
    case = data.draw(operation.as_strategy(mode), label="case")
    case.call_and_validate(base_url=ops_stack.gateway_url, headers=AUTH, checks=CHECKS)
