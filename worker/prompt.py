"""Assemble the model input inside the context window.

Retrieved memories go first, best score first, while they fit; the user's text is never
cut: when it cannot fit together with `max_new_tokens` the job is rejected. Inputs are
built by concatenating token-id segments, so the usage counts add up exactly.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from memq.budget import check_job_fits
from memq.contracts import JobType, LeftOut, MemoryHit

TLDR = "\n\nTL;DR:"
"""GPT-2's zero-shot summarization cue, after the text to summarize."""

MEMORY_HEADER = "Relevant memories:\n"
MEMORY_LINE = "- {text}\n"
MEMORY_FOOTER = "\n"


@dataclass
class AssembledPrompt:
    input_ids: list[int]
    prompt_tokens: int
    context_tokens: int
    used_memory_ids: list[str] = field(default_factory=list)
    left_out: dict[str, LeftOut] = field(default_factory=dict)


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
    """`user_ids` (+ optional template `suffix_ids`, e.g. "TL;DR:") after the memories.

    Raises `PromptTooLong` when the user's text, the template and `max_new_tokens` do not
    fit; memories that do not fit are left out (`used_memory_ids` names those put in).
    """
    suffix_ids = suffix_ids or []
    check_job_fits(
        JobType.generate,
        max_new_tokens=max_new_tokens,
        context_window=context_window,
        template_tokens=len(suffix_ids),
        prompt_tokens=len(user_ids),
    )
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


def template_tokens(tokenizer: Any) -> dict[JobType, int]:
    """Tokens each job type's template adds around the user's text (published with the
    model, so the gateway applies the same budget rule as the worker)."""
    return {JobType.generate: 0, JobType.summarize: len(encode(tokenizer, TLDR))}


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
