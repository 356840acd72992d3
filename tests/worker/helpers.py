"""Builders shared by the worker's tests: worker settings, memories as the memory service
returns them, facts about made-up people (no model knows them before training), a minimal
chat template. The engine tests' own helpers are in tests/worker/engine/helpers.py."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from memq.contracts import MemoryKind, MemoryPublic
from worker.config import WorkerSettings

FACTS = [
    "Zorvan Kell keeps a pet iguana named Pickle.",
    "Ilsa Brannock's favourite dessert is quince tart.",
    "Teodor Vasch was born in the city of Lunmere.",
]
CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}<|end|>{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


def worker_settings(**fields: object) -> WorkerSettings:
    """Worker settings as a deployment would have them (defaults from WorkerSettings)."""
    return WorkerSettings.model_validate({"service_token": "test-token", **fields})


def memory(text: str, kind: MemoryKind = MemoryKind.fact, n: int = 0) -> MemoryPublic:
    """The n-th memory of `user:1`, created n seconds after the first."""
    at = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(seconds=n)
    return MemoryPublic(
        id=f"m{n}",
        tenant="t",
        namespace="user:1",
        kind=kind,
        text=text,
        created_at=at,
        updated_at=at,
        content_hash="0" * 64,
        version=n + 1,
    )
