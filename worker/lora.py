"""LoRA on a base model that keeps serving: what training (worker.training) and serving
(worker.adapters) both build on.

Neither ever changes the engine's live model. `shared_copy` makes a new module tree over
the same weights (parameters and buffers shared, not copied), so peft can inject LoRA
layers into the copy, or merge an adapter into it, while decoding goes on untouched
beside it: training costs the adapter's weights and the activations, not a second model.
Serving applies a saved adapter with `adapted_model`, either merged (`merge=True`: only
the target modules' weights become private copies, with the LoRA product added; decoding
costs what the base model's does) or unmerged (`merge=False`: memory grows by the LoRA
weights only, each step does the extra low-rank products); `private_bytes` says what it
cost. bench/adapter_eval.py measures both.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from memq.errors import InvalidInput

GPT2_TARGETS = ["c_attn", "c_proj"]
LLAMA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj"]


def default_target_modules(model: Any) -> list[str]:
    """LoRA's targets for the model's architecture: GPT-2's fused attention and output
    projections, a Llama-style model's q/k/v/o projections."""
    import torch

    if getattr(model.config, "model_type", None) == "gpt2":
        return list(GPT2_TARGETS)
    linear = {
        n.rsplit(".", 1)[-1] for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)
    }
    if set(LLAMA_TARGETS) <= linear:
        return list(LLAMA_TARGETS)
    raise InvalidInput(
        f"no default LoRA targets for model type {model.config.model_type!r}; set "
        f"training.target_modules to some of its linear layers: {sorted(linear)[:12]}"
    )


def shared_copy(model: Any, private: Callable[[str], bool] = lambda _: False) -> Any:
    """A new module tree over the same weights: parameters and buffers are shared with
    `model` (not copied) except those of modules `private(name)` selects, which are
    copied. Changing the copy's modules (peft injecting LoRA layers, `train()`) leaves
    `model` as it was; only the private tensors may be written."""
    memo: dict[int, Any] = {}
    for name, module in model.named_modules():
        if private(name):
            continue
        for tensor in (*module.parameters(recurse=False), *module.buffers(recurse=False)):
            memo[id(tensor)] = tensor
    return copy.deepcopy(model, memo)


def targets_matcher(targets: Sequence[str]) -> Callable[[str], bool]:
    """peft's rule for a list of target names: the module's name is one, or ends with
    "." + one."""
    return lambda name: any(name == t or name.endswith("." + t) for t in targets)


def adapted_model(base: Any, adapter_dir: Path, *, merge: bool) -> Any:
    """`base` with the LoRA adapter in `adapter_dir` applied; `base` itself is unchanged."""
    from peft import LoraConfig, PeftModel

    config = LoraConfig.from_pretrained(str(adapter_dir))
    targets = config.target_modules
    names = [targets] if isinstance(targets, str) else list(targets or [])
    private = targets_matcher(names) if merge else (lambda _: False)
    model = PeftModel.from_pretrained(shared_copy(base, private), str(adapter_dir))
    # Unmerged, the LoRA layers live inside the base tree: calling it applies them.
    adapted = model.merge_and_unload() if merge else model.get_base_model()
    adapted.eval()
    return adapted


def private_bytes(adapted: Any, base: Any) -> int:
    """Bytes of the tensors `adapted` does not share with `base`: what loading it cost."""
    shared = {t.data_ptr() for t in (*base.parameters(), *base.buffers())}
    own = {
        t.data_ptr(): t.numel() * t.element_size()
        for t in (*adapted.parameters(), *adapted.buffers())
        if t.data_ptr() not in shared
    }
    return sum(own.values())
