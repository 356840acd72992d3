"""LoRA plumbing shared by training and serving: the default target modules per
architecture (the tiny GPT-2 and a tiny Llama-style model) and the shared copy both build
on. Applying a trained adapter is tested with the pool, in test_adapters.py."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from memq.errors import InvalidInput
from worker.lora import LLAMA_TARGETS, default_target_modules, shared_copy
from worker.model_loader import LoadedModel


def test_defaults_follow_the_architecture(tiny_lm: LoadedModel) -> None:
    from transformers import LlamaConfig, LlamaForCausalLM

    assert default_target_modules(tiny_lm.model) == ["c_attn", "c_proj"]
    llama = LlamaForCausalLM(
        LlamaConfig(
            vocab_size=64,
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=1,
            num_attention_heads=2,
            num_key_value_heads=1,
        )
    )
    assert default_target_modules(llama) == LLAMA_TARGETS
    toy = torch.nn.Sequential(torch.nn.Linear(2, 2))
    toy.config = SimpleNamespace(model_type="toy")
    with pytest.raises(InvalidInput, match=r"model type 'toy'; set training\.target_modules"):
        default_target_modules(toy)


def test_a_shared_copy_shares_weights_but_not_modules(tiny_lm: LoadedModel) -> None:
    copied = shared_copy(tiny_lm.model, lambda name: name.endswith("c_attn"))
    base = dict(tiny_lm.model.named_parameters())
    for name, param in copied.named_parameters():
        assert (param is base[name]) != name.endswith("c_attn.weight") or "bias" in name
    copied.train()
    assert not tiny_lm.model.training
