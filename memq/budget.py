"""The one context-window rule, applied by the gateway at the door and by the worker.

A model call's input is the user's text plus a fixed template (e.g. `TL;DR:`) plus, when
room is left, retrieved memories; `max_new_tokens` must fit after it. Memories never
count against the rule (they are dropped when they do not fit); the user's text is
never cut. Every error message names a value that passes the check.
"""

from __future__ import annotations

from memq.contracts import JobType
from memq.errors import PromptTooLong

MIN_CHUNK_TOKENS = 32
"""The least text a summarize call works on: with less room per chunk, a summary would
take more calls than it saves, so such a `max_new_tokens` is refused at the door."""


def max_new_tokens_limit(job_type: JobType, context_window: int, template_tokens: int) -> int:
    """The largest `max_new_tokens` any job of this type can have on this model."""
    least_input = MIN_CHUNK_TOKENS if job_type == JobType.summarize else 1
    return max(context_window - template_tokens - least_input, 0)


def check_job_fits(
    job_type: JobType,
    *,
    max_new_tokens: int,
    context_window: int,
    template_tokens: int = 0,
    prompt_tokens: int | None = None,
) -> None:
    """Raise `PromptTooLong` when the job cannot run on this model.

    `prompt_tokens` is the user's text for a generate job (summarize splits its text, so
    only its per-chunk room is checked). `template_tokens` is what the prompt template
    adds around the user's text.
    """
    limit = max_new_tokens_limit(job_type, context_window, template_tokens)
    if job_type == JobType.summarize:
        if max_new_tokens > limit:
            room = context_window - template_tokens - max_new_tokens
            raise PromptTooLong(
                f"max_new_tokens={max_new_tokens:,} leaves {max(room, 0):,} tokens of text per "
                f"chunk in the model context of {context_window:,} tokens (the template takes "
                f"{template_tokens:,}); a summary needs at least {MIN_CHUNK_TOKENS}. Use "
                f"max_new_tokens of at most {limit:,}."
            )
        return
    if prompt_tokens is None:
        raise ValueError("a generate job's check needs prompt_tokens")
    needed = prompt_tokens + template_tokens + max_new_tokens
    if needed <= context_window:
        return
    prompt_room = context_window - template_tokens - max_new_tokens
    output_room = context_window - template_tokens - prompt_tokens
    advice = []
    if prompt_room >= 1:
        advice.append(f"shorten the prompt to at most {prompt_room:,} tokens")
    if output_room >= 1:
        advice.append(f"lower max_new_tokens to at most {output_room:,}")
    if not advice and limit >= 1:
        advice.append(f"shorten the prompt to at most {limit:,} tokens with max_new_tokens=1")
    template = f" + {template_tokens:,} template" if template_tokens else ""
    message = (
        f"prompt is {prompt_tokens:,} tokens{template} and max_new_tokens is "
        f"{max_new_tokens:,}: {needed:,} tokens, but the model context is {context_window:,}."
    )
    if advice:
        message += " " + " or ".join(advice).capitalize() + "."
    else:
        message += " This model cannot run such a job at all."
    if prompt_tokens > limit:
        message += " For long documents use a summarize job, which splits them."
    raise PromptTooLong(message)
