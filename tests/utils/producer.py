"""A Celery producer that records what it is asked to send (a service's unit tests need
the job records, not a broker)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, cast

from celery import Celery


@dataclass
class RecordingProducer:
    sent: list[tuple[str, list[Any], dict[str, Any]]] = field(default_factory=list)

    def send_task(self, name: str, args: list[Any] | None = None, **options: Any) -> None:
        self.sent.append((name, list(args or []), options))

    def as_celery(self) -> Celery:
        return cast(Celery, self)
