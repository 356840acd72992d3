"""The `memq` command: run the stack on embedded defaults and talk to it."""

from __future__ import annotations

import contextlib
import json
import logging
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import httpx
import redis
import typer
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape

from memq.clients import MemqClient
from memq.contracts import JobStatus
from memq.errors import APIError, InvalidInput, MemqError
from memq.keystore import ApiKeyStore
from memq.logs import configure_logging
from memq.settings import DEFAULT_GATEWAY_URL, LauncherSettings

if TYPE_CHECKING:
    from memq.launcher import Stack

app = typer.Typer(help="memq: async LLM jobs with explicit long-term memory.", no_args_is_help=True)
console = Console()

GatewayOpt = Annotated[
    str, typer.Option("--gateway", envvar="MEMQ_GATEWAY_URL", help="Gateway base URL.")
]
KeyOpt = Annotated[str | None, typer.Option("--api-key", envvar="MEMQ_API_KEY", help="API key.")]

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
  {cli_env}memq generate "Where does Alice live?" --namespace {DEMO_NAMESPACE}""",
        markup=False,
        highlight=False,
        soft_wrap=True,
    )
    console.rule()


def _run_demo(stack: Stack, *, require_used_memory: bool) -> None:
    """Store the demo memories, run the demo job, print its result; `_DemoFailed` if it
    did not succeed (or, for the smoke run, used none of the memories it retrieved)."""
    with MemqClient(stack.gateway_url) as client:
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


@app.command()
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
    """Start Redis (embedded unless MEMQ_REDIS_URL is set), the memory service, worker(s) and
    the gateway, restart any of them that dies, and stay in the foreground until Ctrl-C."""
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


def _client(gateway: str, api_key: str | None) -> MemqClient:
    return MemqClient(gateway, api_key)


def _fail(exc: APIError) -> typer.Exit:
    console.print(f"[red]error {exc.status_code}:[/] {json.dumps(exc.body)}")
    return typer.Exit(1)


@app.command()
def remember(
    namespace: str,
    text: str,
    gateway: GatewayOpt = "http://127.0.0.1:8000",
    api_key: KeyOpt = None,
) -> None:
    """Add a memory to NAMESPACE."""
    with _client(gateway, api_key) as client:
        try:
            memory = client.add_memory(namespace, text)
        except APIError as exc:
            raise _fail(exc) from exc
    console.print_json(memory.model_dump_json())


def _submit_and_wait(gateway: str, api_key: str | None, job: dict[str, Any], wait: bool) -> None:
    with _client(gateway, api_key) as client:
        try:
            accepted = client.submit(job)
            if not wait:
                console.print_json(accepted.model_dump_json())
                return
            with console.status(f"job {accepted.id} …"):
                done = client.wait(accepted.id, timeout=3600)
        except APIError as exc:
            raise _fail(exc) from exc
    console.print_json(done.model_dump_json(exclude={"request"}))


@app.command()
def generate(
    prompt: str,
    namespace: Annotated[str | None, typer.Option(help="Retrieve memories from here.")] = None,
    max_new_tokens: Annotated[int, typer.Option(min=1, max=1024)] = 64,
    wait: Annotated[bool, typer.Option(help="Wait for the result.")] = True,
    gateway: GatewayOpt = "http://127.0.0.1:8000",
    api_key: KeyOpt = None,
) -> None:
    """Submit a generate job (and wait for it)."""
    job = {
        "type": "generate",
        "prompt": prompt,
        "params": {"max_new_tokens": max_new_tokens},
        "memory": {"namespace": namespace},
    }
    _submit_and_wait(gateway, api_key, job, wait)


@app.command()
def summarize(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True)],
    wait: Annotated[bool, typer.Option(help="Wait for the result.")] = True,
    gateway: GatewayOpt = "http://127.0.0.1:8000",
    api_key: KeyOpt = None,
) -> None:
    """Submit a summarize job for FILE's text."""
    job = {"type": "summarize", "text": file.read_text()}
    _submit_and_wait(gateway, api_key, job, wait)


@app.command()
def status(
    job_id: str,
    gateway: GatewayOpt = "http://127.0.0.1:8000",
    api_key: KeyOpt = None,
) -> None:
    """Show a job."""
    with _client(gateway, api_key) as client:
        try:
            job = client.get(job_id)
        except APIError as exc:
            raise _fail(exc) from exc
    console.print_json(job.model_dump_json())


# ---------------------------------------------------------------------------- API keys

keys_app = typer.Typer(
    help="Create, list and revoke API keys. Talks to Redis directly (MEMQ_REDIS_URL, or the "
    "embedded Redis of `memq up` on MEMQ_EMBEDDED_REDIS_PORT). Exit codes: 0 ok, 1 not found "
    "or Redis unreachable, 2 bad input.",
    no_args_is_help=True,
)
app.add_typer(keys_app, name="keys")
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON (for scripts).")]


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
