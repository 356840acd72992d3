"""Memory service benchmark: ingest rate and search latency at 10k and 100k memories on the
embedded Qdrant Edge backend. Writes bench/results/memory.md and bench/results/memory.png.

    .venv/bin/python -m bench.memory_bench            # ~10 minutes on 2 cores

Ingest goes through `MemoryService.add_many` (embedding, dedup lookups, upsert, flush), in
batches like `POST /v1/memories/batch`. Search latency is measured twice: against the store
alone (query vector precomputed) and end to end over HTTP against a real
`python -m memory_service` process (query embedding included). Every memory lives in one
tenant and one namespace, the worst case for a namespace-scoped search.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import httpx

from bench._harness import RESULTS, machine, quantile, subplots, table, write_result
from bench._workload import synthetic_texts
from memory_service.core.config import MemorySettings
from memory_service.services.embeddings import embedder_for
from memory_service.services.memories import MemoryService
from memory_service.services.records import namespace_where, utcnow
from memory_service.store.base import SearchSpec
from memory_service.store.edge import EdgeStore
from memq.contracts import MemoryCreate
from memq.ops.process import free_port

if TYPE_CHECKING:
    from matplotlib.figure import Figure

REPO = Path(__file__).resolve().parents[1]
TENANT, NAMESPACE, TOKEN = "bench", "bench:all", "bench-token"


@dataclass
class Row:
    size: int
    stored: int
    ingest_rate: float
    optimize_s: float
    store_dense_p50: float
    store_dense_p95: float
    store_hybrid_p50: float
    store_hybrid_p95: float
    http_p50: float
    http_p95: float
    http_dense_p50: float
    http_dense_p95: float


def ingest(service: MemoryService, texts: list[str], batch: int) -> tuple[float, float]:
    """Returns (memories/s excluding index builds, seconds spent building indexes)."""
    writing = optimizing = 0.0
    for i in range(0, len(texts), batch):
        items = [MemoryCreate(namespace=NAMESPACE, text=t) for t in texts[i : i + batch]]
        t = time.perf_counter()
        service.add_many(TENANT, items)
        writing += time.perf_counter() - t
        if (i // batch) % 100 == 99:
            # The service's housekeeping loop does this in the background every minute.
            t = time.perf_counter()
            service.store.maintain()
            optimizing += time.perf_counter() - t
            print(f"  ingested {i + len(items)}/{len(texts)}, {writing:.0f}s", flush=True)
    t = time.perf_counter()
    service.store.maintain()
    optimizing += time.perf_counter() - t
    return len(texts) / writing, optimizing


def store_latency(service: MemoryService, queries: list[str], hybrid: bool) -> list[float]:
    vectors = service.embedder.embed(queries)
    sparse = [service.embedder.sparse_query(q) for q in queries]
    where = namespace_where(NAMESPACE, utcnow())
    out = []
    for i in range(len(queries)):
        spec = SearchSpec(
            limit=5,
            dense=vectors[i].tolist(),
            sparse=sparse[i] if hybrid else None,
            where=where,
            with_dense=hybrid,
        )
        t = time.perf_counter()
        service.store.search(TENANT, spec)
        out.append((time.perf_counter() - t) * 1000)
    return out


def http_latency(settings: MemorySettings, queries: list[str]) -> tuple[list[float], list[float]]:
    port = free_port()
    env = {
        **os.environ,
        "MEMQ_DATA_DIR": str(settings.data_dir),
        "MEMQ_MODEL_CACHE_DIR": str(settings.onnx_cache_dir),
        "MEMQ_MEMORY_PORT": str(port),
        "MEMQ_SERVICE_TOKEN": TOKEN,
        "MEMQ_LOG_LEVEL": "WARNING",
        "HF_HUB_OFFLINE": "1",
    }
    proc = subprocess.Popen([sys.executable, "-m", "memory_service"], cwd=REPO, env=env)
    url = f"http://127.0.0.1:{port}"
    headers = {"Authorization": f"Bearer {TOKEN}", "X-Memq-Tenant": TENANT}
    try:
        with httpx.Client(base_url=url, headers=headers, timeout=30) as client:
            for _ in range(600):
                try:
                    if client.get("/healthz").status_code == 200:
                        break
                except httpx.TransportError:
                    time.sleep(0.2)
            results: dict[str, list[float]] = {"hybrid": [], "dense": []}
            for mode, out in results.items():
                for q in queries[:20]:  # warm-up
                    client.post("/v1/memories/search", json={"namespace": NAMESPACE, "query": q})
                for q in queries:
                    body = {"namespace": NAMESPACE, "query": q, "top_k": 5, "mode": mode}
                    t = time.perf_counter()
                    r = client.post("/v1/memories/search", json=body)
                    out.append((time.perf_counter() - t) * 1000)
                    r.raise_for_status()
            return results["hybrid"], results["dense"]
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def run(sizes: list[int], batch: int, n_queries: int, workdir: Path) -> list[Row]:
    settings = MemorySettings(
        service_token=TOKEN,  # type: ignore[arg-type]
        data_dir=workdir / "data",
        model_cache_dir=workdir / "models",
    )
    embedder = embedder_for(settings)
    texts = synthetic_texts(max(sizes), seed=7)
    queries = synthetic_texts(n_queries, seed=99)
    rows: list[Row] = []
    done = 0
    for size in sizes:
        store = EdgeStore(settings.edge_path, embedder.dim)
        service = MemoryService(store=store, embedder=embedder)
        print(f"[{size}] ingesting {size - done} memories in batches of {batch}", flush=True)
        rate, optimize_s = ingest(service, texts[done:size], batch)
        done = size
        stored = store.count(TENANT, None)
        print(f"[{size}] {rate:.0f} memories/s, stored {stored}, optimize {optimize_s:.1f}s")
        store_latency(service, queries[:20], hybrid=False)  # warm-up
        dense = store_latency(service, queries, hybrid=False)
        hybrid = store_latency(service, queries, hybrid=True)
        store.close()
        http_hybrid, http_dense = http_latency(settings, queries)
        rows.append(
            Row(
                size=size,
                stored=stored,
                ingest_rate=rate,
                optimize_s=optimize_s,
                store_dense_p50=quantile(dense, 0.50),
                store_dense_p95=quantile(dense, 0.95),
                store_hybrid_p50=quantile(hybrid, 0.50),
                store_hybrid_p95=quantile(hybrid, 0.95),
                http_p50=quantile(http_hybrid, 0.50),
                http_p95=quantile(http_hybrid, 0.95),
                http_dense_p50=quantile(http_dense, 0.50),
                http_dense_p95=quantile(http_dense, 0.95),
            )
        )
        print(rows[-1], flush=True)
    return rows


def write_markdown(rows: list[Row], batch: int, n_queries: int, elapsed_s: float) -> list[str]:
    lines = [
        "# Memory service benchmark (embedded Qdrant Edge)",
        "",
        "Model all-MiniLM-L6-v2 on CPU; "
        f"ingest batches of {batch}; {n_queries} search queries per row, top_k=5; "
        "all memories in one tenant and one namespace. Total run "
        f"{elapsed_s / 60:.1f} min; 1-min load average at the end "
        f"{os.getloadavg()[0]:.1f} (other processes share the cores). "
        "Produced by `python -m bench.memory_bench`.",
        "",
        *table(
            [
                *("memories", "stored after dedup", "ingest (memories/s, embedding incl.)"),
                *("index build (s)", "store dense p50 / p95 (ms)", "store hybrid p50 / p95 (ms)"),
                *("HTTP hybrid p50 / p95 (ms)", "HTTP dense p50 / p95 (ms)"),
            ],
            (
                [
                    *(
                        f"{r.size:,}",
                        f"{r.stored:,}",
                        f"{r.ingest_rate:.0f}",
                        f"{r.optimize_s:.1f}",
                    ),
                    f"{r.store_dense_p50:.2f} / {r.store_dense_p95:.2f}",
                    f"{r.store_hybrid_p50:.2f} / {r.store_hybrid_p95:.2f}",
                    f"{r.http_p50:.1f} / {r.http_p95:.1f}",
                    f"{r.http_dense_p50:.1f} / {r.http_dense_p95:.1f}",
                ]
                for r in rows
            ),
            align="rrrrrrrr",
        ),
    ]
    lines += [
        "",
        "Targets: store search p95 <= 10 ms at 100k; HTTP p95 <= 30 ms including the query "
        "embedding; ingest >= 400 memories/s in batches.",
        "",
        "The ingest rate of the 100k row covers the memories added after the 10k row "
        "(10k -> 100k), so it includes dedup lookups against a growing store.",
        "",
        "![latency](memory.png)",
        "",
    ]
    return lines


def plot(rows: list[Row]) -> Figure:
    labels = [f"{r.size // 1000}k" for r in rows]
    series = {
        "store dense p95": [r.store_dense_p95 for r in rows],
        "store hybrid p95": [r.store_hybrid_p95 for r in rows],
        "HTTP dense p95": [r.http_dense_p95 for r in rows],
        "HTTP hybrid p95": [r.http_p95 for r in rows],
    }
    fig, (ax1, ax2) = subplots(1, 2, figsize=(11, 4))
    width = 0.2
    for i, (name, values) in enumerate(series.items()):
        ax1.bar([x + i * width for x in range(len(rows))], values, width, label=name)
    ax1.axhline(10, color="grey", linestyle="--", linewidth=0.8)
    ax1.axhline(30, color="grey", linestyle=":", linewidth=0.8)
    ax1.set_xticks([x + 1.5 * width for x in range(len(rows))], labels)
    ax1.set_ylabel("ms")
    ax1.set_title("Search latency p95 (targets 10 ms store, 30 ms HTTP)")
    ax1.legend(fontsize=8)
    ax2.bar(labels, [r.ingest_rate for r in rows], color="tab:green")
    ax2.axhline(400, color="grey", linestyle="--", linewidth=0.8)
    ax2.set_ylabel("memories / s")
    ax2.set_title("Batch ingest rate (target 400/s)")
    return fig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    started = time.perf_counter()
    measured_on = machine()
    workdir = Path(tempfile.mkdtemp(prefix="memq-bench-"))
    try:
        rows = run(sorted(args.sizes), args.batch, args.queries, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    markdown = write_markdown(rows, args.batch, args.queries, time.perf_counter() - started)
    write_result(args.out / "memory", markdown, machine=measured_on, figure=plot(rows))
    print("\n".join(markdown))


if __name__ == "__main__":
    main()
