"""The `memq` command against a scripted gateway (the SDK on httpx.MockTransport): exit codes
scripts rely on, `--json` output that parses, a watched job's streamed text and retrieved
memories, a chat session from stdin, `--help` on every command. Against the real stack:
tests/e2e/test_cli_e2e.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import typer
from typer.testing import CliRunner

from memq import cli
from memq.cli import common
from memq.ops.process import free_port
from memq.sdk import Client
from tests.utils.scripted_gateway import job_json, memory_json, stream_answer, summary_json

Handler = Callable[[httpx.Request], httpx.Response]
ROOT = Path(__file__).resolve().parents[2]


class Gateway:
    """A scripted gateway: answers by (method, path); records what it was sent."""

    def __init__(self) -> None:
        self.routes: dict[tuple[str, str], Handler] = {}
        self.requests: list[httpx.Request] = []

    def on(self, method: str, path: str, answer: Handler | httpx.Response | Any) -> None:
        if isinstance(answer, httpx.Response):
            self.routes[(method, path)] = lambda r: answer
        elif callable(answer):
            self.routes[(method, path)] = answer
        else:
            self.routes[(method, path)] = lambda r: httpx.Response(200, json=answer)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        handler = self.routes.get((request.method, request.url.path))
        if handler is None:
            return httpx.Response(404, json={"error": "not_found", "message": "unscripted"})
        return handler(request)

    def bodies(self, method: str, path: str) -> list[Any]:
        return [
            json.loads(r.content) for r in self.requests if (r.method, r.url.path) == (method, path)
        ]


@pytest.fixture
def gateway(monkeypatch: pytest.MonkeyPatch) -> Iterator[Gateway]:
    scripted = Gateway()

    def make_client(url: str | None, key: str | None) -> Client:
        return Client(url or "http://gw", key, transport=httpx.MockTransport(scripted))

    monkeypatch.setattr(common, "make_client", make_client)
    yield scripted


def memq(*args: str, input: str | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli.app, list(args), input=input)
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


# ------------------------------------------------------------------------------ help


def _commands(group: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    """Every command under `group` (typer vendors its own click: duck-typed)."""
    for name, command in group.commands.items():
        yield (*path, name), command
        if hasattr(command, "commands"):
            yield from _commands(command, (*path, name))


def test_every_command_has_help_and_the_top_level_help_documents_the_exit_codes() -> None:
    found = dict(_commands(typer.main.get_command(cli.app)))
    for wanted in [
        ("up",),
        ("worker",),
        ("chat",),
        ("submit", "generate"),
        ("submit", "summarize"),
        ("jobs", "ls"),
        ("jobs", "show"),
        ("jobs", "cancel"),
        ("memory", "add"),
        ("memory", "ingest"),
        ("memory", "search"),
        ("memory", "forget"),
        ("keys", "create"),
        ("bench",),
        ("remember",),
        ("generate",),
        ("summarize",),
        ("status",),
    ]:
        assert wanted in found, wanted
    for path, command in found.items():
        assert command.help, f"memq {' '.join(path)} has no help"
        code, out, _ = memq(*path, "--help")
        assert code == 0 and "Usage:" in out, path
    code, out, _ = memq("--help")
    assert code == 0
    for words in ("0 ok", "1 the gateway refused", "2 usage error", "3 the gateway cannot"):
        assert words in " ".join(out.split()), words


# ------------------------------------------------------------------------------ exit codes


def test_an_unreachable_gateway_exits_3_with_one_line_naming_it() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    code, out, err = memq("jobs", "ls", "--gateway", url)
    assert code == 3
    assert url in err and "cannot be reached" in err and "Traceback" not in err + out


def test_a_refusal_exits_1_with_the_server_message(gateway: Gateway) -> None:
    message = "no job 'nope' for this API key's tenant"
    gateway.on(
        "GET",
        "/v1/jobs/nope",
        httpx.Response(404, json={"error": "job_not_found", "message": message}),
    )
    code, _, err = memq("jobs", "show", "nope")
    assert code == 1
    assert f"404 job_not_found: {message}" in " ".join(err.split())


def test_rate_limited_says_when_to_retry(gateway: Gateway) -> None:
    gateway.on(
        "POST",
        "/v1/memories",
        httpx.Response(
            429,
            json={"error": "rate_limited", "message": "600/minute"},
            headers={"Retry-After": "3"},
        ),
    )
    code, _, err = memq("memory", "add", "a fact", "-n", "user:1")
    assert code == 1 and "retry after 3 s" in err


@pytest.mark.parametrize(
    "args",
    [
        ("submit", "generate", "hi", "--max-new-tokens", "0"),  # the contract refuses it
        ("submit", "generate", "hi", "--meta", "no-equals-sign"),
        ("memory", "forget"),  # neither ids nor a namespace
        ("memory", "forget", "--namespace", "user:1"),  # not a terminal and no --yes
        ("jobs", "ls", "--limit", "0"),
        ("jobs", "ls", "--status", "sleeping"),
    ],
)
def test_usage_errors_exit_2_before_anything_is_sent(gateway: Gateway, args: tuple[str]) -> None:
    code, _, err = memq(*args)
    assert code == 2, err
    assert gateway.requests == []


def test_a_job_that_fails_under_watch_exits_1_with_its_error(gateway: Gateway) -> None:
    failed = job_json("failed") | {"error": {"error": "worker_lost", "message": "lost 3 times"}}
    gateway.on("POST", "/v1/jobs", httpx.Response(202, json=_accepted()))
    gateway.on("GET", "/v1/jobs/j1", failed)
    gateway.on("GET", "/v1/jobs/j1/events", stream_answer(("1-0", "result", failed)))
    code, out, _ = memq("submit", "generate", "hi", "--watch")
    assert code == 1
    assert "worker_lost: lost 3 times" in out


def _accepted() -> dict[str, str]:
    return {"id": "j1", "status": "queued", "status_url": "http://gw/v1/jobs/j1"}


# ------------------------------------------------------------------------------ output


def test_submit_prints_the_job_id_or_json_and_sends_the_options(gateway: Gateway) -> None:
    gateway.on("POST", "/v1/jobs", httpx.Response(202, json=_accepted()))
    code, out, _ = memq(
        "submit",
        "generate",
        "Where does Alice live?",
        "-n",
        "user:42",
        "-n",
        "user:43",
        "--max-new-tokens",
        "8",
        "--priority",
        "high",
        "--meta",
        "run=r1",
        "--idempotency-key",
        "k-1",
    )
    assert code == 0 and out.strip() == "j1"
    [body] = gateway.bodies("POST", "/v1/jobs")
    assert body == {
        "type": "generate",
        "prompt": "Where does Alice live?",
        "params": {"max_new_tokens": 8},
        "memory": {"namespaces": ["user:42", "user:43"]},
        "priority": "high",
        "metadata": {"run": "r1"},
    }
    assert gateway.requests[0].headers["Idempotency-Key"] == "k-1"
    code, out, _ = memq("submit", "generate", "hi", "--json")
    assert code == 0 and json.loads(out) == _accepted()


def test_watch_streams_the_text_then_shows_memories_and_timings(gateway: Gateway) -> None:
    gateway.on("POST", "/v1/jobs", httpx.Response(202, json=_accepted()))
    gateway.on("GET", "/v1/jobs/j1", job_json("queued"))
    gateway.on(
        "GET",
        "/v1/jobs/j1/events",
        stream_answer(
            ("1-0", "status", {"status": "running"}),
            ("2-0", "token", {"tokens": 1, "offset": 0, "delta": " Par"}),
            ("3-0", "token", {"tokens": 2, "offset": 4, "delta": "is."}),
            ("4-0", "result", job_json(text=" Paris.")),
        ),
    )
    code, out, _ = memq("submit", "generate", "Where does Alice live?", "--watch")
    assert code == 0, out
    assert " Paris." in out
    assert "retrieved memories" in out and "Alice lives in Paris." in out and "used" in out
    assert "timings" in out and "completion 2" in out
    code, out, _ = memq("submit", "generate", "Where does Alice live?", "--watch", "--json")
    assert code == 0 and json.loads(out)["result"]["text"] == " Paris."


def test_json_output_parses_for_every_data_command(gateway: Gateway) -> None:
    gateway.on("GET", "/v1/jobs", {"items": [summary_json("a")], "next_cursor": None})
    gateway.on("GET", "/v1/jobs/j1", job_json())
    gateway.on("POST", "/v1/jobs/j1/cancel", job_json("cancelled"))
    gateway.on("POST", "/v1/memories", httpx.Response(201, json=memory_json("m1")))
    gateway.on("GET", "/v1/memories", {"items": [memory_json("m1")], "next_cursor": None})
    gateway.on("DELETE", "/v1/memories/m1", {"id": "m1", "deleted": True})
    gateway.on(
        "POST",
        "/v1/memories/search",
        {"hits": [{"id": "m1", "score": 0.9, "text": "t", "namespace": "user:1"}]},
    )
    gateway.on(
        "DELETE",
        "/v1/namespaces/user:1",
        {"namespace": "user:1", "deleted": 4, "cancelled_jobs": 1},
    )
    expectations: list[tuple[tuple[str, ...], Callable[[Any], bool]]] = [
        (("jobs", "ls"), lambda v: v["items"][0]["id"] == "a"),
        (("jobs", "show", "j1"), lambda v: v["result"]["text"] == " Paris."),
        (("jobs", "cancel", "j1"), lambda v: v["status"] == "cancelled"),
        (("memory", "add", "t", "-n", "user:1"), lambda v: v["id"] == "m1"),
        (("memory", "ls", "-n", "user:1"), lambda v: v["items"][0]["id"] == "m1"),
        (("memory", "search", "t", "-n", "user:1"), lambda v: v[0]["score"] == 0.9),
        (("memory", "forget", "m1"), lambda v: v == [{"id": "m1", "deleted": True}]),
        (("memory", "forget", "-n", "user:1", "--yes"), lambda v: v["deleted"] == 4),
        (("status", "j1"), lambda v: v["id"] == "j1"),
    ]
    for args, check in expectations:
        code, out, err = memq(*args, "--json")
        assert code == 0, (args, err)
        assert check(json.loads(out)), (args, out)


def test_jobs_ls_all_follows_every_page_with_the_filters(gateway: Gateway) -> None:
    pages = {
        None: {"items": [summary_json("a")], "next_cursor": "c1"},
        "c1": {"items": [summary_json("b")], "next_cursor": None},
    }
    gateway.on(
        "GET", "/v1/jobs", lambda r: httpx.Response(200, json=pages[r.url.params.get("cursor")])
    )
    code, out, _ = memq("jobs", "ls", "--all", "--status", "succeeded", "--limit", "1", "--json")
    assert code == 0
    assert [j["id"] for j in json.loads(out)["items"]] == ["a", "b"]
    assert all(r.url.params.get_list("status") == ["succeeded"] for r in gateway.requests)
    code, out, _ = memq("jobs", "ls", "--limit", "1")
    assert code == 0 and "a" in out and "memq jobs ls --cursor c1" in out


def test_memory_add_and_ingest_read_stdin_and_files(gateway: Gateway, tmp_path: Path) -> None:
    gateway.on("POST", "/v1/memories", httpx.Response(201, json=memory_json("m1")))
    gateway.on(
        "POST",
        "/v1/memories/documents",
        httpx.Response(
            201, json={"document_id": "d1", "chunks": [memory_json("c1"), memory_json("c2")]}
        ),
    )
    code, out, _ = memq("memory", "add", "-", "-n", "user:1", "--meta", "src=cli", input="A fact.")
    assert code == 0 and "memory m1 in user:42" in out
    doc = tmp_path / "notes.txt"
    doc.write_text("A long document. " * 50)
    code, out, _ = memq("memory", "ingest", str(doc), "-n", "docs", "--chunk-chars", "200")
    assert code == 0 and "document d1: 2 chunks in docs" in out
    added, ingested = (
        gateway.bodies("POST", "/v1/memories"),
        gateway.bodies("POST", "/v1/memories/documents"),
    )
    assert added == [{"namespace": "user:1", "text": "A fact.", "metadata": {"src": "cli"}}]
    assert ingested[0]["chunk_chars"] == 200 and ingested[0]["source"] == "notes.txt"
    assert ingested[0]["text"] == doc.read_text()


def test_chat_streams_replies_and_forgets_the_session(gateway: Gateway) -> None:
    gateway.on("POST", "/v1/jobs", httpx.Response(202, json=_accepted()))
    gateway.on(
        "GET",
        "/v1/jobs/j1/events",
        stream_answer(
            ("1-0", "token", {"tokens": 1, "offset": 0, "delta": "Hello"}),
            ("2-0", "token", {"tokens": 2, "offset": 5, "delta": ", Alice."}),
            ("3-0", "result", job_json(text="Hello, Alice.")),
        ),
    )
    gateway.on(
        "DELETE",
        "/v1/sessions/s1",
        {"session_id": "s1", "deleted_memories": 2, "cancelled_jobs": 0},
    )
    code, out, _ = memq("chat", "--session", "s1", "--user", "alice", input="Hi!\n/forget\n/exit\n")
    assert code == 0, out
    assert "you> Hi!" in out and "memq> Hello, Alice." in out
    assert "forgot session s1: 2 memories deleted" in out
    [body] = gateway.bodies("POST", "/v1/jobs")
    assert body == {
        "type": "chat",
        "messages": [{"role": "user", "content": "Hi!"}],
        "session_id": "s1",
        "user_id": "alice",
    }


# ------------------------------------------------------------------------------ processes


def _run_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "memq.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=300,
    )


def test_worker_runs_python_m_worker_with_its_settings_checks() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEMQ_")}
    done = _run_cli("worker", env=env)
    assert done.returncode == 2  # the worker's own refusal, passed through unchanged
    assert "cannot start the worker" in done.stderr and "MEMQ_SERVICE_TOKEN" in done.stderr


def test_bench_hands_its_extra_arguments_to_the_benchmark() -> None:
    done = _run_cli("bench", "memory", "--", "--help", env=dict(os.environ))
    assert done.returncode == 0, done.stderr
    assert "usage: memory_bench.py" in done.stdout
