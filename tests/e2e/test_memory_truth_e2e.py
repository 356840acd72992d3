"""Memory that is on by default and stays true (issues 20 and 28), on the real stack: the
unmodified `openai` client with `user` alone retrieves; a fact and its update, written
through the memory API or said in a chat with `remember_facts`, leave only the current
fact in a later job's prompt (the stale one reported as superseded); as-of search returns
the old one; forgetting the namespace removes the chain; a question about someone with no
stored fact leaves every near memory out as `different_subject`, cites nothing and is
answered "I don't know" by memq itself."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
import openai
import pytest

pytestmark = pytest.mark.e2e


def _user() -> str:
    return f"u{uuid.uuid4().hex[:10]}"


def _add(http: httpx.Client, ns: str, text: str) -> dict[str, Any]:
    r = http.post("/v1/memories", json={"namespace": ns, "text": text})
    assert r.status_code == 201, r.text
    body: dict[str, Any] = r.json()
    return body


def _job(http: httpx.Client, body: dict[str, Any]) -> dict[str, Any]:
    r = http.post("/v1/jobs", json=body)
    assert r.status_code == 202, r.text
    job_id = r.json()["id"]
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        job: dict[str, Any] = http.get(f"/v1/jobs/{job_id}").json()
        if job["status"] in ("succeeded", "failed", "cancelled"):
            assert job["status"] == "succeeded", job
            return job
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} did not finish")


def test_an_openai_chat_with_user_alone_retrieves_from_the_users_namespace(
    oai: openai.OpenAI, http: httpx.Client
) -> None:
    user = _user()
    fact = _add(http, f"user:{user}", "Zorvan Kell keeps a pet iguana named Pickle.")
    done = oai.chat.completions.create(
        model="memq",
        messages=[{"role": "user", "content": "What is Zorvan's iguana called?"}],
        max_tokens=8,
        temperature=0,
        user=user,
    )
    memq = done.model_extra["memq"]  # type: ignore[index]
    assert [m["id"] for m in memq["memories"]] == [fact["id"]]
    job = http.get(f"/v1/jobs/{memq['job_id']}").json()
    assert job["result"]["memory_scope"] == [{"namespace": f"user:{user}", "reason": "user"}]
    off = oai.chat.completions.create(
        model="memq",
        messages=[{"role": "user", "content": "What is Zorvan's iguana called?"}],
        max_tokens=4,
        user=user,
        extra_body={"memory": {"top_k": 0}},
    )
    assert off.model_extra["memq"]["memories"] == []  # type: ignore[index]


def test_an_update_through_the_memory_api_leaves_only_the_current_fact_in_use(
    http: httpx.Client,
) -> None:
    ns = f"user:{_user()}"
    old = _add(http, ns, "Tomasz Wierzba lives in Gdansk.")
    before = time.time()
    time.sleep(1.1)
    new = _add(http, ns, "Tomasz Wierzba moved to Krakow.")
    assert new["supersedes"] == [old["id"]]

    job = _job(
        http,
        {
            "type": "generate",
            "prompt": "Where does Tomasz live?",
            "params": {"max_new_tokens": 4},
            "memory": {"namespace": ns, "top_k": 5, "min_similarity": 0.0},
        },
    )
    memories = {m["id"]: m for m in job["result"]["memories"]}
    assert memories[new["id"]]["used"]
    assert memories[old["id"]]["used"] is False
    assert memories[old["id"]]["left_out"] == "superseded"
    assert "Gdansk" not in job["result"]["prompt"] and "Krakow" in job["result"]["prompt"]

    as_of = datetime.fromtimestamp(before, UTC).isoformat()
    then = http.post(
        "/v1/memories/search", json={"namespace": ns, "query": "Tomasz", "as_of": as_of}
    ).json()["hits"]
    assert [h["id"] for h in then] == [old["id"]]

    assert http.delete(f"/v1/namespaces/{ns}").json()["deleted"] == 2
    gone = http.post(
        "/v1/memories/search",
        json={"namespace": ns, "query": "Tomasz", "include_superseded": True},
    ).json()["hits"]
    assert gone == []


def test_a_move_said_in_chat_supersedes_the_earlier_home(http: httpx.Client) -> None:
    user = _user()

    def say(text: str) -> None:
        _job(
            http,
            {
                "type": "chat",
                "messages": [{"role": "user", "content": text}],
                "user_id": user,
                "remember_facts": True,
                "params": {"max_new_tokens": 2},
            },
        )

    say("I live in Paris.")
    say("I moved to Lyon last month.")
    listed = http.get("/v1/memories", params={"namespace": f"user:{user}"}).json()["items"]
    by_text = {m["text"]: m for m in listed}
    paris = by_text["The user said: I live in Paris."]
    lyon = by_text["The user said: I moved to Lyon last month."]
    assert paris["superseded_by"] == lyon["id"] and lyon["supersedes"] == [paris["id"]]
    assert paris["supersession"]["method"] == "automatic"


def test_a_question_about_someone_unknown_uses_no_memory_and_cites_nothing(
    http: httpx.Client,
) -> None:
    ns = f"user:{_user()}"
    marek = _add(http, ns, "Marek Dvorak drives a red Volvo.")
    unknown = _job(
        http,
        {
            "type": "generate",
            "prompt": "What car does Kofi drive?",
            "params": {"max_new_tokens": 4},
            "memory": {"namespace": ns, "min_similarity": 0.0},
        },
    )
    (memory,) = unknown["result"]["memories"]
    assert memory["id"] == marek["id"] and memory["left_out"] == "different_subject"
    assert unknown["result"]["citations"] == []
    assert unknown["result"]["finish_reason"] == "abstained"
    assert unknown["result"]["text"] == "I don't know: my notes hold nothing about Kofi."
    assert "Volvo" not in unknown["result"]["prompt"]

    answered = _job(
        http,
        {
            "type": "generate",
            "prompt": "What car does Marek drive?",
            "params": {"max_new_tokens": 4},
            "memory": {"namespace": ns, "min_similarity": 0.0},
        },
    )
    assert answered["result"]["memories"][0]["used"]
    assert "Volvo" in answered["result"]["prompt"]
