"""`memq jobs ls | show | watch | cancel | replay`."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import typer
from rich.text import Text

from memq.cli import views
from memq.cli.common import (
    ApiKey,
    Gateway,
    JsonOpt,
    Timeout,
    Watch,
    connect,
    console,
    echo_json,
    local_time,
)
from memq.cli.follow import show_accepted, watch_job
from memq.contracts import JobListResponse, JobStatus, JobType

app = typer.Typer(help="List, show, watch, cancel and replay jobs.", no_args_is_help=True)
JobIdArg = Annotated[str, typer.Argument(help="The job's id.")]


@app.command("ls")
def jobs_ls(
    status: Annotated[
        list[JobStatus] | None, typer.Option("--status", "-s", help="Only these (repeatable).")
    ] = None,
    type_: Annotated[
        list[JobType] | None, typer.Option("--type", "-t", help="Only these (repeatable).")
    ] = None,
    since: Annotated[
        datetime | None, typer.Option(help="Created at or after (local time unless given).")
    ] = None,
    until: Annotated[datetime | None, typer.Option(help="Created before.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=200, help="Jobs per page.")] = 20,
    cursor: Annotated[str | None, typer.Option(help="The page after this cursor.")] = None,
    all_pages: Annotated[bool, typer.Option("--all", help="Every page.")] = False,
    as_json: JsonOpt = False,
    gateway: Gateway = None,
    api_key: ApiKey = None,
) -> None:
    """The tenant's jobs, newest first, a page at a time (`--cursor` for the next)."""
    filters: dict[str, Any] = {
        "status": status,
        "type": type_,
        "created_after": local_time(since),
        "created_before": local_time(until),
    }
    with connect(gateway, api_key) as client:
        if all_pages:
            items = list(client.iter_jobs(page_size=limit, **filters))
            next_cursor = None
        else:
            page = client.list_jobs(limit=limit, cursor=cursor, **filters)
            items, next_cursor = page.items, page.next_cursor
    if as_json:
        echo_json(JobListResponse(items=items, next_cursor=next_cursor))
        return
    if not items:
        typer.echo("no jobs")
        return
    console.print(views.jobs_table(items))
    if next_cursor:
        console.print(
            f"more: memq jobs ls --cursor {next_cursor}",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )


@app.command("show")
def jobs_show(
    job_id: JobIdArg, as_json: JsonOpt = False, gateway: Gateway = None, api_key: ApiKey = None
) -> None:
    """A job: status and a time per state, its text, retrieved memories, usage, timings."""
    with connect(gateway, api_key) as client:
        job = client.get(job_id)
    if as_json:
        echo_json(job)
    else:
        console.print(views.job_details(job))


@app.command("watch")
def jobs_watch(
    job_id: JobIdArg,
    timeout: Timeout = 3600,
    as_json: JsonOpt = False,
    gateway: Gateway = None,
    api_key: ApiKey = None,
) -> None:
    """Follow a job live to its end; exit 1 unless it succeeds."""
    with connect(gateway, api_key) as client:
        watch_job(client, job_id, as_json=as_json, timeout=timeout)


@app.command("cancel")
def jobs_cancel(
    job_id: JobIdArg, as_json: JsonOpt = False, gateway: Gateway = None, api_key: ApiKey = None
) -> None:
    """Cancel a queued or running job.

    A queued job never runs; a running one stops at its next token and keeps its partial
    text; a finished job is refused (exit 1)."""
    with connect(gateway, api_key) as client:
        job = client.cancel(job_id)
    if as_json:
        echo_json(job)
    else:
        console.print(Text.assemble("job ", job.id, " ", views.status_text(job.status)))


@app.command("replay")
def jobs_replay(
    job_id: JobIdArg,
    watch: Watch = False,
    timeout: Timeout = 3600,
    as_json: JsonOpt = False,
    gateway: Gateway = None,
    api_key: ApiKey = None,
) -> None:
    """Run a finished job again with the same memories, parameters and seed."""
    with connect(gateway, api_key) as client:
        accepted = client.replay(job_id)
        show_accepted(client, accepted, watch=watch, as_json=as_json, timeout=timeout)
