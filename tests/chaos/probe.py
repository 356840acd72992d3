"""Probes for the chaos tests: a gateway prober that records refused connections, and a
retry-while-transient helper for calls made while a component restarts."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import TypeVar

import httpx

from memq.errors import MemqError

T = TypeVar("T")


class GatewayProbe:
    """Asks the gateway for `/livez` in a background thread, over and over, and records
    every time it could not even connect: "the gateway kept answering" is `refused == []`.

    Any HTTP answer counts as answering (a 503 while Redis is down is the gateway working).
    """

    def __init__(self, base_url: str, interval_s: float = 0.05) -> None:
        self.base_url = base_url
        self.interval_s = interval_s
        self.answered = 0
        self.refused: list[str] = []
        self._changed = threading.Condition()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="gateway-probe", daemon=True)

    def __enter__(self) -> GatewayProbe:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        with httpx.Client(base_url=self.base_url, timeout=5.0) as http:
            while not self._stop.is_set():
                try:
                    http.get("/livez")
                    with self._changed:
                        self.answered += 1
                        self._changed.notify_all()
                except httpx.TransportError as exc:
                    self.refused.append(f"{type(exc).__name__}: {exc}")
                self._stop.wait(self.interval_s)

    def wait_answers(self, at_least: int, timeout: float = 30.0) -> None:
        """Block until the probe has had `at_least` answers in all."""
        with self._changed:
            if not self._changed.wait_for(lambda: self.answered >= at_least, timeout):
                raise TimeoutError(f"the gateway answered {self.answered} probes, not {at_least}")


def transient(exc: BaseException) -> bool:
    """Worth retrying: the connection failed, or a dependency is down for now (503)."""
    if isinstance(exc, httpx.TransportError):
        return True
    if isinstance(exc, httpx.HTTPStatusError):
        return exc.response.status_code == 503
    return isinstance(exc, MemqError) and exc.status_code == 503


def eventually(attempt: Callable[[], T], timeout: float, interval_s: float = 0.2) -> T:
    """`attempt()`'s result once it stops failing `transient`ly; any other error at once, and
    the last transient one after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return attempt()
        except (MemqError, httpx.HTTPError) as exc:
            if not transient(exc) or time.monotonic() > deadline:
                raise
        time.sleep(interval_s)
