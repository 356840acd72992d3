"""Assemble the model input inside the context window.

Retrieved memories go first, best score first, while they fit; the user's text is never
cut: when it cannot fit together with `max_new_tokens` the job is rejected. Inputs are
built by concatenating token-id segments, so the usage counts add up exactly.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from memq.budget import ContextOverflow, check_prompt_fits
from memq.contracts import MemoryHit
from worker.errors import PromptTooLong

MEMORY_HEADER = "Relevant memories:\n"
MEMORY_LINE = "- {text}\n"
MEMORY_FOOTER = "\n"


@dataclass
class AssembledPrompt:
    input_ids: list[int]
    prompt_tokens: int
    context_tokens: int
    used_memory_ids: list[str] = field(default_factory=list)


def encode(tokenizer: Any, text: str) -> list[int]:
    ids: list[int] = tokenizer.encode(text, add_special_tokens=False)
    return ids


def assemble(
    tokenizer: Any,
    user_ids: list[int],
    memories: list[MemoryHit],
    *,
    max_new_tokens: int,
    context_window: int,
    suffix_ids: list[int] | None = None,
) -> AssembledPrompt:
    """`user_ids` (+ optional template `suffix_ids`, e.g. "TL;DR:") after the memories."""
    suffix_ids = suffix_ids or []
    try:
        check_prompt_fits(len(user_ids) + len(suffix_ids), max_new_tokens, context_window)
    except ContextOverflow as exc:
        raise PromptTooLong(str(exc)) from exc
    room = context_window - max_new_tokens - len(user_ids) - len(suffix_ids)
    header = encode(tokenizer, MEMORY_HEADER)
    footer = encode(tokenizer, MEMORY_FOOTER)
    lines: list[int] = []
    used: list[str] = []
    for hit in sorted(memories, key=lambda h: h.score, reverse=True):
        line = encode(tokenizer, MEMORY_LINE.format(text=" ".join(hit.text.split())))
        if len(header) + len(lines) + len(line) + len(footer) > room:
            continue  # a shorter, lower-scored memory may still fit
        lines += line
        used.append(hit.id)
    context = header + lines + footer if used else []
    return AssembledPrompt(
        input_ids=context + user_ids + suffix_ids,
        prompt_tokens=len(user_ids),
        context_tokens=len(context) + len(suffix_ids),
        used_memory_ids=used,
    )


def split_tokens(ids: list[int], chunk: int, overlap: int = 0) -> list[list[int]]:
    if chunk <= overlap:
        raise ValueError("chunk must be larger than overlap")
    out, start = [], 0
    while start < len(ids):
        out.append(ids[start : start + chunk])
        if start + chunk >= len(ids):
            break
        start += chunk - overlap
    return out
