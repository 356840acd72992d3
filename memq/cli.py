"""The `memq` command: run the stack on embedded defaults and talk to it.

Every command that talks to the gateway goes through the SDK (`memq.Client`) and ends with
the exit codes of `EXIT_CODES`; every command that prints data has `--json`."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import signal
import sys
import uuid
from collections.abc import Iterator, Sequence
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import httpx
import redis
import typer
from pydantic import BaseModel, ValidationError
from rich.console import Console
from rich.live import Live
from rich.markup import escape
from rich.text import Text

from memq import cli_views as views
from memq.contracts import (
    NAMESPACE_PATTERN,
    ChatJobRequest,
    GenerateJobRequest,
    JobAccepted,
    JobListResponse,
    JobPublic,
    JobStatus,
    JobType,
    MemoryKind,
    Priority,
    SearchMode,
)
from memq.errors import APIError, InvalidInput, MemqError, NotFoundError, WaitTimeout
from memq.evaluation import runner as evaluation
from memq.evaluation.scoring import MAX_TOKENS, MODES
from memq.logs import configure_logging
from memq.sdk import (
    APIConnectionError,
    Client,
    ResultEvent,
    StatusEvent,
    TextAccumulator,
    TokenEvent,
)
from memq.settings import DEFAULT_GATEWAY_URL, LauncherSettings
from memq.store.keystore import ApiKeyStore

if TYPE_CHECKING:
    from memq.launcher import Stack

EXIT_CODES = (
    "Exit codes: 0 ok; 1 the gateway refused the request, or the job failed, was cancelled "
    "or did not finish in time; 2 usage error (a bad option or value); 3 the gateway cannot "
    "be reached. Configuration: MEMQ_GATEWAY_URL (default http://127.0.0.1:8000) and "
    "MEMQ_API_KEY, from the environment or ./.env; --gateway and --api-key override them."
)
app = typer.Typer(
    help="memq: async LLM jobs with explicit long-term memory.",
    epilog=EXIT_CODES,
    no_args_is_help=True,
)
console = Console()
RUN = "Run memq"
USE = "Jobs, memories, chat"

DEMO_NAMESPACE = "user:demo"
DEMO_MEMORIES = (
    "Alice lives in Paris and works as a marine biologist.",
    "Alice's favourite food is ramen.",
)
DEMO_JOB: dict[str, Any] = {
    "type": "generate",
    "prompt": "Question: Where does Alice live and what does she do?\nAnswer:",
    "params": {"max_new_tokens": 32},
    "memory": {"namespace": DEMO_NAMESPACE, "top_k": 3},
}


class _DemoFailed(Exception):
    def __init__(self, reason: str, components: tuple[str, ...]) -> None:
        super().__init__(reason)
        self.components = components


def _print_banner(stack: Stack, embedded_redis: bool) -> None:
    gw = stack.gateway_url
    logs = ", ".join(sorted(p.log_path.name for p in stack.procs.values()))
    redis_note = (
        f"embedded, AOF everysec, data in {stack.data_dir / 'redis'}"
        if embedded_redis
        else "external (MEMQ_REDIS_URL)"
    )
    token_note = (
        f"{stack.service_token_file} (generated for this data dir)"
        if stack.service_token_file
        else "from MEMQ_SERVICE_TOKEN"
    )
    workers = ", ".join(f"{w.name} (pid {w.pid})" for w in stack.workers)
    cli_env = "" if gw == DEFAULT_GATEWAY_URL else f"MEMQ_GATEWAY_URL={gw} "
    console.rule(f"[bold]memq is up[/] — serving model [bold green]{escape(stack.model or '?')}[/]")
    # Plain, unwrapped lines: the commands must survive copy and paste.
    console.print(
        f"""  gateway         {gw}  (OpenAPI docs: {gw}/docs)
  playground      {gw}/ui
  memory service  {stack.memory_url}
  redis           {stack.redis_url}  ({redis_note})
  workers         {workers}
  data dir        {stack.data_dir}
  logs            {stack.log_dir}/  ({logs})
  service token   {token_note}

Ask about what the demo stored in namespace {DEMO_NAMESPACE}:
  curl -s {gw}/v1/jobs -H 'content-type: application/json' \\
    -d '{{"type": "generate", "prompt": "Question: Where does Alice live?\\nAnswer:",
         "memory": {{"namespace": "{DEMO_NAMESPACE}"}}}}'
Poll it:
  curl -s {gw}/v1/jobs/<id>
Add a memory:
  curl -s {gw}/v1/memories -H 'content-type: application/json' \\
    -d '{{"namespace": "{DEMO_NAMESPACE}", "text": "Alice has a brother, Bob, who lives in Lyon."}}'
Or use the CLI:
  {cli_env}memq submit generate "Where does Alice live?" -n {DEMO_NAMESPACE} --watch
  {cli_env}memq chat --session demo --user demo""",
        markup=False,
        highlight=False,
        soft_wrap=True,
    )
    console.rule()


def _run_demo(stack: Stack, *, require_used_memory: bool) -> None:
    """Store the demo memories, run the demo job, print its result; `_DemoFailed` if it
    did not succeed (or, for the smoke run, used none of the memories it retrieved)."""
    with Client(stack.gateway_url) as client:
        try:
            for text in DEMO_MEMORIES:
                client.add_memory(DEMO_NAMESPACE, text)
        except (MemqError, httpx.HTTPError) as exc:
            raise _DemoFailed(f"adding the demo memories failed: {exc}", ("memory",)) from exc
        try:
            accepted = client.submit(DEMO_JOB)
            console.print(f"demo job {accepted.id} queued; waiting …")
            job = client.wait(accepted.id, timeout=600)
        except (MemqError, httpx.HTTPError, TimeoutError) as exc:
            raise _DemoFailed(f"the demo job failed: {exc}", ("gateway", "worker")) from exc
    console.print_json(job.model_dump_json(include={"id", "status", "error", "result"}))
    if job.status != JobStatus.succeeded or job.result is None:
        detail = job.error.message if job.error else "no result"
        raise _DemoFailed(f"the demo job ended {job.status.value}: {detail}", ("worker",))
    if require_used_memory and not any(m.used for m in job.result.memories):
        raise _DemoFailed(
            f"the demo job retrieved {len(job.result.memories)} memories from "
            f"{DEMO_NAMESPACE} and used none of them",
            ("worker", "memory"),
        )


def _report(title: str, detail: str, style: str = "red") -> None:
    """A failure line: log lines and paths printed as they are, never wrapped or styled."""
    console.print(title, style=style, end=" ")
    console.print(detail, markup=False, highlight=False, soft_wrap=True)


def _print_tails(stack: Stack, components: tuple[str, ...]) -> None:
    for name, child in stack.procs.items():
        if name.startswith(components):
            _report(f"last lines of {child.log_path}:", f"\n{child.tail()}", style="bold")


@app.command(rich_help_panel=RUN)
def up(
    data_dir: Annotated[
        Path | None, typer.Option(help="State and logs [MEMQ_DATA_DIR, default .memq].")
    ] = None,
    gateway_port: Annotated[
        int | None, typer.Option(help="[MEMQ_GATEWAY_PORT, default 8000]")
    ] = None,
    memory_port: Annotated[
        int | None, typer.Option(help="[MEMQ_MEMORY_PORT, default 8001]")
    ] = None,
    redis_port: Annotated[
        int | None,
        typer.Option(help="Port of the embedded Redis [MEMQ_EMBEDDED_REDIS_PORT, default 6390]."),
    ] = None,
    workers: Annotated[
        int | None, typer.Option(help="Worker processes [MEMQ_WORKERS, default 1].")
    ] = None,
    demo: Annotated[bool, typer.Option(help="Store demo memories and run a demo job.")] = False,
    smoke: Annotated[
        bool,
        typer.Option(
            help="Start, run the demo job, check that it succeeded using a retrieved memory, "
            "stop; exit non-zero with the reason otherwise (CI)."
        ),
    ] = False,
) -> None:
    """Start everything: Redis, the memory service, worker(s), the gateway.

    Redis is embedded unless MEMQ_REDIS_URL is set. A part that dies is restarted; Ctrl-C
    stops them all."""
    overrides: dict[str, Any] = {
        "data_dir": data_dir,
        "gateway_port": gateway_port,
        "memory_port": memory_port,
        "embedded_redis_port": redis_port,
        "workers": workers,
    }
    try:
        settings = LauncherSettings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        _report("invalid settings:", str(exc))
        raise typer.Exit(2) from exc
    configure_logging(settings, "launcher")
    # One line per health poll and job poll would bury the banner and the result.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    raise typer.Exit(_up(settings, demo=demo or smoke, smoke=smoke))


def _up(settings: LauncherSettings, *, demo: bool, smoke: bool) -> int:
    from memq.launcher import LaunchError, start_stack

    embedded_redis = not settings.redis_url_explicit
    data_dir = settings.data_dir.resolve()
    console.print(
        f"starting memq in {data_dir} (the first start may fetch and convert the model; "
        f"logs in {data_dir / 'logs'}) …",
        markup=False,
        soft_wrap=True,
    )
    # SIGTERM stops the stack like Ctrl-C does, children in order, instead of orphaning them.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    stack = None
    try:
        stack = start_stack(
            data_dir,
            settings=settings,
            redis_url=None if embedded_redis else settings.redis_url,
            gateway_port=settings.gateway_port,
            memory_port=settings.memory_port,
            redis_port=settings.embedded_redis_port,
            workers=settings.workers,
        )
        _print_banner(stack, embedded_redis)
        if demo:
            _run_demo(stack, require_used_memory=smoke)
        if smoke:
            console.print("[bold green]smoke run passed[/]")
            return 0
        console.print("memq is running; Ctrl-C stops everything.")
        while (failure := stack.wait(timeout=1.0)) is None:
            pass
        _report("memq gave up:", failure)
        return 1
    except LaunchError as exc:
        _report("memq could not start:", str(exc))
        return 1
    except _DemoFailed as exc:
        _report("demo failed:", str(exc))
        if stack is not None:
            if stack.failure:
                _report("memq gave up:", stack.failure)
            _print_tails(stack, exc.components)
        return 1
    except KeyboardInterrupt:
        return 0 if stack is not None else 130
    finally:
        # A second Ctrl-C must not cut the orderly stop short and orphan the children.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if stack is not None:
            console.print("stopping memq …")
            stack.stop()


# ---------------------------------------------------------------- talking to the gateway

EXIT_REFUSED = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3

err = Console(stderr=True)


def make_client(gateway: str | None, api_key: str | None) -> Client:
    """The SDK client the commands use (tests swap it for one on a scripted transport)."""
    return Client(gateway, api_key)


def _error(message: str) -> None:
    err.print(message, style="red", markup=False, highlight=False, soft_wrap=True)


def _validation_summary(exc: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" if e["loc"] else e["msg"]
        for e in exc.errors()[:5]
    )


@contextlib.contextmanager
def _gateway(gateway: str | None, api_key: str | None) -> Iterator[Client]:
    """A client whose failures end the command with the documented exit code and one line
    on stderr, never a traceback."""
    try:
        with make_client(gateway, api_key) as client:
            yield client
    except APIConnectionError as exc:
        _error(f"error: {exc.message}")
        raise typer.Exit(EXIT_UNREACHABLE) from exc
    except APIError as exc:
        hint = f" (retry after {exc.retry_after:g} s)" if exc.retry_after else ""
        _error(f"error: {exc.status_code} {exc.code}: {exc.server_message}{hint}")
        raise typer.Exit(EXIT_REFUSED) from exc
    except WaitTimeout as exc:
        _error(f"error: {exc.message}")
        raise typer.Exit(EXIT_REFUSED) from exc
    except ValidationError as exc:
        _error(f"error: invalid input: {_validation_summary(exc)}")
        raise typer.Exit(EXIT_USAGE) from exc


def _echo_json(value: BaseModel | Sequence[BaseModel] | dict[str, Any]) -> None:
    if isinstance(value, BaseModel):
        typer.echo(value.model_dump_json())
    elif isinstance(value, dict):
        typer.echo(json.dumps(value))
    else:
        typer.echo(json.dumps([v.model_dump(mode="json") for v in value]))


def _read_text(value: str, what: str) -> str:
    """The argument itself, or standard input for `-`."""
    if value != "-":
        return value
    text = sys.stdin.read()
    if not text.strip():
        _error(f"error: {what} from standard input is empty")
        raise typer.Exit(EXIT_USAGE)
    return text


def _read_file(path: Path) -> str:
    if str(path) == "-":
        return _read_text("-", "the text")
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        _error(f"error: cannot read {path}: {exc}")
        raise typer.Exit(EXIT_USAGE) from exc


def _metadata(pairs: list[str] | None) -> dict[str, str] | None:
    if not pairs:
        return None
    found: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"{pair!r} is not KEY=VALUE", param_hint="--meta")
        found[key] = value
    return found


def _local(moment: datetime | None) -> datetime | None:
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


# ---------------------------------------------------------------------------- watching a job


def _watch(client: Client, job_id: str, *, as_json: bool, timeout: float) -> None:
    """Follow a job to its end: a live progress bar and its text on a terminal, the text
    as plain lines otherwise; then what it retrieved and its timings. Exit 1 unless it
    succeeded."""
    if as_json:
        job = client.wait(job_id, timeout)
    else:
        try:
            job = _follow(client, job_id, timeout)
        except KeyboardInterrupt:
            _error(f"stopped watching; job {job_id} goes on (`memq jobs cancel {job_id}` stops it)")
            raise typer.Exit(130) from None
    if as_json:
        _echo_json(job)
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


def _accepted(
    client: Client, accepted: JobAccepted, *, watch: bool, as_json: bool, timeout: float
) -> None:
    if watch:
        _watch(client, accepted.id, as_json=as_json, timeout=timeout)
    elif as_json:
        _echo_json(accepted)
    else:
        typer.echo(accepted.id)


# ---------------------------------------------------------------------------- memq submit

submit_app = typer.Typer(
    help="Queue a generate or summarize job. Prints the job id, or with --watch follows it "
    "live (tokens as they stream, then the retrieved memories and the timings).",
    no_args_is_help=True,
)
app.add_typer(submit_app, name="submit", rich_help_panel=USE)


@submit_app.command("generate")
def submit_generate(
    prompt: Annotated[str, typer.Argument(help="The text to continue; `-` reads stdin.")],
    namespace: Annotated[
        list[str] | None,
        typer.Option("--namespace", "-n", help="Retrieve memories from here (repeatable)."),
    ] = None,
    top_k: Annotated[int | None, typer.Option(help="Memories to retrieve (0-50).")] = None,
    max_new_tokens: Annotated[int | None, typer.Option(help="Tokens to generate.")] = None,
    temperature: Annotated[float | None, typer.Option(help="0 = greedy.")] = None,
    seed: Annotated[int | None, typer.Option(help="Seed of a sampled job.")] = None,
    priority: PriorityOpt = None,
    meta: Meta = None,
    idempotency_key: IdempotencyKey = None,
    watch: Watch = False,
    timeout: Timeout = 3600,
    as_json: JsonOpt = False,
    gateway: Gateway = None,
    api_key: ApiKey = None,
) -> None:
    """Queue a generate job that retrieves from --namespace before generating."""
    names = namespace or []
    with _gateway(gateway, api_key) as client:
        accepted = client.generate(
            _read_text(prompt, "the prompt"),
            namespace=names[0] if len(names) == 1 else (names or None),
            top_k=top_k,
            max_new_tokens=max_new_tokens,
            temperature=temperature,
            seed=seed,
            priority=priority,
            metadata=_metadata(meta),
            idempotency_key=idempotency_key,
        )
        _accepted(client, accepted, watch=watch, as_json=as_json, timeout=timeout)


@submit_app.command("summarize")
def submit_summarize(
    file: Annotated[Path, typer.Argument(help="The text to summarize; `-` reads stdin.")],
    sentences: Annotated[int | None, typer.Option(help="Instruct models: sentences.")] = None,
    max_new_tokens: Annotated[int | None, typer.Option(help="Tokens per model call.")] = None,
    priority: PriorityOpt = None,
    meta: Meta = None,
    idempotency_key: IdempotencyKey = None,
    watch: Watch = False,
    timeout: Timeout = 3600,
    as_json: JsonOpt = False,
    gateway: Gateway = None,
    api_key: ApiKey = None,
) -> None:
    """Queue a summarize job for FILE (longer than the context: map-reduced over chunks)."""
    text = _read_file(file)
    with _gateway(gateway, api_key) as client:
        accepted = client.summarize(
            text,
            sentences=sentences,
            max_new_tokens=max_new_tokens,
            priority=priority,
            metadata=_metadata(meta),
            idempotency_key=idempotency_key,
        )
        _accepted(client, accepted, watch=watch, as_json=as_json, timeout=timeout)


# ---------------------------------------------------------------------------- memq jobs

jobs_app = typer.Typer(help="List, show, watch, cancel and replay jobs.", no_args_is_help=True)
app.add_typer(jobs_app, name="jobs", rich_help_panel=USE)
JobIdArg = Annotated[str, typer.Argument(help="The job's id.")]


@jobs_app.command("ls")
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
        "created_after": _local(since),
        "created_before": _local(until),
    }
    with _gateway(gateway, api_key) as client:
        if all_pages:
            items = list(client.iter_jobs(page_size=limit, **filters))
            next_cursor = None
        else:
            page = client.list_jobs(limit=limit, cursor=cursor, **filters)
            items, next_cursor = page.items, page.next_cursor
    if as_json:
        _echo_json(JobListResponse(items=items, next_cursor=next_cursor))
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


@jobs_app.command("show")
def jobs_show(
    job_id: JobIdArg, as_json: JsonOpt = False, gateway: Gateway = None, api_key: ApiKey = None
) -> None:
    """A job: status and a time per state, its text, retrieved memories, usage, timings."""
    with _gateway(gateway, api_key) as client:
        job = client.get(job_id)
    if as_json:
        _echo_json(job)
    else:
        console.print(views.job_details(job))


@jobs_app.command("watch")
def jobs_watch(
    job_id: JobIdArg,
    timeout: Timeout = 3600,
    as_json: JsonOpt = False,
    gateway: Gateway = None,
    api_key: ApiKey = None,
) -> None:
    """Follow a job live to its end; exit 1 unless it succeeds."""
    with _gateway(gateway, api_key) as client:
        _watch(client, job_id, as_json=as_json, timeout=timeout)


@jobs_app.command("cancel")
def jobs_cancel(
    job_id: JobIdArg, as_json: JsonOpt = False, gateway: Gateway = None, api_key: ApiKey = None
) -> None:
    """Cancel a queued or running job.

    A queued job never runs; a running one stops at its next token and keeps its partial
    text; a finished job is refused (exit 1)."""
    with _gateway(gateway, api_key) as client:
        job = client.cancel(job_id)
    if as_json:
        _echo_json(job)
    else:
        console.print(Text.assemble("job ", job.id, " ", views.status_text(job.status)))


@jobs_app.command("replay")
def jobs_replay(
    job_id: JobIdArg,
    watch: Watch = False,
    timeout: Timeout = 3600,
    as_json: JsonOpt = False,
    gateway: Gateway = None,
    api_key: ApiKey = None,
) -> None:
    """Run a finished job again with the same memories, parameters and seed."""
    with _gateway(gateway, api_key) as client:
        accepted = client.replay(job_id)
        _accepted(client, accepted, watch=watch, as_json=as_json, timeout=timeout)


# ---------------------------------------------------------------------------- memq memory

memory_app = typer.Typer(
    help="Add, ingest, search, list and forget memories.", no_args_is_help=True
)
app.add_typer(memory_app, name="memory", rich_help_panel=USE)


@memory_app.command("add")
def memory_add(
    text: Annotated[str, typer.Argument(help="The memory; `-` reads stdin.")],
    namespace: Namespace,
    kind: Annotated[MemoryKind | None, typer.Option(help="What sort of memory.")] = None,
    meta: Meta = None,
    source: Annotated[str | None, typer.Option(help="Where it came from.")] = None,
    ttl: Annotated[int | None, typer.Option(help="Expire after this many seconds.")] = None,
    as_json: JsonOpt = False,
    gateway: Gateway = None,
    api_key: ApiKey = None,
) -> None:
    """Store a memory in a namespace (a near-duplicate returns the existing one)."""
    with _gateway(gateway, api_key) as client:
        memory = client.add_memory(
            namespace,
            _read_text(text, "the memory"),
            kind=kind,
            metadata=_metadata(meta),
            source=source,
            ttl_seconds=ttl,
        )
    if as_json:
        _echo_json(memory)
        return
    dedup = " (a near-duplicate of it was already there)" if memory.deduplicated else ""
    typer.echo(f"memory {memory.id} in {memory.namespace}{dedup}")


@memory_app.command("ingest")
def memory_ingest(
    file: Annotated[Path, typer.Argument(help="The document; `-` reads stdin.")],
    namespace: Namespace,
    document_id: Annotated[str | None, typer.Option(help="Default: generated.")] = None,
    chunk_chars: Annotated[int | None, typer.Option(help="Characters per chunk.")] = None,
    overlap_chars: Annotated[int | None, typer.Option(help="Overlap between chunks.")] = None,
    meta: Meta = None,
    as_json: JsonOpt = False,
    gateway: Gateway = None,
    api_key: ApiKey = None,
) -> None:
    """Split a document into overlapping chunks stored as memories."""
    text = _read_file(file)
    with _gateway(gateway, api_key) as client:
        done = client.ingest_document(
            namespace,
            text,
            document_id=document_id,
            chunk_chars=chunk_chars,
            overlap_chars=overlap_chars,
            metadata=_metadata(meta),
            source=None if str(file) == "-" else file.name,
        )
    if as_json:
        _echo_json(done)
    else:
        typer.echo(f"document {done.document_id}: {len(done.chunks)} chunks in {namespace}")


@memory_app.command("search")
def memory_search(
    query: Annotated[str, typer.Argument(help="What to look for.")],
    namespace: Namespace,
    top_k: Annotated[int, typer.Option(min=1, max=100, help="Hits.")] = 5,
    mode: Annotated[SearchMode | None, typer.Option(help="dense, keyword or hybrid.")] = None,
    as_json: JsonOpt = False,
    gateway: Gateway = None,
    api_key: ApiKey = None,
) -> None:
    """The best matches in a namespace, with their scores and cosine similarity."""
    with _gateway(gateway, api_key) as client:
        hits = client.search(namespace, query, top_k=top_k, mode=mode)
    if as_json:
        _echo_json(hits)
    elif hits:
        console.print(views.hits_table(hits))
    else:
        typer.echo(f"nothing found in {namespace}")


@memory_app.command("ls")
def memory_ls(
    namespace: Namespace,
    limit: Annotated[int, typer.Option(min=1, max=1000, help="Memories per page.")] = 50,
    cursor: Annotated[str | None, typer.Option(help="The page after this cursor.")] = None,
    all_pages: Annotated[bool, typer.Option("--all", help="Every page.")] = False,
    as_json: JsonOpt = False,
    gateway: Gateway = None,
    api_key: ApiKey = None,
) -> None:
    """A namespace's memories, a page at a time."""
    with _gateway(gateway, api_key) as client:
        if all_pages:
            items, next_cursor = list(client.iter_memories(namespace, page_size=limit)), None
        else:
            page = client.list_memories(namespace, limit=limit, cursor=cursor)
            items, next_cursor = page.items, page.next_cursor
    if as_json:
        typer.echo(
            json.dumps(
                {"items": [m.model_dump(mode="json") for m in items], "next_cursor": next_cursor}
            )
        )
        return
    if not items:
        typer.echo(f"no memories in {namespace}")
        return
    console.print(views.memories_table(items))
    if next_cursor:
        console.print(
            f"more: memq memory ls -n {namespace} --cursor {next_cursor}",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )


@memory_app.command("forget")
def memory_forget(
    memory_ids: Annotated[
        list[str] | None, typer.Argument(help="Memories to delete, by id.", show_default=False)
    ] = None,
    namespace: Annotated[
        str | None,
        typer.Option("--namespace", "-n", help="Without ids: delete the whole namespace."),
    ] = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask.")] = False,
    as_json: JsonOpt = False,
    gateway: Gateway = None,
    api_key: ApiKey = None,
) -> None:
    """Delete memories by id, or a whole namespace.

    Forgetting a namespace also cancels the queued jobs that would read it."""
    if bool(memory_ids) == bool(namespace):
        raise typer.BadParameter("give memory ids, or --namespace (not both)")
    if namespace and not yes:
        if not sys.stdin.isatty():
            raise typer.BadParameter(f"pass --yes to forget all of {namespace}")
        typer.confirm(f"Delete every memory in {namespace}?", abort=True)
    with _gateway(gateway, api_key) as client:
        if namespace:
            forgotten = client.forget(namespace)
            if as_json:
                _echo_json(forgotten)
            else:
                typer.echo(
                    f"forgot {forgotten.deleted} memories in {namespace}; cancelled "
                    f"{forgotten.cancelled_jobs} queued jobs"
                )
            return
        deleted = [client.delete_memory(memory_id) for memory_id in memory_ids or []]
    if as_json:
        _echo_json(deleted)
    else:
        for gone in deleted:
            typer.echo(f"deleted {gone.id}")


# ---------------------------------------------------------------------------- memq chat


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
        _error(f"the turn did not succeed: {reason}")
        return False
    return True


@app.command(rich_help_panel=USE)
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
    with _gateway(gateway, api_key) as client:
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
                    _echo_json(transcript)
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


# ---------------------------------------------------------------------------- worker, bench

_PASS_THROUGH = {"allow_extra_args": True, "ignore_unknown_options": True}
SOURCE_ROOT = Path(__file__).resolve().parent.parent


@app.command(context_settings=_PASS_THROUGH, rich_help_panel=RUN)
def worker(ctx: typer.Context) -> None:
    """Run one more worker process (`python -m worker`).

    It reads the MEMQ_* settings (MEMQ_REDIS_URL, MEMQ_SERVICE_TOKEN, MEMQ_MODEL, ...).
    Extra arguments go to `celery worker`, e.g. `memq worker -- --hostname=gpu1@%h`
    (not `--autoscale`: Celery's thread pool cannot grow; see docs/deployment.md)."""
    os.execv(sys.executable, [sys.executable, "-m", "worker", *ctx.args])


class Bench(StrEnum):
    stack = "stack"
    engine = "engine"
    memory = "memory"


@app.command(context_settings=_PASS_THROUGH, rich_help_panel=RUN)
def bench(
    ctx: typer.Context,
    which: Annotated[Bench, typer.Argument(help="Which benchmark.")] = Bench.stack,
    full: Annotated[
        bool, typer.Option("--full", help="The full run instead of the quick one.")
    ] = False,
) -> None:
    """Run a benchmark from bench/ (quick unless --full).

    `stack`: the whole service over HTTP, simple vs batched engine; `engine`: the engines
    in process; `memory`: ingest and search. Results go to bench/results/. Extra arguments
    go to the benchmark, e.g. `memq bench stack -- --clients 1 4`."""
    script = SOURCE_ROOT / "bench" / f"{which.value}_bench.py"
    if not script.is_file():
        _error(f"error: no {script}: the benchmarks ship with the source tree; run from a checkout")
        raise typer.Exit(EXIT_USAGE)
    quick = ["--quick"] if not full and which != Bench.memory else []
    os.chdir(SOURCE_ROOT)
    os.execv(sys.executable, [sys.executable, "-m", f"bench.{script.stem}", *quick, *ctx.args])


def _search_modes(values: list[str] | None) -> list[SearchMode]:
    """`--mode hybrid --mode dense` or `--modes hybrid,dense`; all of them by default."""
    if not values:
        return list(MODES)
    found: list[SearchMode] = []
    for name in ",".join(values).replace(",", " ").split():
        try:
            mode = SearchMode(name)
        except ValueError:
            choices = ", ".join(m.value for m in SearchMode)
            raise typer.BadParameter(
                f"{name!r} is not a search mode; choose from {choices}", param_hint="--mode"
            ) from None
        if mode not in found:
            found.append(mode)
    return found


@app.command("eval", rich_help_panel=RUN)
def eval_(
    quick: Annotated[
        bool,
        typer.Option("--quick", help="10 facts among 100 distractors (default: 40 among 400)."),
    ] = False,
    namespace: Annotated[
        str | None,
        typer.Option(
            "--namespace",
            "-n",
            help="Where to store the set; it must be empty (default: eval:<random>).",
        ),
    ] = None,
    mode: Annotated[
        list[str] | None,
        typer.Option(
            "--mode",
            "--modes",
            "-m",
            help="Search modes to measure: dense, keyword, hybrid (repeatable or "
            "comma-separated; default: all).",
        ),
    ] = None,
    with_answers: Annotated[
        bool,
        typer.Option(
            "--answers/--no-answers",
            help="Also ask every question as a chat job, memory on and off.",
        ),
    ] = True,
    max_new_tokens: Annotated[
        int, typer.Option(min=1, max=1024, help="Tokens per answer.")
    ] = MAX_TOKENS,
    keep: Annotated[
        bool, typer.Option("--keep", help="Keep the namespace afterwards (to inspect it).")
    ] = False,
    as_json: JsonOpt = False,
    gateway: Gateway = None,
    api_key: ApiKey = None,
) -> None:
    """Measure memory on the running stack: recall per search mode, answers with memory
    on vs off.

    Stores memq's labelled set (fictional facts, paraphrased questions, distractors) in a
    fresh namespace, searches it, asks each question as a chat job with and without
    memory, and prints the numbers next to issue 10's targets: reported, not enforced
    (exit 0 when it ran). Then deletes the namespace unless --keep."""
    modes = _search_modes(mode)
    name = namespace or f"eval:{uuid.uuid4().hex[:12]}"
    if not re.fullmatch(NAMESPACE_PATTERN, name):
        raise typer.BadParameter(
            f"{name!r} is not a namespace: 1-128 letters, digits and _ . : @ -",
            param_hint="--namespace",
        )
    with _gateway(gateway, api_key) as client:
        if client.list_memories(name, limit=1).items:
            _error(
                f"error: namespace {name} already holds memories; memq eval stores its set in "
                "an empty namespace and deletes it afterwards: pick another --namespace"
            )
            raise typer.Exit(EXIT_USAGE)
        spinner = None if as_json or not err.is_terminal else err.status("memq eval")
        with spinner or contextlib.nullcontext():
            try:
                report = evaluation.run(
                    client,
                    name,
                    quick=quick,
                    modes=modes,
                    with_answers=with_answers,
                    max_new_tokens=max_new_tokens,
                    progress=spinner.update if spinner else evaluation.quiet,
                )
            finally:
                if not keep:
                    client.forget(name)
        report.deleted = not keep
    if as_json:
        _echo_json(report.to_json())
    else:
        console.print(views.eval_report(report))


# ---------------------------------------------------------------------------- shortcuts

SHORTCUTS = "Shortcuts (the first commands memq had)"


@app.command(rich_help_panel=SHORTCUTS)
def remember(
    namespace: str,
    text: str,
    as_json: JsonOpt = False,
    gateway: Gateway = None,
    api_key: ApiKey = None,
) -> None:
    """Add a memory to NAMESPACE (= memq memory add TEXT -n NAMESPACE)."""
    memory_add(text, namespace, as_json=as_json, gateway=gateway, api_key=api_key)


@app.command(rich_help_panel=SHORTCUTS)
def generate(
    prompt: str,
    namespace: Annotated[str | None, typer.Option(help="Retrieve memories from here.")] = None,
    max_new_tokens: Annotated[int | None, typer.Option(help="Tokens to generate.")] = None,
    wait: Annotated[bool, typer.Option(help="Follow the job to its end.")] = True,
    as_json: JsonOpt = False,
    gateway: Gateway = None,
    api_key: ApiKey = None,
) -> None:
    """Generate, following the job live (= memq submit generate PROMPT -n NS --watch)."""
    submit_generate(
        prompt,
        namespace=[namespace] if namespace else None,
        max_new_tokens=max_new_tokens,
        watch=wait,
        as_json=as_json,
        gateway=gateway,
        api_key=api_key,
    )


@app.command(rich_help_panel=SHORTCUTS)
def summarize(
    file: Path,
    wait: Annotated[bool, typer.Option(help="Follow the job to its end.")] = True,
    as_json: JsonOpt = False,
    gateway: Gateway = None,
    api_key: ApiKey = None,
) -> None:
    """Summarize FILE, following the job live (= memq submit summarize FILE --watch)."""
    submit_summarize(file, watch=wait, as_json=as_json, gateway=gateway, api_key=api_key)


@app.command(rich_help_panel=SHORTCUTS)
def status(
    job_id: str, as_json: JsonOpt = False, gateway: Gateway = None, api_key: ApiKey = None
) -> None:
    """Show a job (= memq jobs show JOB_ID)."""
    jobs_show(job_id, as_json=as_json, gateway=gateway, api_key=api_key)


# ---------------------------------------------------------------------------- API keys

keys_app = typer.Typer(
    help="Create, list and revoke API keys. Talks to Redis directly (MEMQ_REDIS_URL, or the "
    "embedded Redis of `memq up` on MEMQ_EMBEDDED_REDIS_PORT). Exit codes: 0 ok, 1 not found "
    "or Redis unreachable, 2 bad input.",
    no_args_is_help=True,
)
app.add_typer(keys_app, name="keys", rich_help_panel="Administer")


def _keystore() -> ApiKeyStore:
    try:
        settings = LauncherSettings()
    except ValidationError as exc:
        typer.echo(f"invalid settings: {exc}", err=True)
        raise typer.Exit(2) from exc
    url = (
        settings.redis_url
        if settings.redis_url_explicit
        else f"redis://127.0.0.1:{settings.embedded_redis_port}/0"
    )
    client = redis.Redis.from_url(url, socket_connect_timeout=5, socket_timeout=10)
    return ApiKeyStore(client, prefix=settings.key_prefix)


@contextlib.contextmanager
def _keys_session() -> Iterator[ApiKeyStore]:
    """The key store, with bad input (exit 2) and an unreachable Redis (exit 1) reported in
    one line each instead of a traceback."""
    store = _keystore()
    try:
        yield store
    except InvalidInput as exc:
        typer.echo(f"error: {exc.message}", err=True)
        raise typer.Exit(2) from exc
    except redis.RedisError as exc:
        where = store.r.get_connection_kwargs()
        typer.echo(
            f"error: cannot reach Redis at {where.get('host')}:{where.get('port')} ({exc}); set "
            "MEMQ_REDIS_URL, or start the stack with `memq up`",
            err=True,
        )
        raise typer.Exit(1) from exc
    finally:
        store.close()


@keys_app.command("create")
def keys_create(
    tenant: Annotated[str, typer.Option(help="The tenant the key acts as.")],
    name: Annotated[str, typer.Option(help="A label to recognise the key by.")] = "",
    as_json: JsonOpt = False,
) -> None:
    """Create an API key for TENANT and print it (the only time it is shown)."""
    with _keys_session() as store:
        created = store.create(tenant, name=name)
    if as_json:
        typer.echo(created.model_dump_json())
        return
    label = f", name {created.name!r}" if created.name else ""
    typer.echo(f"API key for tenant {created.tenant} (prefix {created.prefix}{label}):")
    typer.echo(created.key)
    typer.echo(
        "It is shown only now: store it. Send it as `Authorization: Bearer <key>` "
        "(or MEMQ_API_KEY for the CLI)."
    )


@keys_app.command("ls")
def keys_ls(
    tenant: Annotated[str | None, typer.Option(help="Only this tenant's keys.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """List API keys (prefix, tenant, name, creation time; never the secret)."""
    with _keys_session() as store:
        found = store.list(tenant)
    if as_json:
        typer.echo(json.dumps([k.model_dump(mode="json") for k in found]))
        return
    if not found:
        typer.echo("no API keys" + (f" for tenant {tenant}" if tenant else ""))
        return
    rows = [("PREFIX", "TENANT", "NAME", "CREATED")] + [
        (k.prefix, k.tenant, k.name, k.created_at.isoformat(timespec="seconds")) for k in found
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    for row in rows:
        padded = [cell.ljust(width) for cell, width in zip(row[:3], widths, strict=True)]
        typer.echo("  ".join([*padded, row[3]]))


@keys_app.command("revoke")
def keys_revoke(
    prefix_or_id: Annotated[str, typer.Argument(help="`mq_<id>` (see `memq keys ls`) or <id>.")],
    as_json: JsonOpt = False,
) -> None:
    """Revoke an API key: the gateway refuses it within MEMQ_API_KEY_CACHE_S seconds."""
    with _keys_session() as store:
        revoked = store.revoke(prefix_or_id)
        left = store.any_keys()
    if revoked is None:
        typer.echo(f"error: no API key {prefix_or_id.strip()!r}; see `memq keys ls`", err=True)
        raise typer.Exit(1)
    if as_json:
        typer.echo(revoked.model_dump_json())
    else:
        typer.echo(
            f"revoked {revoked.prefix} (tenant {revoked.tenant}); gateways refuse it within "
            "MEMQ_API_KEY_CACHE_S seconds (5 by default)"
        )
    if not left:
        typer.echo(
            "warning: no stored API key is left. Unless the gateway has MEMQ_API_KEYS or "
            "MEMQ_REQUIRE_API_KEY=true, it stops requiring keys (every caller becomes tenant "
            "`default`).",
            err=True,
        )


if __name__ == "__main__":
    app()
