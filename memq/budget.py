"""Context-window arithmetic shared by the gateway (early 422) and the worker."""

from __future__ import annotations


class ContextOverflow(ValueError):
    """The user's own text plus `max_new_tokens` cannot fit the model's context window."""


def check_prompt_fits(prompt_tokens: int, max_new_tokens: int, context_window: int) -> None:
    if prompt_tokens + max_new_tokens > context_window:
        room = context_window - max_new_tokens
        raise ContextOverflow(
            f"prompt is {prompt_tokens:,} tokens and max_new_tokens is {max_new_tokens:,}: "
            f"{prompt_tokens + max_new_tokens:,} tokens, but the model context is "
            f"{context_window:,}. Shorten the prompt to at most {max(room, 0):,} tokens or "
            f"lower max_new_tokens to at most {max(context_window - prompt_tokens, 0):,}."
            + (" For long documents use a summarize job, which splits them." if room > 0 else "")
        )


def check_max_new_tokens(max_new_tokens: int, context_window: int, reserve: int = 1) -> None:
    if max_new_tokens > context_window - reserve:
        raise ContextOverflow(
            f"max_new_tokens={max_new_tokens:,} leaves no room for input in the model "
            f"context of {context_window:,} tokens; use at most {context_window - reserve - 1:,}."
        )
