"""Gateway submit latency under an open-loop load, no model work: p50 / p95 / p99 of
`POST /v1/jobs` at 200 submits/s, with 50 submits/s as the reference, in one run.

A redis-server and the gateway (`python -m gateway`, authentication on with a stored API
key, a rate limit set so the limiter runs) start on a fresh data dir. No worker runs, so jobs
stay queued; the model info a worker would publish (its tokenizer, context window and
template tokens, built by `worker.prompting` exactly as a worker builds them) is published
first, so every submit is validated and budget-checked against a real tokenizer.

The load is open loop: request i is sent at t0 + i / rate whatever the previous ones are
doing, and its latency counts from that scheduled time (a slow client or server cannot hide
its queueing). Windows alternate between the rates. Every window records the CPU seconds of
the gateway, Redis, this process and the machine (/proc), and the load average.

`--workers N` adds the same windows against the gateway under `uvicorn --workers N`;
`--profile` samples the gateway with py-spy (`pip install py-spy`) during one extra window.

    .venv/bin/python -m bench.submit_bench --model-dir .memq/models/smollm2-135m-instruct
Writes bench/results/submit.md, submit.json and submit.png.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import redis

from bench._harness import (
    RESULTS,
    machine,
    machine_busy_s,
    own_cpu_s,
    process_cpu_s,
    quantile,
    start_and_wait,
    subplots,
    table,
    tree_cpu_s,
    write_result,
)
from bench._workload import vocabulary
from memq.contracts import ModelInfo
from memq.ops.process import Child, free_port
from memq.ops.redis_server import start_redis

if TYPE_CHECKING:
    from matplotlib.figure import Figure
from memq.store.jobs import JobStore
from memq.store.keystore import ApiKeyStore

TOKEN = "bench-submit-token"
TENANT = "bench"
TARGET_P99_MS = 50.0


@dataclass
class Window:
    variant: str
    rate: float
    round: int
    sent: int
    latencies_ms: list[float] = field(repr=False)
    lag_ms_p99: float
    """How late the client sent requests (its own scheduling), 99th percentile."""
    statuses: dict[str, int]
    gateway_cpu_s: float
    redis_cpu_s: float
    own_cpu_s: float
    machine_busy_s: float
    seconds: float
    load_before: float

    def q(self, p: float) -> float:
        return quantile(self.latencies_ms, p)


@dataclass
class Row:
    variant: str
    rate: float
    submits: int
    p50: float
    p95: float
    p99: float
    max: float
    lag_p99: float
    errors: int
    gateway_cpu_ms: float
    """Gateway CPU per submit."""
    redis_cpu_ms: float
    others_share: float
    load: float


# ------------------------------------------------------------------------------- stack


def served_model(model_dir: Path) -> ModelInfo:
    """The model info a worker serving `model_dir` publishes (worker/runtime.py)."""
    from transformers import AutoConfig, AutoTokenizer

    from worker.prompting import prompts_for

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    config = AutoConfig.from_pretrained(model_dir)
    context = int(getattr(config, "max_position_embeddings", None) or config.n_positions)
    prompts = prompts_for(tokenizer, context)
    return ModelInfo(
        name=model_dir.name,
        context_window=context,
        tokenizer_json=tokenizer.backend_tokenizer.to_str(),
        template_tokens=prompts.template_tokens(),
        chat_template=prompts.chat_template,
    )


def gateway_app() -> Any:
    """Factory for `uvicorn --factory bench.submit_bench:gateway_app --workers N`."""
    from gateway.core.config import GatewaySettings
    from gateway.main import create_app
    from memq.logs import configure_logging
    from memq.settings import load_settings

    settings = load_settings(GatewaySettings, "gateway")
    configure_logging(settings, "gateway")
    return create_app(settings)


class Gateway:
    """The gateway from `source` (a repository tree) on `workers` uvicorn processes."""

    def __init__(
        self, name: str, source: Path, workers: int, redis_url: str, workdir: Path
    ) -> None:
        self.name = name
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {
            **os.environ,
            "MEMQ_REDIS_URL": redis_url,
            "MEMQ_GATEWAY_PORT": str(self.port),
            "MEMQ_SERVICE_TOKEN": TOKEN,
            "MEMQ_DATA_DIR": str(workdir / f"gateway-{name}"),
            "MEMQ_RATE_LIMIT": "1000000/minute",
            "MEMQ_MAX_UNFINISHED_JOBS": "1000000",
            "MEMQ_MAX_QUEUE_DEPTH": "1000000",
            "PYTHONPATH": str(source),
        }
        # -P: the code comes from `source` (PYTHONPATH), not from the current directory.
        if workers == 1:
            args = [sys.executable, "-P", "-m", "gateway"]
        else:
            args = [
                *(sys.executable, "-P", "-m", "uvicorn"),
                *("--factory", "bench.submit_bench:gateway_app"),
                *("--port", str(self.port), "--workers", str(workers), "--log-level", "warning"),
            ]
        self.child = Child(f"gateway-{name}", args, env, workdir / f"gateway-{name}.log")

    def start(self, timeout: float = 120.0) -> None:
        start_and_wait(self.child, f"{self.url}/livez", timeout)

    @property
    def pid(self) -> int:
        assert self.child.pid is not None
        return self.child.pid

    def stop(self) -> None:
        self.child.stop()


# -------------------------------------------------------------------------------- load


class Prompts:
    """Prompts of 20-200 words drawn from an English vocabulary, different every request."""

    def __init__(self, seed: int) -> None:
        self._rng = random.Random(seed)
        self._words = vocabulary()

    def body(self) -> dict[str, Any]:
        words = self._rng.choices(self._words, k=self._rng.randint(20, 200))
        return {"type": "generate", "prompt": " ".join(words), "params": {"max_new_tokens": 32}}


async def open_loop(
    url: str, key: str, rate: float, seconds: float, prompts: Prompts, connections: int = 64
) -> tuple[list[float], list[float], Counter[str]]:
    """Send `rate * seconds` submits on a fixed schedule over `connections` keep-alive
    connections (wrk2's model); (latencies, lags, statuses). A request whose time has come
    while every connection is busy waits, and that wait is part of its latency.

    Plain asyncio streams, not httpx: at 200 requests/s httpx's pool costs this process
    more CPU than the gateway's own work on these 2 cores, and its lag swamps the result.
    """
    count = int(rate * seconds)
    host, port = url.removeprefix("http://").split(":")
    requests = []
    for _ in range(count):
        body = json.dumps(prompts.body()).encode()
        head = (
            f"POST /v1/jobs HTTP/1.1\r\nHost: {host}:{port}\r\n"
            f"Authorization: Bearer {key}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        )
        requests.append(head.encode() + body)
    latencies: list[float] = []
    lags: list[float] = []
    statuses = Counter[str]()
    loop = asyncio.get_running_loop()
    start = loop.time() + 0.5
    next_index = 0

    async def connection() -> None:
        nonlocal next_index
        reader, writer = await asyncio.open_connection(host, int(port))
        try:
            while next_index < count:
                i = next_index
                next_index += 1
                scheduled = start + i / rate
                await asyncio.sleep(max(0.0, scheduled - loop.time()))
                lags.append((loop.time() - scheduled) * 1000)
                writer.write(requests[i])
                statuses[await read_status(reader)] += 1
                latencies.append((loop.time() - scheduled) * 1000)
        finally:
            writer.close()

    await asyncio.gather(*(connection() for _ in range(connections)))
    return latencies, lags, statuses


async def read_status(reader: asyncio.StreamReader) -> str:
    """Read one HTTP/1.1 response (Content-Length framed); its status code."""
    status = (await reader.readline()).split(b" ", 2)[1].decode()
    length = 0
    while (line := await reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    await reader.readexactly(length)
    return status


def measure(
    gateway: Gateway,
    redis_pid: int,
    key: str,
    rate: float,
    seconds: float,
    round_: int,
    prompts: Prompts,
) -> Window:
    load = os.getloadavg()[0]
    before = (tree_cpu_s(gateway.pid), process_cpu_s(redis_pid), own_cpu_s())
    busy, started = machine_busy_s(), time.perf_counter()
    latencies, lags, statuses = asyncio.run(open_loop(gateway.url, key, rate, seconds, prompts))
    return Window(
        variant=gateway.name,
        rate=rate,
        round=round_,
        sent=len(latencies),
        latencies_ms=latencies,
        lag_ms_p99=quantile(lags, 0.99),
        statuses=dict(statuses),
        gateway_cpu_s=tree_cpu_s(gateway.pid) - before[0],
        redis_cpu_s=process_cpu_s(redis_pid) - before[1],
        own_cpu_s=own_cpu_s() - before[2],
        machine_busy_s=machine_busy_s() - busy,
        seconds=time.perf_counter() - started,
        load_before=load,
    )


def summarize(windows: list[Window], variant: str, rate: float) -> Row:
    mine = [w for w in windows if w.variant == variant and w.rate == rate]
    latencies = [x for w in mine for x in w.latencies_ms]
    submits = sum(w.sent for w in mine)
    used = sum(w.gateway_cpu_s + w.redis_cpu_s + w.own_cpu_s for w in mine)
    busy = sum(w.machine_busy_s for w in mine)
    return Row(
        variant=variant,
        rate=rate,
        submits=submits,
        p50=quantile(latencies, 0.50),
        p95=quantile(latencies, 0.95),
        p99=quantile(latencies, 0.99),
        max=max(latencies),
        lag_p99=max(w.lag_ms_p99 for w in mine),
        errors=sum(n for w in mine for s, n in w.statuses.items() if s != "202"),
        gateway_cpu_ms=1000 * sum(w.gateway_cpu_s for w in mine) / submits,
        redis_cpu_ms=1000 * sum(w.redis_cpu_s for w in mine) / submits,
        others_share=max(0.0, 1 - used / busy) if busy else 0.0,
        load=sum(w.load_before for w in mine) / len(mine),
    )


# ----------------------------------------------------------------------------- profile

CATEGORIES: list[tuple[str, tuple[str, ...]]] = [
    # First match wins, looking from the innermost frame outwards.
    ("model info read (Redis GET + parse)", ("model_info (memq/store/jobs.py",)),
    ("tokenizer build", ("from_str",)),
    ("budget tokenization", ("encode (", "check_job_fits")),
    ("auth (API key)", ("authenticate (gateway", "_lookup (gateway")),
    ("rate limit", ("limits/", "hit (gateway/core/limits.py")),
    ("queue-depth check", ("depth (gateway/core/limits.py", "check (gateway/core/limits.py")),
    ("JobStore.create (Lua)", ("create (memq/store/jobs.py",)),
    ("Celery send_task", ("send_task", "kombu/", "celery/")),
    ("logging", ("logging/", "memq/logs.py")),
    ("request parsing and validation", ("fastapi/routing.py", "fastapi/dependencies", "pydantic")),
    ("thread-pool hand-offs", ("anyio/", "concurrent/futures", "threading.py")),
    ("HTTP server (uvicorn, starlette, asyncio)", ("uvicorn/", "starlette/", "h11", "asyncio/")),
]


def categorize(stack: str) -> str:
    for frame in reversed(stack.split(";")):
        for name, needles in CATEGORIES:
            if any(n in frame for n in needles):
                return name
    return "other"


def is_idle(stack: str) -> bool:
    leaf = stack.rsplit(";", 1)[-1]
    return any(
        w in leaf
        for w in ("wait (threading.py", "select (selectors.py", "_worker (concurrent", "get (queue")
    )


def profile_window(
    py_spy: str, gateway: Gateway, key: str, rate: float, seconds: float, workdir: Path
) -> dict[str, float]:
    out = workdir / "profile.txt"
    spy = subprocess.Popen(
        [
            *(py_spy, "record", "--pid", str(gateway.pid), "--rate", "200", "--idle"),
            *("--nonblocking", "--format", "raw", "--output", str(out)),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(1.0)
    asyncio.run(open_loop(gateway.url, key, rate, seconds, Prompts(seed=99)))
    spy.send_signal(2)
    spy.wait(timeout=60)
    counts = Counter[str]()
    for line in out.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if stack and not is_idle(stack):
            counts[categorize(stack)] += int(n)
    total = sum(counts.values())
    return {k: v / total for k, v in counts.most_common()} if total else {}


# --------------------------------------------------------------------------------- run


def run(
    model_dir: Path,
    rates: list[float],
    seconds: float,
    rounds: int,
    workers: list[int],
    sources: dict[str, Path],
    py_spy: str | None,
    workdir: Path,
) -> tuple[list[Window], dict[str, float], ModelInfo]:
    redis_port = free_port()
    redis_child = start_redis(redis_port, workdir / "redis")
    redis_url = f"redis://127.0.0.1:{redis_port}/0"
    gateways: list[Gateway] = []
    windows: list[Window] = []
    profile: dict[str, float] = {}
    try:
        client = redis.Redis.from_url(redis_url)
        info = served_model(model_dir)
        JobStore(client).publish_model(info)
        key = ApiKeyStore(client).create(TENANT, "bench").key
        gateways = [
            Gateway(
                name if n == 1 else f"{name}, {n} workers",
                source,
                n,
                redis_url,
                workdir / f"{name}-{n}",
            )
            for name, source in sources.items()
            for n in workers
        ]
        for g in gateways:
            g.start()
            asyncio.run(open_loop(g.url, key, 50, 3, Prompts(seed=1)))  # warm-up
        assert redis_child.pid is not None
        for r in range(rounds):
            for rate in rates if r % 2 == 0 else list(reversed(rates)):
                for g in gateways:
                    w = measure(g, redis_child.pid, key, rate, seconds, r, Prompts(seed=r))
                    windows.append(w)
                    print(
                        f"{g.name:>10} {rate:5.0f}/s round {r}: p50 {w.q(0.5):6.1f} "
                        f"p99 {w.q(0.99):7.1f} ms, lag p99 {w.lag_ms_p99:6.1f} ms, "
                        f"{w.statuses}, gateway CPU {w.gateway_cpu_s:.1f} s, "
                        f"load {w.load_before:.1f}",
                        flush=True,
                    )
        if py_spy is not None:
            profile = profile_window(py_spy, gateways[0], key, max(rates), seconds, workdir)
    finally:
        for g in gateways:
            g.stop()
        redis_child.stop()
    return windows, profile, info


def write_markdown(
    rows: list[Row],
    profile: dict[str, float],
    info: ModelInfo,
    seconds: float,
    rounds: int,
    elapsed_s: float,
) -> list[str]:
    lines = [
        "# Gateway submit latency (no model work)",
        "",
        "`POST /v1/jobs` (generate, 20-200 word prompts, max_new_tokens 32) with a stored "
        "API key, a rate limit set, and the model info a worker publishes for "
        f"`{info.name}` ({len(info.tokenizer_json) / 1e6:.1f} MB tokenizer JSON, context "
        f"{info.context_window:,}); no worker, so jobs stay queued. Open-loop load on a fixed "
        f"schedule, latency from each request's scheduled send time; {rounds} window(s) of "
        f"{seconds:.0f} s per rate, rates alternating. Total run {elapsed_s / 60:.1f} min. "
        "Produced by `bench/submit_bench.py`.",
        "",
        *table(
            [
                *("gateway", "submits/s", "submits", "p50 (ms)", "p95 (ms)", "p99 (ms)"),
                *("max (ms)", "client lag p99 (ms)", "non-202", "gateway CPU / submit (ms)"),
                *("Redis CPU / submit (ms)", "others' CPU share", "load avg"),
            ],
            (
                [
                    *(r.variant, f"{r.rate:.0f}", f"{r.submits:,}", f"{r.p50:.1f}"),
                    *(f"{r.p95:.1f}", f"**{r.p99:.1f}**", f"{r.max:.0f}", f"{r.lag_p99:.1f}"),
                    *(r.errors, f"{r.gateway_cpu_ms:.2f}", f"{r.redis_cpu_ms:.2f}"),
                    *(f"{r.others_share:.0%}", f"{r.load:.1f}"),
                ]
                for r in rows
            ),
            align="lrrrrrrrrrrrr",
        ),
    ]
    lines += [
        "",
        f"Target: p99 <= {TARGET_P99_MS:.0f} ms at 200 submits/s. *Client lag* is how late "
        "this process sent requests against the schedule (included in the latencies); "
        "*others' CPU share* is the part of the machine's busy time used by neither the "
        "gateway, Redis nor this client.",
    ]
    if profile:
        lines += [
            "",
            f"## Where the gateway's time goes ({max(r.rate for r in rows):.0f} submits/s)",
            "",
            "py-spy samples of every gateway thread during one extra window (threads waiting "
            "for work excluded; a thread waiting for Redis or the GIL counts where it waits):",
            "",
            *table(["part", "share"], ([k, f"{v:.1%}"] for k, v in profile.items()), "lr"),
        ]
    lines += ["", "![submit](submit.png)", ""]
    return lines


def plot(windows: list[Window]) -> Figure:
    groups: dict[tuple[str, float], list[float]] = {}
    for w in windows:
        groups.setdefault((w.variant, w.rate), []).extend(w.latencies_ms)
    fig, ax = subplots(figsize=(8, 4.5))
    for (variant, rate), values in sorted(groups.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        ordered = sorted(values)
        ys = [100 * (i + 1) / len(ordered) for i in range(len(ordered))]
        ax.plot(ordered, ys, label=f"{variant}, {rate:.0f}/s")
    ax.axvline(TARGET_P99_MS, color="grey", linestyle="--", linewidth=0.8)
    ax.axhline(99, color="grey", linestyle=":", linewidth=0.8)
    ax.set_xscale("log")
    ax.set_xlabel("submit latency (ms, from the scheduled send time)")
    ax.set_ylabel("percentile")
    ax.set_ylim(50, 100.2)
    ax.set_title(f"POST /v1/jobs latency, open loop (target p99 <= {TARGET_P99_MS:.0f} ms)")
    ax.legend(fontsize=8)
    return fig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--model-dir",
        type=Path,
        required=True,
        help="a model directory whose tokenizer and config a worker would publish",
    )
    parser.add_argument("--rates", type=float, nargs="+", default=[50.0, 200.0])
    parser.add_argument("--seconds", type=float, default=30.0, help="per window")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument(
        "--workers", type=int, nargs="+", default=[1], help="uvicorn worker counts to compare"
    )
    parser.add_argument(
        "--compare", nargs="*", default=[], help="NAME=SOURCE_DIR: another tree's gateway too"
    )
    parser.add_argument("--profile", action="store_true", help="py-spy the gateway")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    py_spy = shutil.which("py-spy") if args.profile else None
    if args.profile and py_spy is None:
        parser.error("--profile needs py-spy on PATH (pip install py-spy)")

    sources = {"current": Path(__file__).resolve().parents[1]}
    for spec in args.compare:
        name, _, source = spec.partition("=")
        sources[name] = Path(source).resolve()

    started = time.perf_counter()
    measured_on = machine()
    workdir = Path(tempfile.mkdtemp(prefix="memq-submit-bench-"))
    try:
        windows, profile, info = run(
            args.model_dir,
            args.rates,
            args.seconds,
            args.rounds,
            args.workers,
            sources,
            py_spy,
            workdir,
        )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    variants = list(dict.fromkeys(w.variant for w in windows))
    rows = [summarize(windows, v, rate) for rate in args.rates for v in variants]
    markdown = write_markdown(
        rows, profile, info, args.seconds, args.rounds, time.perf_counter() - started
    )
    data = {"rows": [asdict(r) for r in rows], "profile": profile}
    figure = plot(windows)
    write_result(args.out / "submit", markdown, machine=measured_on, data=data, figure=figure)
    print("\n".join(markdown))


if __name__ == "__main__":
    main()
