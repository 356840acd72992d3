"""The models the benchmarks and the tests' stacks run on, built here: no Hugging Face Hub.

- `build_tiny_gpt2`: a 2-layer GPT-2 with random weights and a byte-level BPE tokenizer
  trained here, saved like a hub checkpoint. It is loaded through the same
  `from_pretrained` path as the real `gpt2`, so tests exercise the production loading code
  (tests/conftest.py builds it once per session; `bench.batch_bench` serves it).
- `gpt2_124m_random`: the GPT-2 124M architecture (`GPT2Config()` defaults) with random
  weights from a fixed seed: the compute of the real model. It declares no EOS token, so
  every job generates exactly the tokens it asks for; `save_gpt2_124m_random` saves it
  like a hub checkpoint for the benchmarks that start a stack.

Tests import this module; bench never imports tests.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

    from worker.model_loader import LoadedModel

GPT2_VOCAB = 50257

CORPUS = [
    "The quick brown fox jumps over the lazy dog.",
    "Alice lives in Paris and works as a marine biologist.",
    "Bob's favourite colour is green; he owns a cat named Pixel.",
    "Memory lets a language model recall facts it was never trained on.",
    "Summaries should be short, faithful and cover the main points.",
    "Redis, Celery and Qdrant power the memq job service.",
    "TL;DR: a short summary follows the text.",
] * 20


def build_tiny_gpt2(
    target: Path,
    *,
    n_layer: int = 2,
    n_embd: int = 64,
    n_head: int = 2,
    n_positions: int = 1024,
    vocab_size: int = 512,
    seed: int = 0,
) -> Path:
    import torch
    from tokenizers import ByteLevelBPETokenizer
    from transformers import GPT2Config, GPT2LMHeadModel, GPT2TokenizerFast

    target.mkdir(parents=True, exist_ok=True)
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(
        CORPUS, vocab_size=vocab_size, min_frequency=1, special_tokens=["<|endoftext|>"]
    )
    tokenizer = GPT2TokenizerFast(
        tokenizer_object=bpe._tokenizer,
        bos_token="<|endoftext|>",
        eos_token="<|endoftext|>",
        unk_token="<|endoftext|>",
        model_max_length=n_positions,
    )
    tokenizer.save_pretrained(target)
    torch.manual_seed(seed)
    config = GPT2Config(
        vocab_size=len(tokenizer),
        n_positions=n_positions,
        n_embd=n_embd,
        n_layer=n_layer,
        n_head=n_head,
        bos_token_id=tokenizer.eos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    GPT2LMHeadModel(config).save_pretrained(target)
    return target


def gpt2_124m_random(dtype: torch.dtype, seed: int = 0) -> LoadedModel:
    """GPT-2 124M architecture, random weights, and a tokenizer covering its vocabulary."""
    import torch
    from transformers import AutoTokenizer, GPT2Config, GPT2LMHeadModel

    from worker.model_loader import LoadedModel

    torch.manual_seed(seed)
    model = GPT2LMHeadModel(GPT2Config()).eval().to(dtype)
    model.generation_config.eos_token_id = None
    with tempfile.TemporaryDirectory() as tmp:
        tokenizer = AutoTokenizer.from_pretrained(build_tiny_gpt2(Path(tmp), n_layer=1))
    # Placeholder tokens fill the id range so every generated id decodes to some text.
    tokenizer.add_tokens([f"<r{i}>" for i in range(GPT2_VOCAB - len(tokenizer))])
    return LoadedModel("gpt2-124m-random", model, tokenizer, 1024, eos_token_id=None)


def save_gpt2_124m_random(target: Path, seed: int = 0) -> Path:
    """`gpt2_124m_random` saved like a hub checkpoint with no EOS (config, generation config
    and tokenizer), so every job of a stack serving it generates exactly N tokens."""
    import torch

    lm = gpt2_124m_random(torch.float32, seed)
    lm.model.config.bos_token_id = lm.model.config.eos_token_id = None
    lm.model.generation_config.bos_token_id = None
    lm.tokenizer.eos_token = None
    lm.tokenizer.bos_token = None
    lm.model.save_pretrained(target)
    lm.tokenizer.save_pretrained(target)
    return target
