"""`memq keys create | ls | revoke`: API keys, administered straight on Redis (no gateway)."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from typing import Annotated

import redis
import typer
from pydantic import ValidationError

from memq.cli.common import JsonOpt
from memq.errors import InvalidInput
from memq.settings import LauncherSettings
from memq.store.keystore import ApiKeyStore

app = typer.Typer(
    help="Create, list and revoke API keys. Talks to Redis directly (MEMQ_REDIS_URL, or the "
    "embedded Redis of `memq up` on MEMQ_EMBEDDED_REDIS_PORT). Exit codes: 0 ok, 1 not found "
    "or Redis unreachable, 2 bad input.",
    no_args_is_help=True,
)


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


@app.command("create")
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


@app.command("ls")
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


@app.command("revoke")
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
