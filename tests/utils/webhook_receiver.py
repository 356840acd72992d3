"""A real HTTP receiver for webhook tests: a server thread on a free port of 127.0.0.1 that
records every POST and answers with scripted statuses."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Delivery:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """Answers each POST with the next scripted status (200 once the script is used up);
    `hold` makes it wait until released (to provoke the sender's timeout)."""

    url: str
    statuses: list[int] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)
    received: list[Delivery] = field(default_factory=list)
    hold: threading.Event | None = None
    _arrived: threading.Condition = field(default_factory=threading.Condition)

    def wait_for(
        self, count: int, *, path: str | None = None, timeout: float = 60
    ) -> list[Delivery]:
        """The deliveries (to `path`, if given) once at least `count` arrived; raises
        TimeoutError at the deadline."""
        deadline = time.monotonic() + timeout
        with self._arrived:
            while True:
                found = [d for d in self.received if path is None or d.path == path]
                if len(found) >= count:
                    return found
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"{len(found)} of {count} deliveries to {path} arrived")
                self._arrived.wait(left)


@contextmanager
def webhook_receiver() -> Iterator[Receiver]:
    state = Receiver(url="")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length", 0)))
            with state._arrived:
                state.received.append(Delivery(self.path, dict(self.headers.items()), body))
                state._arrived.notify_all()
            if state.hold is not None:
                state.hold.wait(10)
            status = state.statuses.pop(0) if state.statuses else 200
            self.send_response(status)
            for name, value in state.headers.items():
                self.send_header(name, value)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield state
    finally:
        if state.hold is not None:
            state.hold.set()
        server.shutdown()
        server.server_close()
