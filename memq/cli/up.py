"""Run memq: `memq up` (start and supervise the whole stack, with an optional demo and the
CI smoke run), `memq worker` (one more worker process) and `memq bench`."""

from __future__ import annotations

import logging
import os
import signal
import sys
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import httpx
import typer
from pydantic import ValidationError
from rich.markup import escape

from memq.cli.common import EXIT_USAGE, console, print_error
from memq.contracts import JobStatus
from memq.errors import MemqError
from memq.logs import configure_logging
from memq.sdk import Client
from memq.settings import DEFAULT_GATEWAY_URL, LauncherSettings

if TYPE_CHECKING:
    from memq.ops.launcher import Stack

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


class _DemoFailed(MemqError):
    code = "demo_failed"

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
    from memq.ops.launcher import start_stack
    from memq.ops.process import LaunchError

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


PASS_THROUGH = {"allow_extra_args": True, "ignore_unknown_options": True}
"""The context settings of `worker` and `bench`: what follows goes to the program run."""
SOURCE_ROOT = Path(__file__).resolve().parents[2]


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
        print_error(
            f"error: no {script}: the benchmarks ship with the source tree; run from a checkout"
        )
        raise typer.Exit(EXIT_USAGE)
    quick = ["--quick"] if not full and which != Bench.memory else []
    os.chdir(SOURCE_ROOT)
    os.execv(sys.executable, [sys.executable, "-m", f"bench.{script.stem}", *quick, *ctx.args])
