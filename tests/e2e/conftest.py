"""The end-to-end stacks (tests/utils/stack.py) and the clients most tests talk to them with."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import openai
import pytest

from memq.ops.launcher import Stack
from memq.sdk import Client
from tests.e2e.ops import FUZZ_KEY, FUZZ_TENANT, OPS_KEY, OPS_TENANT
from tests.utils.stack import StackFactory

SUMMARY_TOKENS = {"MEMQ_SESSION_SUMMARY_TOKENS": "150"}
"""Small, so the e2e sessions grow a rolling summary within a few turns."""


@pytest.fixture(scope="session")
def stack(stack_factory: StackFactory) -> Iterator[Stack]:
    """The whole service as real processes, supervised as `memq up` supervises them;
    authentication off. No e2e test kills anything, so any crash fails the session."""
    with stack_factory("memq-e2e", env=SUMMARY_TOKENS) as running:
        yield running


@pytest.fixture(scope="session")
def ops_stack(stack_factory: StackFactory) -> Iterator[Stack]:
    """A stack for the operations tests (webhooks, metrics, JSON logs, schemathesis):
    authentication on (tests/e2e/ops.py has the keys), JSON logs, webhooks allowed to
    127.0.0.1 (the receivers run there) and retried after short waits."""
    env = {
        **SUMMARY_TOKENS,
        "MEMQ_LOG_FORMAT": "json",
        "MEMQ_WEBHOOK_ALLOW_PRIVATE": "true",
        "MEMQ_WEBHOOK_BACKOFF_S": "0.2",
    }
    keys = {OPS_KEY: OPS_TENANT, FUZZ_KEY: FUZZ_TENANT}
    with stack_factory("memq-ops", env=env, api_keys=keys) as running:
        yield running


@pytest.fixture
def client(stack: Stack) -> Iterator[Client]:
    with Client(stack.gateway_url) as c:
        yield c


@pytest.fixture
def http(stack: Stack) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=stack.gateway_url, timeout=60) as c:
        yield c


@pytest.fixture
def ops_http(ops_stack: Stack) -> Iterator[httpx.Client]:
    """HTTP to the operations stack as the tenant `ops`."""
    headers = {"Authorization": f"Bearer {OPS_KEY}"}
    with httpx.Client(base_url=ops_stack.gateway_url, timeout=60, headers=headers) as c:
        yield c


@pytest.fixture
def oai(stack: Stack) -> Iterator[openai.OpenAI]:
    """The official OpenAI client on the gateway's OpenAI-style endpoints."""
    client = openai.OpenAI(base_url=f"{stack.gateway_url}/v1", api_key="unused", max_retries=0)
    yield client
    client.close()
