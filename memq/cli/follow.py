"""Following a job to its end (`--watch`, `memq jobs watch`): a live progress bar and its
text on a terminal, plain lines otherwise, then what it retrieved and its timings."""

from __future__ import annotations

import sys

import typer
from rich.live import Live

from memq.cli import views
from memq.cli.common import EXIT_REFUSED, console, echo_json, print_error
from memq.contracts import ChatJobRequest, GenerateJobRequest, JobAccepted, JobPublic, JobStatus
from memq.sdk import Client, ResultEvent, StatusEvent, TextAccumulator, TokenEvent


def watch_job(client: Client, job_id: str, *, as_json: bool, timeout: float) -> None:
    """Follow a job to its end: a live progress bar and its text on a terminal, the text
    as plain lines otherwise; then what it retrieved and its timings. Exit 1 unless it
    succeeded."""
    if as_json:
        job = client.wait(job_id, timeout)
    else:
        try:
            job = _follow(client, job_id, timeout)
        except KeyboardInterrupt:
            print_error(
                f"stopped watching; job {job_id} goes on (`memq jobs cancel {job_id}` stops it)"
            )
            raise typer.Exit(130) from None
    if as_json:
        echo_json(job)
    else:
        console.print(views.outcome(job))
    if job.status != JobStatus.succeeded:
        raise typer.Exit(EXIT_REFUSED)


def _follow(client: Client, job_id: str, timeout: float) -> JobPublic:
    first = client.get(job_id)
    request = first.request
    total = None
    if isinstance(request, GenerateJobRequest | ChatJobRequest):
        total = request.params.max_new_tokens
    text = TextAccumulator()
    status: JobStatus | None = first.status
    if not console.is_terminal:
        console.print(f"job {job_id} {first.status.value}", highlight=False)
        for event in client.events(job_id, timeout=timeout):
            if isinstance(event, TokenEvent):
                sys.stdout.write(text.token(event))
            elif isinstance(event, ResultEvent):
                sys.stdout.write(text.result(event.job) + "\n")
            sys.stdout.flush()
        assert text.job is not None  # the event stream ends with the result
        return text.job
    live = views.LiveJob(job_id, total)
    with Live(live, console=console, refresh_per_second=12, transient=False):
        for event in client.events(job_id, timeout=timeout):
            if isinstance(event, TokenEvent):
                text.token(event)
            elif isinstance(event, StatusEvent):
                status = event.status
            else:
                text.result(event.job)
                status = event.job.status
            live.update(status, text.tokens, text.text)
    assert text.job is not None
    return text.job


def show_accepted(
    client: Client, accepted: JobAccepted, *, watch: bool, as_json: bool, timeout: float
) -> None:
    """A job just queued: its id (or JSON), or with --watch followed to its end."""
    if watch:
        watch_job(client, accepted.id, as_json=as_json, timeout=timeout)
    elif as_json:
        echo_json(accepted)
    else:
        typer.echo(accepted.id)
