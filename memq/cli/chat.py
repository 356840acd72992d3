"""`memq chat`: a conversation in a session that remembers, replies streamed as they come."""

from __future__ import annotations

import json
import sys
from typing import Annotated

import typer
from rich.text import Text

from memq.cli import views
from memq.cli.common import (
    EXIT_REFUSED,
    ApiKey,
    Gateway,
    connect,
    console,
    echo_json,
    print_error,
)
from memq.contracts import JobStatus
from memq.sdk import Client
from memq.sdk.errors import NotFoundError


def _chat_turn(
    client: Client,
    message: str,
    *,
    session: str,
    user: str | None,
    max_new_tokens: int | None,
    as_json: bool,
) -> bool:
    """One turn, its reply printed as it streams; whether it succeeded."""
    accepted = client.chat(message, session_id=session, user_id=user, max_new_tokens=max_new_tokens)
    stream = client.stream(accepted.id)
    if as_json:
        job = stream.until_done()
        reply = job.result.text if job.result else ""
        typer.echo(json.dumps({"job_id": job.id, "status": job.status.value, "reply": reply}))
        return job.status == JobStatus.succeeded
    console.print("memq> ", style="bold cyan", end="")
    try:
        for delta in stream:
            sys.stdout.write(delta)
            sys.stdout.flush()
    except KeyboardInterrupt:
        client.cancel(accepted.id)
        typer.echo("\n(cancelled)")
        return False
    typer.echo("")
    ended = stream.job
    if ended is None or ended.status != JobStatus.succeeded:
        reason = ended.error.message if ended and ended.error else "it was cancelled"
        print_error(f"the turn did not succeed: {reason}")
        return False
    return True


def chat(
    session: Annotated[str, typer.Option("--session", "-s", help="The conversation's id.")],
    user: Annotated[
        str | None, typer.Option("--user", "-u", help="Also use this user's memories.")
    ] = None,
    max_new_tokens: Annotated[int | None, typer.Option(help="Reply length cap.")] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="One JSON object per turn instead of streaming.")
    ] = False,
    gateway: Gateway = None,
    api_key: ApiKey = None,
) -> None:
    """Chat in a session that remembers; replies stream in.

    Lines are read from the terminal or stdin. Commands: /history shows the transcript,
    /forget deletes the session's memories, /exit (or Ctrl-D) leaves. Exit 1 if a turn
    failed."""
    failed = False
    with connect(gateway, api_key) as client:
        if not as_json:
            console.print(f"session {session}: /history, /forget, /exit", style="dim", markup=False)
        while True:
            interactive = sys.stdin.isatty()
            try:
                line = input("you> " if interactive and not as_json else "").strip()
            except (EOFError, KeyboardInterrupt):
                break
            if not line:
                continue
            if not interactive and not as_json:
                console.print(Text.assemble(("you> ", "bold"), line))  # a readable transcript
            if line in ("/exit", "/quit"):
                break
            if line == "/forget":
                gone = client.forget_session(session)
                typer.echo(
                    json.dumps(gone.model_dump())
                    if as_json
                    else f"forgot session {session}: {gone.deleted_memories} memories deleted"
                )
            elif line == "/history":
                try:
                    transcript = client.get_session(session)
                except NotFoundError:
                    typer.echo(f"session {session} has no turns yet")
                    continue
                if as_json:
                    echo_json(transcript)
                else:
                    console.print(views.transcript(transcript))
            elif not _chat_turn(
                client,
                line,
                session=session,
                user=user,
                max_new_tokens=max_new_tokens,
                as_json=as_json,
            ):
                failed = True
    if failed:
        raise typer.Exit(EXIT_REFUSED)
