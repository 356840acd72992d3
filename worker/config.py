"""Worker settings: every `MEMQ_*` variable the worker reads, validated at start-up."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import Field

from memq.settings import ServiceSettings


class WorkerSettings(ServiceSettings):
    model: str = Field(default="gpt2", description="Hub id or local directory of a causal LM.")
    engine: Literal["batched", "simple"] = Field(default="batched")
    engine_process: bool = Field(
        default=False,
        description="Run the batched engine's decode loop in a child process of its own (its "
        "own GIL and cores; the model is loaded twice, docs/engine.md).",
    )
    engine_retries: int = Field(
        default=3,
        ge=0,
        le=20,
        description="Task retries of a job whose engine process died under it (then it fails "
        "with `engine_unavailable`).",
    )
    dtype: Literal["float32", "bfloat16"] = Field(default="float32")
    context_window: int = Field(
        default=0,
        ge=0,
        description="0 = the model's own context; a smaller value caps the context memq "
        "budgets with (longer texts are map-reduced, the KV cache stays smaller).",
    )
    torch_threads: int = Field(
        default_factory=lambda: os.cpu_count() or 1, ge=1, description="torch intra-op threads."
    )
    concurrency: int = Field(
        default=0,
        ge=0,
        le=256,
        description="Celery threads per worker process (jobs in flight); 0 = engine default "
        "(max_batch_size for batched, 1 for simple).",
    )
    max_batch_size: int = Field(default=32, ge=1, le=256, description="Rows decoded together.")
    max_batch_tokens: int = Field(
        default=32 * 1024,
        ge=1,
        description="KV budget of a batch: rows × the widest (prompt + max_new_tokens) row.",
    )
    max_prefill_tokens: int = Field(
        default=4096, ge=1, description="Padded prompt tokens prefilled in one forward."
    )
    prefill_chunk_tokens: int = Field(
        default=512,
        ge=0,
        description="A prefill group wider than this many tokens is prefilled in chunks, "
        "each followed by a decode step of the running rows (a long prompt never stalls "
        "the batch for more than one chunk); 0 = whole groups.",
    )
    gil_switch_interval_s: float = Field(
        default=0.0005,
        gt=0,
        le=0.1,
        description="sys.setswitchinterval for the worker process (Python's default: 0.005).",
    )
    retrieval_query_chars: int = Field(
        default=2000, ge=100, description="Tail of the job's text used as the search query."
    )
    memory_retries: int = Field(
        default=5, ge=0, le=20, description="Task retries when the memory service is down."
    )
    memory_timeout_s: float = Field(default=10.0, gt=0, description="Per-request timeout.")
    session_summary_tokens: int = Field(
        default=0,
        ge=0,
        description="When a session's turns not yet summarized pass this many tokens, the "
        "oldest are condensed into its rolling summary (0: half the model's context).",
    )
    session_recent_turns: int = Field(
        default=4, ge=0, le=100, description="Newest turns never folded into the summary."
    )
    prompt_style: Literal["auto", "plain", "template"] = Field(
        default="auto",
        description="`auto`: the chat template when the tokenizer has one, else plain text; "
        "`plain` forces GPT-2-style text prompts (the evaluation's 'before' condition).",
    )
    abstain: bool = Field(
        default=True,
        description='Answer "I don\'t know" without calling the model when every memory '
        "retrieved for a question is about someone or something else (issue 28).",
    )
    min_similarity: float | None = Field(
        default=0.3,
        ge=-1.0,
        le=1.0,
        description="Retrieved memories below this cosine similarity are left out of the "
        "prompt (a job's `memory.min_similarity` overrides it; chosen on the eval set, "
        "bench/results/eval.md).",
    )
    progress_interval_s: float = Field(
        default=0.05, ge=0.0, description="How often token progress is written to Redis."
    )
    cancel_poll_interval_s: float = Field(
        default=0.2, gt=0, description="How often running jobs' cancellation is checked."
    )
    max_lost_workers: int = Field(
        default=3,
        ge=1,
        le=100,
        description="A job whose worker is lost (killed, crashed) this many times fails with "
        "`worker_lost` instead of running again.",
    )
    commit_retry_s: float = Field(
        default=60.0,
        ge=0,
        description="How long a finished job retries writing its result while Redis is down.",
    )
    map_threads: int = Field(
        default=8, ge=1, le=64, description="Concurrent map calls of one summarize job."
    )
    webhook_max_attempts: int = Field(
        default=10,
        ge=1,
        le=30,
        description="Delivery attempts of a job's webhook before giving up (with the default "
        "backoff, 10 attempts span about 15 minutes).",
    )
    webhook_timeout_s: float = Field(
        default=10.0, gt=0, le=120, description="Per-attempt timeout of a webhook POST."
    )
    webhook_backoff_s: float = Field(
        default=2.0,
        gt=0,
        le=600,
        description="Wait before the second attempt; it doubles after each failed attempt.",
    )
    webhook_backoff_max_s: float = Field(
        default=300.0, gt=0, le=3600, description="The longest wait between two attempts."
    )
    webhook_allow_private: bool = Field(
        default=False,
        description="Deliver webhooks to loopback, private and link-local addresses too (off: "
        "a callback_url that resolves to one is refused, against SSRF).",
    )

    adapters_dir: Path | None = Field(
        default=None,
        description="Where consolidation jobs store LoRA adapters ({dir}/{tenant}/{name}/v{n}); "
        "default DATA_DIR/adapters. Every worker and the gateway must reach the same "
        "directory (a shared mount when they run on several hosts).",
    )
    adapter_cache_size: int = Field(
        default=2,
        ge=1,
        le=64,
        description="Adapters kept loaded (least recently used evicted), each with its own engine.",
    )
    adapter_merge: bool = Field(
        default=True,
        description="Merge LoRA weights into a private copy of the target modules (decoding as "
        "fast as the base model) instead of keeping LoRA layers (less memory, slower steps).",
    )

    @property
    def adapter_root(self) -> Path:
        return self.adapters_dir if self.adapters_dir is not None else self.data_dir / "adapters"

    @property
    def model_explicit(self) -> bool:
        return "model" in self.model_fields_set

    @property
    def heartbeat_interval_s(self) -> float:
        return self.lease_ttl_s / 3

    @property
    def celery_concurrency(self) -> int:
        if self.concurrency:
            return self.concurrency
        return self.max_batch_size if self.engine == "batched" else 1
