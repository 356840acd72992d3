"""Memory batch ingest over HTTP against the raw embedder on the same texts, in one run.

The reference is `Embedder.embed` in this process, built from the same settings as the
service's (model, batch size, threads), called once per request batch. The measured path is
`POST /v1/memories/batch` on a real `python -m memory_service` process (fresh data dir,
flush-on-write on, dedup on) from 1 or 2 concurrent clients. Windows alternate (raw, HTTP,
HTTP, raw, ...) on fresh texts each round, each text embedded once raw and ingested once, so
drift on these shared machines hits both sides alike; the target is HTTP ÷ raw >= 0.8.

Every window also records the CPU seconds of the service, of this process and of the whole
machine (/proc), so "others took the cores" is visible next to each ratio.

`--compare NAME=DIR` runs the same windows against a service started from another source
tree (e.g. `git worktree add /tmp/before HEAD~3`), so a lever's effect is measured in the
same run. `--profile` samples the service with py-spy (`pip install py-spy`) during one extra
window and writes where its time went.

    .venv/bin/python -m bench.ingest_bench                 # ~4 min on 2 quiet cores
    .venv/bin/python -m bench.ingest_bench --profile --quick
Writes bench/results/ingest.md, ingest.json and ingest.png.
"""

from __future__ import annotations

import argparse
import os
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from bench._harness import (
    RESULTS,
    machine,
    machine_busy_s,
    own_cpu_s,
    process_cpu_s,
    start_and_wait,
    subplots,
    table,
    write_result,
)
from bench._workload import synthetic_texts
from memory_service.core.config import MemorySettings
from memory_service.services.embeddings import Embedder, embedder_for
from memq.ops.process import Child, free_port

if TYPE_CHECKING:
    from matplotlib.figure import Figure

REPO = Path(__file__).resolve().parents[1]
TOKEN = "bench-ingest-token"
TENANT = "bench"
MODEL_CACHE = Path(tempfile.gettempdir()) / "memq-bench-models"
"""The exported ONNX model, kept between runs (exporting takes a minute)."""


@dataclass(frozen=True)
class Config:
    clients: int
    batch: int

    @property
    def label(self) -> str:
        return f"{self.clients} client{'s' if self.clients > 1 else ''}, batch {self.batch}"


@dataclass
class Window:
    variant: str
    kind: str  # "raw" or "http"
    config: Config
    round: int
    texts: int
    seconds: float
    deduplicated: int
    service_cpu_s: float
    own_cpu_s: float
    machine_busy_s: float
    load_before: float

    @property
    def rate(self) -> float:
        return self.texts / self.seconds


@dataclass
class Result:
    variant: str
    config: Config
    raw_rate: float
    http_rate: float
    ratio: float
    round_ratios: list[float]
    raw_cpu_per_text_ms: float
    http_cpu_per_text_ms: float
    others_share: float
    """Share of the machine's busy CPU time that neither this process nor the service used."""
    load: float
    deduplicated: int


@dataclass
class Profile:
    config: Config
    samples: int
    categories: dict[str, float] = field(default_factory=dict)


# ---------------------------------------------------------------------------- the service


class Service:
    """`python -m memory_service` from `source` on a fresh data dir."""

    def __init__(self, name: str, source: Path, workdir: Path, model_cache: Path) -> None:
        self.name = name
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        data = workdir / f"data-{name}"
        env = {
            **os.environ,
            "MEMQ_DATA_DIR": str(data),
            "MEMQ_MEMORY_PORT": str(self.port),
            "MEMQ_SERVICE_TOKEN": TOKEN,
            "MEMQ_MODEL_CACHE_DIR": str(model_cache),
            "MEMQ_LOG_LEVEL": "WARNING",
            "HF_HUB_OFFLINE": "1",
            "PYTHONPATH": str(source),
        }
        # -P: the service's code comes from `source` (PYTHONPATH), not from the cwd.
        self.child = Child(
            f"memory-{name}",
            [sys.executable, "-P", "-m", "memory_service"],
            env,
            workdir / f"memory-{name}.log",
        )

    def start(self, timeout: float = 300.0) -> None:
        start_and_wait(self.child, f"{self.url}/readyz", timeout)

    @property
    def pid(self) -> int:
        assert self.child.pid is not None
        return self.child.pid

    def stop(self) -> None:
        self.child.stop()


# ---------------------------------------------------------------------------- windows


def batches_of(texts: list[str], size: int) -> list[list[str]]:
    return [texts[i : i + size] for i in range(0, len(texts), size)]


def ingest(url: str, namespace: str, batches: list[list[str]], clients: int) -> tuple[float, int]:
    """Send every batch from `clients` concurrent clients; (seconds, deduplicated items)."""
    pending: queue.Queue[list[str]] = queue.Queue()
    for b in batches:
        pending.put(b)
    deduplicated = Counter[str]()
    errors: list[BaseException] = []
    headers = {"Authorization": f"Bearer {TOKEN}", "X-Memq-Tenant": TENANT}

    def client() -> None:
        try:
            with httpx.Client(base_url=url, headers=headers, timeout=600) as http:
                while True:
                    try:
                        batch = pending.get_nowait()
                    except queue.Empty:
                        return
                    body = {"items": [{"namespace": namespace, "text": t} for t in batch]}
                    response = http.post("/v1/memories/batch", json=body)
                    response.raise_for_status()
                    items = response.json()["items"]
                    if len(items) != len(batch):
                        raise RuntimeError(f"{len(items)} results for {len(batch)} items")
                    deduplicated["n"] += sum(1 for i in items if i["deduplicated"])
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started
    if errors:
        raise errors[0]
    return elapsed, deduplicated["n"]


def embed_raw(embedder: Embedder, batches: list[list[str]]) -> float:
    started = time.perf_counter()
    for b in batches:
        embedder.embed(b)
    return time.perf_counter() - started


def measure(
    kind: str,
    service: Service,
    embedder: Embedder,
    config: Config,
    round_: int,
    texts: list[str],
) -> Window:
    batches = batches_of(texts, config.batch)
    load = os.getloadavg()[0]
    service_cpu, own_cpu, busy = process_cpu_s(service.pid), own_cpu_s(), machine_busy_s()
    deduplicated = 0
    if kind == "raw":
        seconds = embed_raw(embedder, batches)
    else:
        namespace = f"bench:{config.clients}x{config.batch}"
        seconds, deduplicated = ingest(service.url, namespace, batches, config.clients)
    return Window(
        variant=service.name,
        kind=kind,
        config=config,
        round=round_,
        texts=len(texts),
        seconds=seconds,
        deduplicated=deduplicated,
        service_cpu_s=process_cpu_s(service.pid) - service_cpu,
        own_cpu_s=own_cpu_s() - own_cpu,
        machine_busy_s=machine_busy_s() - busy,
        load_before=load,
    )


def summarize(windows: list[Window], variant: str, config: Config) -> Result:
    mine = [w for w in windows if w.variant == variant and w.config == config]
    raw = [w for w in mine if w.kind == "raw"]
    http = [w for w in mine if w.kind == "http"]
    raw_rate = sum(w.texts for w in raw) / sum(w.seconds for w in raw)
    http_rate = sum(w.texts for w in http) / sum(w.seconds for w in http)
    rounds = sorted({w.round for w in mine})
    round_ratios = [
        next(w.rate for w in http if w.round == r) / next(w.rate for w in raw if w.round == r)
        for r in rounds
    ]
    used = sum(w.service_cpu_s + w.own_cpu_s for w in mine)
    busy = sum(w.machine_busy_s for w in mine)
    return Result(
        variant=variant,
        config=config,
        raw_rate=raw_rate,
        http_rate=http_rate,
        ratio=http_rate / raw_rate,
        round_ratios=round_ratios,
        raw_cpu_per_text_ms=1000 * sum(w.own_cpu_s for w in raw) / sum(w.texts for w in raw),
        http_cpu_per_text_ms=1000
        * sum(w.service_cpu_s + w.own_cpu_s for w in http)
        / sum(w.texts for w in http),
        others_share=max(0.0, 1 - used / busy) if busy else 0.0,
        load=sum(w.load_before for w in mine) / len(mine),
        deduplicated=sum(w.deduplicated for w in http),
    )


# ---------------------------------------------------------------------------- profile

CATEGORIES: list[tuple[str, tuple[str, ...]]] = [
    # First match wins, looking from the innermost frame outwards.
    ("embedding: ONNX Runtime", ("onnxruntime_inference_collection.py",)),
    ("embedding: tokenizer", ("tokenization_utils",)),
    ("embedding: pooling, sorting", ("onnx_encoder.py",)),
    ("durability: WAL fsync / flush", ("_sync_wal", "_flush_pending", "wait_durable")),
    ("dedup: nearest-neighbour lookup", ("_nearest_existing",)),
    ("dedup: content-hash lookup", ("_existing_by_hash",)),
    ("dedup: within the batch", ("_BatchTwins", "find (memory_service")),
    ("BM25 sparse vectors", ("sparse_document", "sparse_documents")),
    ("store upsert (Qdrant Edge update)", ("upsert (memory_service",)),
    ("records, payloads, ids", ("memories.py", "records.py")),
    ("request parsing and validation", ("fastapi/routing.py", "fastapi/dependencies")),
    ("response serialization", ("serialize_response", "jsonable_encoder", "responses.py")),
    ("HTTP server (uvicorn, starlette)", ("uvicorn/", "starlette/", "h11")),
]


def categorize(stack: str) -> str | None:
    frames = stack.split(";")
    if not any("memory_service" in f or "fastapi" in f or "uvicorn" in f for f in frames):
        return None
    for frame in reversed(frames):
        for name, needles in CATEGORIES:
            if any(n in frame for n in needles):
                return name
    return "other"


def is_idle(stack: str) -> bool:
    """A thread-pool worker waiting for work, or the event loop waiting for sockets."""
    leaf = stack.rsplit(";", 1)[-1]
    waiting = ("wait (threading.py", "select (selectors.py", "_worker (concurrent")
    return any(w in leaf for w in waiting) or (
        "run_forever" in stack and "select" in leaf and "memory_service" not in stack
    )


def profile_window(
    py_spy: str, service: Service, config: Config, texts: list[str], workdir: Path
) -> Profile:
    out = workdir / "profile.txt"
    spy = subprocess.Popen(
        [
            py_spy,
            "record",
            "--pid",
            str(service.pid),
            "--rate",
            "100",
            "--idle",
            "--nonblocking",
            "--format",
            "raw",
            "--output",
            str(out),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(1.0)  # py-spy attaches
    ingest(service.url, "bench:profile", batches_of(texts, config.batch), config.clients)
    spy.send_signal(2)  # SIGINT: py-spy writes the file and exits
    spy.wait(timeout=60)
    counts = Counter[str]()
    for line in out.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if not stack or is_idle(stack):
            continue
        category = categorize(stack)
        if category is not None:
            counts[category] += int(n)
    total = sum(counts.values())
    return Profile(
        config=config,
        samples=total,
        categories={k: v / total for k, v in counts.most_common()} if total else {},
    )


# ---------------------------------------------------------------------------- run


def run(
    configs: list[Config],
    rounds: int,
    per_round: int,
    variants: dict[str, Path],
    py_spy: str | None,
    workdir: Path,
) -> tuple[list[Window], Profile | None, Embedder]:
    settings = MemorySettings(
        service_token=TOKEN,  # type: ignore[arg-type]
        data_dir=workdir / "reference",
        model_cache_dir=MODEL_CACHE,
    )
    embedder = embedder_for(settings)
    services = [Service(n, src, workdir, settings.onnx_cache_dir) for n, src in variants.items()]
    for s in services:
        s.start()
    windows: list[Window] = []
    seed = 1000
    try:
        warm = synthetic_texts(256, seed=1)
        embed_raw(embedder, batches_of(warm, 64))
        for s in services:
            ingest(s.url, "bench:warm-up", batches_of(warm, 64), 1)
        for config in configs:
            for r in range(rounds):
                for s in services:
                    seed += 1
                    texts = synthetic_texts(per_round, seed=seed)
                    order = ["raw", "http"] if r % 2 == 0 else ["http", "raw"]
                    for kind in order:
                        w = measure(kind, s, embedder, config, r, texts)
                        windows.append(w)
                        print(
                            f"{s.name:>8} {config.label:<22} round {r} {kind:>4}: "
                            f"{w.rate:6.0f} texts/s ({w.seconds:5.1f} s, load {w.load_before:.1f})",
                            flush=True,
                        )
        profile = None
        if py_spy is not None:
            config = max(configs, key=lambda c: (c.batch, -c.clients))
            texts = synthetic_texts(per_round, seed=seed + 1)
            profile = profile_window(py_spy, services[0], config, texts, workdir)
    finally:
        for s in services:
            s.stop()
    return windows, profile, embedder


# ---------------------------------------------------------------------------- report


def write_markdown(
    results: list[Result],
    profile: Profile | None,
    embedder: Embedder,
    rounds: int,
    per_round: int,
    elapsed_s: float,
) -> list[str]:
    lines = [
        "# Memory batch ingest vs the raw embedder",
        "",
        f"{embedder.model_name} ({embedder.backend}, embedding batch {embedder.batch_size}); "
        f"{rounds} rounds of {per_round} fresh texts per row, each text embedded once by the "
        "raw embedder (this process, the service's settings) and ingested once over HTTP "
        "(`POST /v1/memories/batch`, flush-on-write and dedup on, one namespace per row). "
        f"Total run {elapsed_s / 60:.1f} min; 1-min load average at the end "
        f"{os.getloadavg()[0]:.1f}. Produced by `bench/ingest_bench.py`.",
        "",
        *table(
            [
                *("service", "clients × batch", "raw embedder (texts/s)"),
                *("HTTP ingest (memories/s)", "HTTP ÷ raw", "per round"),
                *("CPU per text raw / HTTP (ms)", "others' CPU share", "load avg"),
            ],
            (
                [
                    *(r.variant, f"{r.config.clients} × {r.config.batch}", f"{r.raw_rate:.0f}"),
                    *(f"{r.http_rate:.0f}", f"**{r.ratio:.2f}**"),
                    " / ".join(f"{x:.2f}" for x in r.round_ratios),
                    f"{r.raw_cpu_per_text_ms:.2f} / {r.http_cpu_per_text_ms:.2f}",
                    *(f"{r.others_share:.0%}", f"{r.load:.1f}"),
                ]
                for r in results
            ),
            align="llrrrlrrr",
        ),
    ]
    lines += [
        "",
        "Target: HTTP ÷ raw >= 0.8. *CPU per text* counts the service's and this process's "
        "CPU seconds (HTTP: the service plus the clients' JSON work); *others' CPU share* is "
        "the part of the machine's busy time used by neither.",
    ]
    if profile is not None:
        lines += [
            "",
            f"## Where the service's time goes ({profile.config.label})",
            "",
            f"py-spy samples of the service's request threads during one extra window "
            f"({profile.samples} samples at 100 Hz, waiting for work excluded; a thread "
            "blocked on a lock or the GIL counts where it waits):",
            "",
            *table(
                ["part", "share"],
                ([k, f"{v:.1%}"] for k, v in profile.categories.items()),
                "lr",
            ),
        ]
    lines += ["", "![ingest](ingest.png)", ""]
    return lines


def plot(results: list[Result]) -> Figure:
    variants = list(dict.fromkeys(r.variant for r in results))
    configs = list(dict.fromkeys(r.config for r in results))
    fig, (ax1, ax2) = subplots(1, 2, figsize=(12, 4))
    width = 0.8 / max(len(variants), 1)
    for i, v in enumerate(variants):
        mine = {r.config: r for r in results if r.variant == v}
        xs = [x + i * width for x in range(len(configs))]
        ax1.bar(xs, [mine[c].ratio for c in configs], width, label=v)
        ax2.bar(xs, [mine[c].http_rate for c in configs], width, label=f"{v}: HTTP ingest")
        ax2.plot(xs, [mine[c].raw_rate for c in configs], "k_", markersize=18, mew=2)
    ticks = [x + width * (len(variants) - 1) / 2 for x in range(len(configs))]
    labels = [f"{c.clients}×{c.batch}" for c in configs]
    ax1.axhline(0.8, color="grey", linestyle="--", linewidth=0.8)
    ax1.set_xticks(ticks, labels)
    ax1.set_ylabel("HTTP ingest ÷ raw embedder")
    ax1.set_title("Ingest ÷ embedder, same texts, same run (target 0.8)")
    ax1.legend(fontsize=8)
    ax2.set_xticks(ticks, labels)
    ax2.set_ylabel("texts / s")
    ax2.set_title("HTTP ingest (bars) and raw embedder (black marks)")
    ax2.set_xlabel("clients × batch")
    return fig


def parse_config(text: str) -> Config:
    clients, _, batch = text.partition("x")
    return Config(int(clients), int(batch))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--configs",
        nargs="+",
        type=parse_config,
        default=[parse_config(c) for c in ("1x64", "1x256", "1x500", "2x256", "2x500")],
        help="CLIENTSxBATCH",
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--texts", type=int, default=1000, help="texts per round and row")
    parser.add_argument("--compare", nargs="*", default=[], help="NAME=SOURCE_DIR")
    parser.add_argument("--profile", action="store_true", help="py-spy the service")
    parser.add_argument("--quick", action="store_true", help="1 round of 300 texts")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.texts = 1, 300
    variants = {"current": REPO}
    for spec in args.compare:
        name, _, source = spec.partition("=")
        variants[name] = Path(source).resolve()
    py_spy = shutil.which("py-spy") if args.profile else None
    if args.profile and py_spy is None:
        parser.error("--profile needs py-spy on PATH (pip install py-spy)")

    started = time.perf_counter()
    measured_on = machine()
    workdir = Path(tempfile.mkdtemp(prefix="memq-ingest-bench-"))
    try:
        windows, profile, embedder = run(
            args.configs, args.rounds, args.texts, variants, py_spy, workdir
        )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    results = [summarize(windows, v, c) for c in args.configs for v in variants]
    markdown = write_markdown(
        results, profile, embedder, args.rounds, args.texts, time.perf_counter() - started
    )
    data: dict[str, Any] = {
        "windows": [asdict(w) for w in windows],
        "results": [asdict(r) for r in results],
        "profile": asdict(profile) if profile else None,
    }
    figure = plot(results)
    write_result(args.out / "ingest", markdown, machine=measured_on, data=data, figure=figure)
    print("\n".join(markdown))


if __name__ == "__main__":
    main()
