"""`memq submit generate | summarize`: queue a job, print its id or follow it (--watch)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from memq.cli.common import (
    ApiKey,
    Gateway,
    IdempotencyKey,
    JsonOpt,
    Meta,
    PriorityOpt,
    Timeout,
    Watch,
    connect,
    parse_metadata,
    read_file,
    read_text,
)
from memq.cli.follow import show_accepted

app = typer.Typer(
    help="Queue a generate or summarize job. Prints the job id, or with --watch follows it "
    "live (tokens as they stream, then the retrieved memories and the timings).",
    no_args_is_help=True,
)


@app.command("generate")
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
    with connect(gateway, api_key) as client:
        accepted = client.generate(
            read_text(prompt, "the prompt"),
            namespace=names[0] if len(names) == 1 else (names or None),
            top_k=top_k,
            max_new_tokens=max_new_tokens,
            temperature=temperature,
            seed=seed,
            priority=priority,
            metadata=parse_metadata(meta),
            idempotency_key=idempotency_key,
        )
        show_accepted(client, accepted, watch=watch, as_json=as_json, timeout=timeout)


@app.command("summarize")
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
    text = read_file(file)
    with connect(gateway, api_key) as client:
        accepted = client.summarize(
            text,
            sentences=sentences,
            max_new_tokens=max_new_tokens,
            priority=priority,
            metadata=parse_metadata(meta),
            idempotency_key=idempotency_key,
        )
        show_accepted(client, accepted, watch=watch, as_json=as_json, timeout=timeout)
