"""The `memq` command against the real stack (MEMQ_GATEWAY_URL pointing at it): memories
added and searched, a job submitted and watched to its end with the memory it used, jobs
listed, shown and refused a cancel, a chat session, a document ingested and a namespace
forgotten."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
from typer.testing import CliRunner

from memq.cli import app
from memq.ops.launcher import Stack

pytestmark = pytest.mark.e2e


def _memq(stack: Stack, *args: str, input: str | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(
        app, list(args), input=input, env={"MEMQ_GATEWAY_URL": stack.gateway_url}
    )
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


def _flat(text: str) -> str:
    return " ".join(text.split())


def test_remember_search_then_watch_a_job_use_the_memory(stack: Stack) -> None:
    ns = f"user:cli-{uuid.uuid4().hex[:8]}"
    fact = "Alice lives in Paris and works as a marine biologist."
    code, out, _ = _memq(stack, "memory", "add", fact, "-n", ns, "--json")
    assert code == 0
    memory_id = json.loads(out)["id"]
    code, out, _ = _memq(stack, "memory", "search", "where does alice live", "-n", ns, "--json")
    assert code == 0 and json.loads(out)[0]["id"] == memory_id

    code, out, err = _memq(
        stack,
        "submit",
        "generate",
        "Question: Where does Alice live?\nAnswer:",
        "-n",
        ns,
        "--max-new-tokens",
        "12",
        "--watch",
    )
    assert code == 0, err
    job_id = out.split()[1]  # "job <id> <status>" opens the watch
    shown = _flat(out)
    assert "retrieved memories" in shown and "used" in shown and "Paris" in shown
    assert "timings" in shown and "completion 12" in shown

    code, out, _ = _memq(stack, "jobs", "show", job_id, "--json")
    job = json.loads(out)
    assert code == 0 and job["status"] == "succeeded"
    assert job["result"]["memories"][0]["id"] == memory_id
    assert job["result"]["text"] in out  # the watched text is the job's text
    code, out, _ = _memq(stack, "jobs", "ls", "--status", "succeeded", "--limit", "200", "--json")
    assert code == 0 and job_id in [j["id"] for j in json.loads(out)["items"]]
    code, _, err = _memq(stack, "jobs", "cancel", job_id)
    assert code == 1 and "409 job_finished" in err


def test_submit_without_watch_prints_an_id_that_jobs_watch_follows(stack: Stack) -> None:
    code, out, _ = _memq(stack, "submit", "generate", "Once upon a time", "--max-new-tokens", "4")
    assert code == 0
    job_id = out.strip()
    code, out, _ = _memq(stack, "jobs", "watch", job_id, "--json")
    assert code == 0 and json.loads(out)["id"] == job_id
    assert json.loads(out)["status"] == "succeeded"


def test_summarize_a_file_and_ingest_then_forget_a_namespace(stack: Stack, tmp_path: Path) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text(
        " ".join(
            f"On day {day} the harbour opened at dawn and {day} boats left." for day in range(30)
        )
    )
    code, out, err = _memq(stack, "submit", "summarize", str(notes), "--watch", "--json")
    assert code == 0, err
    assert json.loads(out)["status"] == "succeeded"

    ns = f"docs:cli-{uuid.uuid4().hex[:8]}"
    code, out, _ = _memq(
        stack, "memory", "ingest", str(notes), "-n", ns, "--chunk-chars", "500", "--json"
    )
    assert code == 0
    chunks = len({chunk["id"] for chunk in json.loads(out)["chunks"]})
    assert chunks > 1
    code, out, _ = _memq(stack, "memory", "forget", "-n", ns, "--yes", "--json")
    assert code == 0 and json.loads(out)["deleted"] == chunks
    code, out, _ = _memq(stack, "memory", "ls", "-n", ns)
    assert code == 0 and f"no memories in {ns}" in out


def test_chat_remembers_the_session_until_it_is_forgotten(stack: Stack) -> None:
    session = f"cli-{uuid.uuid4().hex[:8]}"
    code, out, err = _memq(
        stack,
        "chat",
        "--session",
        session,
        "--max-new-tokens",
        "6",
        input="Hello, I am Dana.\n/history\n/forget\n/history\n/exit\n",
    )
    assert code == 0, err
    shown = _flat(out)
    assert "you> Hello, I am Dana." in shown
    assert "user> Hello, I am Dana." in shown and "assistant>" in shown  # the transcript
    assert f"forgot session {session}: 2 memories deleted" in shown
    assert f"session {session} has no turns yet" in shown
