"""The `memq` command: run the stack on embedded defaults and talk to it."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.panel import Panel

from memq.clients import MemqClient, MemqError

app = typer.Typer(help="memq: async LLM jobs with explicit long-term memory.", no_args_is_help=True)
console = Console()

GatewayOpt = Annotated[
    str, typer.Option("--gateway", envvar="MEMQ_GATEWAY_URL", help="Gateway base URL.")
]
KeyOpt = Annotated[str | None, typer.Option("--api-key", envvar="MEMQ_API_KEY", help="API key.")]

DEMO_NAMESPACE = "user:demo"


def _print_examples(gateway: str) -> None:
    console.print(
        Panel.fit(
            f"""[bold]memq is up[/] — gateway {gateway}  (OpenAPI docs: {gateway}/docs)

Add a memory:
  curl -s {gateway}/v1/memories -H 'content-type: application/json' \\
    -d '{{"namespace": "user:42", "text": "Alice lives in Paris."}}'
Submit a generate job that retrieves it:
  curl -s {gateway}/v1/jobs -H 'content-type: application/json' \\
    -d '{{"type": "generate", "prompt": "Where does Alice live?",
         "memory": {{"namespace": "user:42"}}}}'
Poll it:
  curl -s {gateway}/v1/jobs/<id>
Or use the CLI:  memq generate "Where does Alice live?" --namespace user:42""",
            title="memq",
        )
    )


def _demo(gateway: str) -> None:
    with MemqClient(gateway) as client:
        for text in (
            "Alice lives in Paris and works as a marine biologist.",
            "Alice's favourite food is ramen.",
        ):
            client.add_memory(DEMO_NAMESPACE, text)
        accepted = client.submit(
            {
                "type": "generate",
                "prompt": "Question: Where does Alice live and what does she do?\nAnswer:",
                "params": {"max_new_tokens": 32},
                "memory": {"namespace": DEMO_NAMESPACE, "top_k": 3},
            }
        )
        console.print(f"demo job {accepted.id} queued; waiting …")
        job = client.wait(accepted.id, timeout=600)
        console.print_json(job.model_dump_json(include={"status", "result"}))


@app.command()
def up(
    data_dir: Annotated[Path, typer.Option(envvar="MEMQ_DATA_DIR")] = Path(".memq"),
    gateway_port: Annotated[int, typer.Option(envvar="MEMQ_GATEWAY_PORT")] = 8000,
    memory_port: Annotated[int, typer.Option(envvar="MEMQ_MEMORY_PORT")] = 8001,
    redis_port: Annotated[int, typer.Option(envvar="MEMQ_EMBEDDED_REDIS_PORT")] = 6390,
    workers: Annotated[int, typer.Option(min=1, max=16, help="Worker processes.")] = 1,
    demo: Annotated[bool, typer.Option(help="Run a demo job once the stack is up.")] = False,
) -> None:
    """Start Redis (embedded unless MEMQ_REDIS_URL is set), the memory service, worker(s) and
    the gateway; stay in the foreground until Ctrl-C."""
    from memq.launcher import start_stack

    redis_url = os.environ.get("MEMQ_REDIS_URL") or None
    console.print(
        f"starting memq in {data_dir.resolve()} "
        f"(redis: {'external ' + redis_url if redis_url else 'embedded, AOF on'}); "
        "first start may convert the model, see logs in "
        f"{data_dir / 'logs'}"
    )
    stack = start_stack(
        data_dir,
        redis_url=redis_url,
        gateway_port=gateway_port,
        memory_port=memory_port,
        redis_port=redis_port,
        workers=workers,
    )
    stopping = False

    def _stop(*_: Any) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    try:
        model = stack.wait_model(timeout=1)
        console.print(f"[bold green]serving model:[/] {model}")
        _print_examples(stack.gateway_url)
        if demo:
            _demo(stack.gateway_url)
        while not stopping:
            stack.check_alive()
            time.sleep(0.5)
    except RuntimeError as exc:
        console.print(f"[red]{exc}[/]")
        raise typer.Exit(1) from exc
    finally:
        console.print("stopping memq …")
        stack.stop()


def _client(gateway: str, api_key: str | None) -> MemqClient:
    return MemqClient(gateway, api_key)


def _fail(exc: MemqError) -> typer.Exit:
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
        except MemqError as exc:
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
        except MemqError as exc:
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
        except MemqError as exc:
            raise _fail(exc) from exc
    console.print_json(job.model_dump_json())


if __name__ == "__main__":
    app()
