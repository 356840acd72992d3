"""What a Redis server received, read through MONITOR (tests that pin round trips and
transactions)."""

from __future__ import annotations

from typing import Any

import redis


def commands_since(monitor: Any, client: redis.Redis) -> list[str]:
    """Command names the server received since `monitor` started, up to a marker sent now
    (a new connection's set-up commands left out)."""
    client.echo("end-of-test-commands")
    seen: list[str] = []
    while True:
        command = monitor.next_command()["command"]
        if "end-of-test-commands" in command:
            return seen
        name = command.split(" ")[0].upper()
        if name not in ("HELLO", "CLIENT", "SELECT"):  # a new connection's set-up
            seen.append(name)
