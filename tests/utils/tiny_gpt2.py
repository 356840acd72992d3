"""Build a tiny GPT-2 (random weights, byte-level BPE tokenizer trained here) on disk.

It is loaded through the same `from_pretrained` path as the real `gpt2`, so tests
exercise the production loading code without a Hugging Face Hub.
"""

from __future__ import annotations

from pathlib import Path

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
