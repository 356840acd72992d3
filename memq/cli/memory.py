"""`memq memory add | ingest | search | ls | forget`."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from memq.cli import views
from memq.cli.common import (
    ApiKey,
    Gateway,
    JsonOpt,
    Meta,
    Namespace,
    connect,
    console,
    echo_json,
    parse_metadata,
    read_file,
    read_text,
)
from memq.contracts import MemoryKind, SearchMode

app = typer.Typer(help="Add, ingest, search, list and forget memories.", no_args_is_help=True)


@app.command("add")
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
    with connect(gateway, api_key) as client:
        memory = client.add_memory(
            namespace,
            read_text(text, "the memory"),
            kind=kind,
            metadata=parse_metadata(meta),
            source=source,
            ttl_seconds=ttl,
        )
    if as_json:
        echo_json(memory)
        return
    dedup = " (a near-duplicate of it was already there)" if memory.deduplicated else ""
    typer.echo(f"memory {memory.id} in {memory.namespace}{dedup}")


@app.command("ingest")
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
    text = read_file(file)
    with connect(gateway, api_key) as client:
        done = client.ingest_document(
            namespace,
            text,
            document_id=document_id,
            chunk_chars=chunk_chars,
            overlap_chars=overlap_chars,
            metadata=parse_metadata(meta),
            source=None if str(file) == "-" else file.name,
        )
    if as_json:
        echo_json(done)
    else:
        typer.echo(f"document {done.document_id}: {len(done.chunks)} chunks in {namespace}")


@app.command("search")
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
    with connect(gateway, api_key) as client:
        hits = client.search(namespace, query, top_k=top_k, mode=mode)
    if as_json:
        echo_json(hits)
    elif hits:
        console.print(views.hits_table(hits))
    else:
        typer.echo(f"nothing found in {namespace}")


@app.command("ls")
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
    with connect(gateway, api_key) as client:
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


@app.command("forget")
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
    with connect(gateway, api_key) as client:
        if namespace:
            forgotten = client.forget(namespace)
            if as_json:
                echo_json(forgotten)
            else:
                typer.echo(
                    f"forgot {forgotten.deleted} memories in {namespace}; cancelled "
                    f"{forgotten.cancelled_jobs} queued jobs"
                )
            return
        deleted = [client.delete_memory(memory_id) for memory_id in memory_ids or []]
    if as_json:
        echo_json(deleted)
    else:
        for gone in deleted:
            typer.echo(f"deleted {gone.id}")
