"""`memq keys create | ls | revoke` against a real Redis, through typer's CliRunner."""

from __future__ import annotations

import json

import pytest
import redis
from typer.testing import CliRunner

from memq.cli import app
from memq.ops.process import free_port
from memq.store.keystore import ApiKeyStore


@pytest.fixture
def env(redis_server: str, redis_client: redis.Redis) -> dict[str, str]:
    return {"MEMQ_REDIS_URL": redis_server, "MEMQ_KEY_PREFIX": "memq"}


def _run(env: dict[str, str], *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, ["keys", *args], env=env)
    return result.exit_code, result.stdout, result.stderr


def test_create_prints_a_key_that_resolves_to_its_tenant(
    env: dict[str, str], redis_client: redis.Redis
) -> None:
    code, out, _ = _run(env, "create", "--tenant", "acme", "--name", "ci")
    assert code == 0, out
    key = out.splitlines()[1]
    assert "shown only now" in out
    info = ApiKeyStore(redis_client).resolve(key)
    assert info is not None and (info.tenant, info.name) == ("acme", "ci")


def test_create_json_is_one_parseable_object_with_the_key(
    env: dict[str, str], redis_client: redis.Redis
) -> None:
    code, out, _ = _run(env, "create", "--tenant", "beta", "--json")
    assert code == 0, out
    created = json.loads(out)
    assert created["tenant"] == "beta" and created["key"].startswith(created["prefix"] + "_")
    assert ApiKeyStore(redis_client).resolve(created["key"]) is not None


def test_ls_lists_prefixes_and_never_the_secret(env: dict[str, str]) -> None:
    acme = json.loads(_run(env, "create", "--tenant", "acme", "--name", "one", "--json")[1])
    beta = json.loads(_run(env, "create", "--tenant", "beta", "--json")[1])
    code, out, _ = _run(env, "ls")
    assert code == 0
    assert out.splitlines()[0].split() == ["PREFIX", "TENANT", "NAME", "CREATED"]
    assert acme["prefix"] in out and beta["prefix"] in out
    assert acme["key"] not in out and beta["key"] not in out
    code, out, _ = _run(env, "ls", "--tenant", "acme", "--json")
    assert code == 0
    listed = json.loads(out)
    assert [k["prefix"] for k in listed] == [acme["prefix"]]
    assert "key" not in listed[0]


def test_revoke_then_revoke_again_is_not_found(
    env: dict[str, str], redis_client: redis.Redis
) -> None:
    created = json.loads(_run(env, "create", "--tenant", "acme", "--json")[1])
    code, out, err = _run(env, "revoke", created["prefix"])
    assert code == 0, err
    assert f"revoked {created['prefix']}" in out
    assert "no stored API key is left" in err
    assert ApiKeyStore(redis_client).resolve(created["key"]) is None
    code, _, err = _run(env, "revoke", created["prefix"])
    assert code == 1
    assert "no API key" in err and "memq keys ls" in err


def test_revoke_by_id_keeps_the_other_keys_without_a_warning(env: dict[str, str]) -> None:
    first = json.loads(_run(env, "create", "--tenant", "acme", "--json")[1])
    json.loads(_run(env, "create", "--tenant", "acme", "--json")[1])
    code, out, err = _run(env, "revoke", first["id"], "--json")
    assert code == 0
    assert json.loads(out)["id"] == first["id"]
    assert "warning" not in err


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("create", "--tenant", "bad tenant"), "1-128 characters"),
        (("create", "--tenant", "acme", "--name", "x" * 200), "printable"),
        (("revoke", "not-a-prefix"), "PREFIX column"),
    ],
)
def test_bad_input_exits_2_with_what_to_fix(
    env: dict[str, str], redis_client: redis.Redis, args: tuple[str, ...], says: str
) -> None:
    code, _, err = _run(env, *args)
    assert code == 2
    assert says in err
    assert not ApiKeyStore(redis_client).any_keys()


def test_missing_tenant_is_a_usage_error(env: dict[str, str]) -> None:
    code, _, _ = _run(env, "create")
    assert code == 2


def test_unreachable_redis_exits_1_and_names_the_setting() -> None:
    env = {"MEMQ_REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"}
    code, _, err = _run(env, "ls")
    assert code == 1
    assert "cannot reach Redis" in err and "MEMQ_REDIS_URL" in err
