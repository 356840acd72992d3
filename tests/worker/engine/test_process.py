"""The batched engine in its own process (MEMQ_ENGINE_PROCESS): the same outputs, events
and cancellation as in process, and a child that dies (or whose parent dies) never
strands a caller or lingers. Real child processes (spawn) on the tiny GPT-2."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from memq.errors import EngineUnavailable
from tests.worker.engine.helpers import (
    DEADLINE_S,
    Hold,
    outputs,
    request,
    run_concurrently,
    wait_until,
)
from tests.worker.helpers import worker_settings
from worker.config import WorkerSettings
from worker.engine import build_engine
from worker.engine.batched import BatchedEngine
from worker.engine.process import ProcessEngine
from worker.engine.simple import SimpleEngine
from worker.model_loader import LoadedModel

REPO = Path(__file__).resolve().parents[3]


def _settings(tiny_model_dir: Path) -> WorkerSettings:
    return worker_settings(
        engine_process=True,
        model=str(tiny_model_dir),
        data_dir=str(tiny_model_dir.parent),
        torch_threads=1,
    )


def _start(tiny_model_dir: Path, tiny_lm: LoadedModel) -> ProcessEngine:
    engine = build_engine(_settings(tiny_model_dir), tiny_lm)
    assert isinstance(engine, ProcessEngine)
    return engine


@pytest.fixture(scope="module")
def process_engine(tiny_model_dir: Path, tiny_lm: LoadedModel) -> Iterator[ProcessEngine]:
    engine = _start(tiny_model_dir, tiny_lm)
    yield engine
    engine.close()


def _gone(pid: int) -> bool:
    """The process has exited (a zombie nobody reaped yet counts as exited)."""
    try:
        return bool(psutil.Process(pid).status() == psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return True


def test_adapted_models_and_the_default_stay_in_process(
    tiny_model_dir: Path, tiny_lm: LoadedModel
) -> None:
    in_process = build_engine(_settings(tiny_model_dir), tiny_lm, in_process=True)
    default = build_engine(worker_settings(), tiny_lm)
    try:
        assert isinstance(in_process, BatchedEngine) and isinstance(default, BatchedEngine)
    finally:
        in_process.close()
        default.close()


def test_greedy_outputs_match_the_in_process_engines_token_for_token(
    tiny_lm: LoadedModel,
    process_engine: ProcessEngine,
    batched_engine: BatchedEngine,
    simple_engine: SimpleEngine,
    prompts: list[str],
) -> None:
    requests = [request(tiny_lm, p, max_new_tokens=40) for p in prompts]
    in_process = outputs(run_concurrently(batched_engine, requests))

    got = outputs(run_concurrently(process_engine, requests))

    assert [o.token_ids for o in got] == [o.token_ids for o in in_process]
    assert [o.token_ids for o in got] == [simple_engine.generate(r).token_ids for r in requests]
    assert [o.text for o in got] == [o.text for o in in_process]
    assert all(o.finish_reason == "length" for o in got)
    assert all(0 <= o.time_to_first_token_s <= o.generation_s for o in got)
    assert process_engine.name == "batched-process"


def test_on_token_events_arrive_in_order_up_to_the_final_count(
    tiny_lm: LoadedModel, process_engine: ProcessEngine
) -> None:
    seen: list[tuple[int, str]] = []
    req = request(tiny_lm, "Memory lets", max_new_tokens=12)
    req.on_token = lambda n, text: seen.append((n, text))
    quiet = request(tiny_lm, "Memory lets", max_new_tokens=12)

    out, silent = outputs(run_concurrently(process_engine, [req, quiet]))

    assert [n for n, _ in seen] == list(range(1, 13))
    assert seen[-1][1] == out.text
    assert silent.token_ids == out.token_ids


def test_cancelled_request_stops_with_its_partial_tokens(
    tiny_lm: LoadedModel, process_engine: ProcessEngine, batched_engine: BatchedEngine
) -> None:
    produced: list[int] = []
    asked = threading.Event()

    def is_cancelled() -> bool:
        if produced and produced[-1] >= 3:
            asked.set()
        return asked.is_set()

    req = request(tiny_lm, "The quick brown fox", max_new_tokens=1000)
    # Holding the parent's reader at token 3 until the caller has seen its cancellation
    # backs the child up on a full pipe long before 1000 tokens (their partial texts are
    # megabytes): the cancel reaches it mid-request.
    req.on_token = Hold({3: asked.is_set}, also=lambda n, _t: produced.append(n))
    req.is_cancelled = is_cancelled

    out = process_engine.generate(req)

    assert out.finish_reason == "cancelled"
    assert 3 <= len(out.token_ids) < 1000
    same_length = request(tiny_lm, "The quick brown fox", max_new_tokens=len(out.token_ids))
    assert out.token_ids == batched_engine.generate(same_length).token_ids


def test_invalid_requests_raise_value_error_in_the_caller(
    tiny_lm: LoadedModel, process_engine: ProcessEngine
) -> None:
    empty = request(tiny_lm, "x", max_new_tokens=4)
    empty.input_ids = []
    too_long = request(tiny_lm, "The quick brown fox", max_new_tokens=1021)

    with pytest.raises(ValueError, match="input_ids is empty"):
        process_engine.generate(empty)
    with pytest.raises(ValueError, match="the model's context is 1024"):
        process_engine.generate(too_long)
    out = process_engine.generate(request(tiny_lm, "The quick brown fox", max_new_tokens=3))
    assert len(out.token_ids) == 3


def test_killed_child_fails_every_caller_retryably_and_a_new_child_serves_the_next(
    tiny_model_dir: Path, tiny_lm: LoadedModel
) -> None:
    engine = _start(tiny_model_dir, tiny_lm)
    try:
        first_pid = engine.stats()["pid"]
        killed = threading.Event()
        requests = [request(tiny_lm, "Memory", max_new_tokens=1000) for _ in range(3)]
        # The parent's reader waits at the first token until the kill: no request can
        # finish (its tokens back the child up on the pipe) before the child dies.
        hold = Hold({1: killed.is_set})
        requests[0].on_token = hold
        for r in requests[1:]:
            r.on_token = lambda _n, _t: None

        def kill_when_all_submitted() -> None:
            if hold.reached[1].wait(DEADLINE_S) and wait_until(
                lambda: engine.stats()["pending"] == 3
            ):
                os.kill(first_pid, signal.SIGKILL)
            killed.set()

        killer = threading.Thread(target=kill_when_all_submitted)
        killer.start()
        results = run_concurrently(engine, requests)
        killer.join(DEADLINE_S)

        hold.check()
        assert all(isinstance(r, EngineUnavailable) for r in results), results
        assert "killed by SIGKILL" in str(results[0])
        out = engine.generate(request(tiny_lm, "The quick brown fox", max_new_tokens=5))
        assert len(out.token_ids) == 5
        second_pid = engine.stats()["pid"]
        assert second_pid != first_pid
    finally:
        engine.close()
    assert _gone(first_pid) and _gone(second_pid)
    assert engine.stats() == {"pid": None, "pending": 0}


ORPHAN_PARENT = """
import sys, time
from worker.config import WorkerSettings
from worker.engine.process import ProcessEngine

settings = WorkerSettings.model_validate(
    {"service_token": "t", "model": sys.argv[1], "data_dir": sys.argv[2], "torch_threads": 1}
)
engine = ProcessEngine(settings)
print(engine.stats()["pid"], flush=True)
time.sleep(600)
"""


@pytest.mark.slow  # a second interpreter imports torch before spawning the child
def test_child_exits_when_its_parent_is_killed(tiny_model_dir: Path) -> None:
    parent = subprocess.Popen(
        [sys.executable, "-c", ORPHAN_PARENT, str(tiny_model_dir), str(tiny_model_dir.parent)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert parent.stdout is not None
        child_pid = int(parent.stdout.readline())
        assert not _gone(child_pid)
    finally:
        parent.kill()
        parent.wait()

    assert wait_until(lambda: _gone(child_pid), timeout=DEADLINE_S), "the engine child lingers"
