"""The memory evaluation's data and scoring (memq/evaluation), and `memq eval` against a
scripted gateway that knows the set: exact recall and answer numbers, the targets, the
namespace deleted (or kept), usage errors. Against the real stack:
tests/e2e/test_eval_e2e.py."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from memq import cli
from memq.cli import common
from memq.contracts.openai import ChatCompletionRequest
from memq.evaluation.data import FACTS, SAID, Fact, contains_answer, distractors
from memq.evaluation.scoring import (
    ANSWER_TARGETS,
    RECALL_TARGET,
    answer_hits,
    answer_job,
    chat_completion_request,
    recall_at,
    recall_of,
    search_request,
    share,
)
from memq.ops.process import free_port
from memq.sdk import Client
from memq.sdk._core import build_job
from tests.utils.scripted_gateway import job_json, memory_json, sse

# ------------------------------------------------------------------------------ scoring


def test_recall_at_k_counts_the_wanted_memory_among_the_first_k_hits() -> None:
    rankings = [["a", "x", "y"], ["x", "b"], ["x", "y", "z", "w", "v", "c"], []]
    wanted = ["a", "b", "c", "d"]
    assert recall_at(rankings, wanted, 1) == 0.25
    assert recall_at(rankings, wanted, 2) == 0.5
    assert recall_at(rankings, wanted, 5) == 0.5  # "c" is sixth
    assert recall_of(rankings, wanted) == {"recall@1": 0.25, "recall@5": 0.5}


def test_recall_refuses_rankings_that_do_not_match_the_questions() -> None:
    with pytest.raises(ValueError, match="2 rankings for 1 questions"):
        recall_at([["a"], ["b"]], ["a"], 1)
    with pytest.raises(ValueError, match="no questions"):
        recall_at([], [], 5)


def test_contains_answer_is_a_case_insensitive_substring_of_the_answer_word() -> None:
    fact = Fact("Nadira Fel drives a green 1974 Citroën.", "What car?", "Citro")
    assert contains_answer("She drives a CITROËN.", fact)
    assert contains_answer("a citroen", fact)
    assert not contains_answer("A green car from 1974.", fact)
    said = SAID[0]
    assert contains_answer(f"It is called {said.answer.upper()}!", said)


def test_answer_hits_and_share_score_each_answer_against_its_own_fact() -> None:
    facts = FACTS[:3]
    answers = [f"It is {facts[0].answer}.", f"Maybe {facts[0].answer}?", facts[2].answer]
    assert answer_hits(answers, facts) == [True, False, True]
    assert share(answer_hits(answers, facts)) == pytest.approx(2 / 3)
    with pytest.raises(ValueError):
        share([])


def test_the_set_is_40_facts_whose_questions_do_not_give_the_answer_away() -> None:
    assert len(FACTS) == 40 and len({f.text for f in FACTS}) == 40
    for fact in FACTS:
        assert contains_answer(fact.text, fact), fact
        assert not contains_answer(fact.question, fact), fact
    noise = distractors(400)
    assert len(set(noise)) == 400 and noise == distractors(400)  # unique, reproducible
    assert not set(noise) & {f.text for f in FACTS}


@pytest.mark.parametrize("namespace", ["eval:abc", None])
def test_the_cli_job_is_the_job_bench_chat_completion_becomes(namespace: str | None) -> None:
    """`memq eval` submits jobs; bench/memory_eval.py posts chat completions: the same job."""
    bench = ChatCompletionRequest.model_validate(chat_completion_request("Q?", namespace))
    assert build_job(answer_job("Q?", namespace)) == bench.to_job()


def test_targets_report_whether_each_measured_number_meets_the_issue() -> None:
    on, off = ANSWER_TARGETS
    assert RECALL_TARGET.met(0.95) and not RECALL_TARGET.met(0.9)
    assert str(RECALL_TARGET) == "≥ 0.95" and str(on) == "≥ 60%"
    assert off.met(0.0) and off.met(0.05) and not off.met(0.1)
    assert search_request("ns", "q?", "hybrid") == {
        "namespace": "ns",
        "query": "q?",
        "top_k": 5,
        "mode": "hybrid",
    }


# ------------------------------------------------------------------------------ memq eval


class EvalGateway:
    """A gateway that knows the evaluation set: it stores memories in order, finds each
    question's fact first (hybrid, dense) or second (keyword), and answers a question with
    the fact only when the job retrieves from the namespace."""

    def __init__(self, existing: int = 0) -> None:
        self.texts: dict[str, str] = {f"old{i}": "already here" for i in range(existing)}
        self.jobs: dict[str, dict[str, Any]] = {}
        self.forgotten: list[str] = []
        self.cancelled: list[str] = []
        self.by_question = {f.question: f for f in FACTS}

    def _id_of(self, text: str) -> str:
        return next(i for i, t in self.texts.items() if t == text)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        body = json.loads(request.content) if request.content else {}
        if path == "/v1/memories" and request.method == "GET":
            items = [memory_json(i) for i in self.texts][:1]
            return httpx.Response(200, json={"items": items, "next_cursor": None})
        if path == "/v1/memories/batch":
            added = []
            for item in body["items"]:
                memory_id = f"m{len(self.texts)}"
                self.texts[memory_id] = item["text"]
                added.append(memory_json(memory_id))
            return httpx.Response(201, json={"items": added})
        if path == "/v1/memories/search":
            fact = self.by_question[body["query"]]
            ids = [i for i in self.texts if self.texts[i] != fact.text][:4]
            right = self._id_of(fact.text)
            ranked = [ids[0], right, *ids[1:]] if body["mode"] == "keyword" else [right, *ids]
            hits = [
                {"id": i, "score": 1.0, "text": self.texts[i], "namespace": "n"} for i in ranked
            ]
            return httpx.Response(200, json={"hits": hits})
        if path == "/v1/jobs":
            job_id = f"j{len(self.jobs)}"
            self.jobs[job_id] = body
            url = f"http://gw/v1/jobs/{job_id}"
            return httpx.Response(202, json={"id": job_id, "status": "queued", "status_url": url})
        if path.startswith("/v1/jobs/") and path.endswith("/events"):
            job_id = path.split("/")[3]
            job = self.jobs[job_id]
            fact = self.by_question[job["messages"][0]["content"]]
            uses_memory = bool(job["memory"].get("namespaces"))
            text = f"That is {fact.answer}." if uses_memory else "I do not know."
            result = job_json(text=text, job_id=job_id)
            content = sse(("1-0", "result", result))
            return httpx.Response(
                200, content=content, headers={"content-type": "text/event-stream"}
            )
        if path.startswith("/v1/namespaces/") and request.method == "DELETE":
            namespace = path.removeprefix("/v1/namespaces/")
            self.forgotten.append(namespace)
            deleted, self.texts = len(self.texts), {}
            return httpx.Response(200, json={"namespace": namespace, "deleted": deleted})
        return httpx.Response(404, json={"error": "not_found", "message": f"unscripted {path}"})


@pytest.fixture
def eval_gateway(monkeypatch: pytest.MonkeyPatch) -> Iterator[EvalGateway]:
    scripted = EvalGateway()

    def make_client(url: str | None, key: str | None) -> Client:
        return Client(url or "http://gw", key, transport=httpx.MockTransport(scripted))

    monkeypatch.setattr(common, "make_client", make_client)
    yield scripted


def memq(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli.app, list(args))
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


def test_eval_scores_recall_and_answers_then_deletes_the_namespace(
    eval_gateway: EvalGateway,
) -> None:
    code, out, err = memq("eval", "--quick", "--namespace", "eval:unit", "--json")
    assert code == 0, err
    report = json.loads(out)
    assert report["namespace"] == "eval:unit" and report["deleted"] is True
    assert (report["facts"], report["distractors"]) == (10, 100)
    assert report["recall"] == {
        "dense": {"recall@1": 1.0, "recall@5": 1.0},
        "keyword": {"recall@1": 0.0, "recall@5": 1.0},
        "hybrid": {"recall@1": 1.0, "recall@5": 1.0},
    }
    assert report["answers"] == {"memory on": 1.0, "memory off": 0.0}
    assert report["model"] == "tiny" and report["failed_jobs"] == 0
    assert [(t["metric"], t["met"]) for t in report["targets"]] == [
        ("hybrid recall@5", True),
        ("answer contains the fact, memory on", True),
        ("answer contains the fact, memory off", True),
    ]
    assert eval_gateway.forgotten == ["eval:unit"]
    sent = list(eval_gateway.jobs.values())
    assert len(sent) == 20 and sent[0] == answer_job(FACTS[0].question, "eval:unit")
    assert sent[1] == answer_job(FACTS[0].question, None)


def test_eval_prints_the_numbers_next_to_the_targets(eval_gateway: EvalGateway) -> None:
    code, out, err = memq("eval", "--quick", "--modes", "hybrid,dense", "--keep")
    assert code == 0, err
    shown = " ".join(out.split())
    assert "10 facts among 100 distractors in eval:" in shown and "(kept)" in shown
    assert "keyword" not in shown and "hybrid recall@5" in shown and "≥ 0.95" in shown
    assert "memory on" in shown and "100%" in shown and "≥ 60%" in shown
    assert eval_gateway.forgotten == []  # --keep


def test_eval_without_answers_only_searches(eval_gateway: EvalGateway) -> None:
    code, out, _ = memq("eval", "--quick", "--no-answers", "-m", "keyword", "--json")
    report = json.loads(out)
    assert code == 0 and report["answers"] is None and list(report["recall"]) == ["keyword"]
    assert report["targets"] == [] and eval_gateway.jobs == {}
    assert eval_gateway.forgotten == [report["namespace"]]
    assert report["namespace"].startswith("eval:")


def test_eval_refuses_a_namespace_that_holds_memories(monkeypatch: pytest.MonkeyPatch) -> None:
    scripted = EvalGateway(existing=1)
    monkeypatch.setattr(
        common,
        "make_client",
        lambda url, key: Client("http://gw", transport=httpx.MockTransport(scripted)),
    )
    code, _, err = memq("eval", "--quick", "-n", "user:42")
    assert code == 2 and "user:42 already holds memories" in " ".join(err.split())
    assert scripted.forgotten == [] and len(scripted.texts) == 1


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (("--mode", "sparse"), "'sparse' is not a search mode"),
        (("--namespace", "no spaces"), "is not a namespace"),
        (("--max-new-tokens", "0"), "max-new-tokens"),
    ],
)
def test_eval_usage_errors_exit_2(
    eval_gateway: EvalGateway, args: tuple[str, ...], words: str
) -> None:
    code, _, err = memq("eval", "--quick", *args)
    assert code == 2 and words in " ".join(err.split())
    assert eval_gateway.texts == {}


def test_eval_against_an_unreachable_gateway_exits_3() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    code, out, err = memq("eval", "--quick", "--gateway", url)
    assert code == 3 and url in err and "cannot be reached" in err
    assert "Traceback" not in out + err
