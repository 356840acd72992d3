"""What every command that talks to the gateway shares: the SDK client and the exit codes its
failures end with, the consoles, reading input, and the options every command spells alike."""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import BaseModel, ValidationError
from rich.console import Console

from memq.contracts import Priority
from memq.sdk import APIConnectionError, Client
from memq.sdk.errors import APIError, WaitTimeout

EXIT_REFUSED = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3

console = Console()
err = Console(stderr=True)


def make_client(gateway: str | None, api_key: str | None) -> Client:
    """The SDK client the commands use (tests swap it for one on a scripted transport)."""
    return Client(gateway, api_key)


def print_error(message: str) -> None:
    err.print(message, style="red", markup=False, highlight=False, soft_wrap=True)


def _validation_summary(exc: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" if e["loc"] else e["msg"]
        for e in exc.errors()[:5]
    )


@contextlib.contextmanager
def connect(gateway: str | None, api_key: str | None) -> Iterator[Client]:
    """A client whose failures end the command with the documented exit code and one line
    on stderr, never a traceback."""
    try:
        with make_client(gateway, api_key) as client:
            yield client
    except APIConnectionError as exc:
        print_error(f"error: {exc.message}")
        raise typer.Exit(EXIT_UNREACHABLE) from exc
    except APIError as exc:
        hint = f" (retry after {exc.retry_after:g} s)" if exc.retry_after else ""
        print_error(f"error: {exc.status_code} {exc.code}: {exc.server_message}{hint}")
        raise typer.Exit(EXIT_REFUSED) from exc
    except WaitTimeout as exc:
        print_error(f"error: {exc.message}")
        raise typer.Exit(EXIT_REFUSED) from exc
    except ValidationError as exc:
        print_error(f"error: invalid input: {_validation_summary(exc)}")
        raise typer.Exit(EXIT_USAGE) from exc


def echo_json(value: BaseModel | Sequence[BaseModel] | dict[str, Any]) -> None:
    if isinstance(value, BaseModel):
        typer.echo(value.model_dump_json())
    elif isinstance(value, dict):
        typer.echo(json.dumps(value))
    else:
        typer.echo(json.dumps([v.model_dump(mode="json") for v in value]))


def read_text(value: str, what: str) -> str:
    """The argument itself, or standard input for `-`."""
    if value != "-":
        return value
    text = sys.stdin.read()
    if not text.strip():
        print_error(f"error: {what} from standard input is empty")
        raise typer.Exit(EXIT_USAGE)
    return text


def read_file(path: Path) -> str:
    if str(path) == "-":
        return read_text("-", "the text")
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        print_error(f"error: cannot read {path}: {exc}")
        raise typer.Exit(EXIT_USAGE) from exc


def parse_metadata(pairs: list[str] | None) -> dict[str, str] | None:
    if not pairs:
        return None
    found: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"{pair!r} is not KEY=VALUE", param_hint="--meta")
        found[key] = value
    return found


def local_time(moment: datetime | None) -> datetime | None:
    """A time typed without a zone is the terminal's local time."""
    return moment.astimezone() if moment else None


Gateway = Annotated[
    str | None,
    typer.Option(
        "--gateway",
        help="Gateway base URL (default: MEMQ_GATEWAY_URL, else http://127.0.0.1:8000).",
    ),
]
ApiKey = Annotated[str | None, typer.Option("--api-key", help="API key (default: MEMQ_API_KEY).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON (for scripts).")]
Meta = Annotated[
    list[str] | None,
    typer.Option("--meta", metavar="KEY=VALUE", help="A metadata label (repeatable)."),
]
Namespace = Annotated[
    str, typer.Option("--namespace", "-n", help="The memory namespace, e.g. user:42.")
]
Timeout = Annotated[
    float, typer.Option(min=1, help="With --watch: give up waiting after this many seconds.")
]
Watch = Annotated[
    bool, typer.Option("--watch", "-w", help="Follow the job live; exit 1 unless it succeeds.")
]
IdempotencyKey = Annotated[
    str | None,
    typer.Option(help="The same key and job within 24 h return the original job."),
]
PriorityOpt = Annotated[Priority | None, typer.Option(help="Queue: high, normal or low.")]
