"""The one context-window rule: exact edges, and advice in the message that passes."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from memq.budget import MIN_CHUNK_TOKENS, check_job_fits, max_new_tokens_limit
from memq.contracts import JobType
from memq.errors import PromptTooLong


def _generate(prompt: int, new: int, window: int, template: int = 0) -> None:
    check_job_fits(
        JobType.generate,
        max_new_tokens=new,
        context_window=window,
        template_tokens=template,
        prompt_tokens=prompt,
    )


@pytest.mark.parametrize(
    ("prompt", "new", "window", "template"),
    [(60, 40, 100, 0), (55, 40, 100, 5), (1, 99, 100, 0), (99, 1, 100, 0), (0, 100, 100, 0)],
)
def test_generate_fits_exactly_at_the_edge(
    prompt: int, new: int, window: int, template: int
) -> None:
    _generate(prompt, new, window, template)


@pytest.mark.parametrize(
    ("prompt", "new", "window", "template", "advice"),
    [
        (
            60,
            41,
            100,
            0,
            ["shorten the prompt to at most 59 tokens", "max_new_tokens to at most 40"],
        ),
        (
            61,
            40,
            100,
            0,
            ["shorten the prompt to at most 60 tokens", "max_new_tokens to at most 39"],
        ),
        (
            56,
            40,
            100,
            5,
            ["shorten the prompt to at most 55 tokens", "max_new_tokens to at most 39"],
        ),
        (100, 1, 100, 0, ["shorten the prompt to at most 99 tokens"]),
        (1, 100, 100, 0, ["shorten the prompt to at most 0"]),
    ],
)
def test_generate_one_past_the_edge_names_values_that_pass(
    prompt: int, new: int, window: int, template: int, advice: list[str]
) -> None:
    with pytest.raises(PromptTooLong) as err:
        _generate(prompt, new, window, template)
    message = err.value.message.lower()
    assert f"{prompt + template + new:,} tokens" in message
    assert f"model context is {window:,}" in message
    for piece in advice[:1]:
        if piece.endswith(" 0"):
            assert "lower max_new_tokens to at most 99" in message
            assert "shorten the prompt to at most 0" not in message
        else:
            assert piece in message
    for piece in advice[1:]:
        assert piece in message
    assert err.value.status_code == 422 and err.value.code == "prompt_too_long"


def test_generate_whose_prompt_alone_overflows_points_to_summarize() -> None:
    with pytest.raises(PromptTooLong, match="summarize job") as err:
        _generate(120, 10, 100, 0)
    assert "Shorten the prompt to at most 90 tokens." in err.value.message
    with pytest.raises(PromptTooLong) as err:
        _generate(99, 10, 100, 0)
    assert "summarize" not in err.value.message


def test_only_max_new_tokens_1_left_is_advised_when_nothing_else_passes() -> None:
    with pytest.raises(PromptTooLong) as err:
        _generate(5, 100, 100, 0)
    assert "Lower max_new_tokens to at most 95." in err.value.message
    with pytest.raises(PromptTooLong) as err:
        _generate(2, 2, 3, 1)
    assert "Shorten the prompt to at most 1 tokens with max_new_tokens=1" in err.value.message


def test_a_template_that_fills_the_context_says_the_model_cannot_run_it() -> None:
    with pytest.raises(PromptTooLong, match="cannot run such a job"):
        _generate(0, 1, 2, 2)


@given(
    window=st.integers(2, 4096),
    template=st.integers(0, 64),
    prompt=st.integers(0, 5000),
    new=st.integers(1, 2048),
)
def test_every_number_the_message_advises_passes_the_check(
    window: int, template: int, prompt: int, new: int
) -> None:
    try:
        _generate(prompt, new, window, template)
    except PromptTooLong as exc:
        message = exc.message
        if m := re.search(r"shorten the prompt to at most ([\d,]+) tokens", message, re.I):
            advised = int(m.group(1).replace(",", ""))
            if "max_new_tokens=1" in message:
                _generate(advised, 1, window, template)
            else:
                _generate(advised, new, window, template)
                with pytest.raises(PromptTooLong):
                    _generate(advised + 1, new, window, template)
        if m := re.search(r"lower max_new_tokens to at most ([\d,]+)", message):
            advised = int(m.group(1).replace(",", ""))
            _generate(prompt, advised, window, template)
            with pytest.raises(PromptTooLong):
                _generate(prompt, advised + 1, window, template)
        assert "at most" in message or "cannot run such a job" in message
    else:
        assert prompt + template + new <= window


@pytest.mark.parametrize(("window", "template"), [(1024, 5), (256, 0), (2048, 12)])
def test_summarize_max_new_tokens_limit_is_exact(window: int, template: int) -> None:
    limit = max_new_tokens_limit(JobType.summarize, window, template)
    assert limit == window - template - MIN_CHUNK_TOKENS
    check_job_fits(
        JobType.summarize, max_new_tokens=limit, context_window=window, template_tokens=template
    )
    with pytest.raises(PromptTooLong) as err:
        check_job_fits(
            JobType.summarize,
            max_new_tokens=limit + 1,
            context_window=window,
            template_tokens=template,
        )
    assert f"at most {limit:,}." in err.value.message
    assert f"leaves {MIN_CHUNK_TOKENS - 1} tokens of text per chunk" in err.value.message


def test_summarize_ignores_the_text_length_because_it_splits_it() -> None:
    check_job_fits(JobType.summarize, max_new_tokens=10, context_window=100, prompt_tokens=10**6)


def test_generate_limit_leaves_one_token_of_input() -> None:
    assert max_new_tokens_limit(JobType.generate, 1024, 0) == 1023
    assert max_new_tokens_limit(JobType.generate, 1024, 7) == 1016
    assert max_new_tokens_limit(JobType.generate, 4, 10) == 0
    assert max_new_tokens_limit(JobType.summarize, 20, 0) == 0
    assert MIN_CHUNK_TOKENS == 32


def test_generate_needs_its_prompt_length() -> None:
    with pytest.raises(ValueError, match="prompt_tokens"):
        check_job_fits(JobType.generate, max_new_tokens=1, context_window=10)


@pytest.mark.parametrize(
    ("prompt", "new", "window", "template", "message"),
    [
        (
            61,
            40,
            100,
            0,
            "prompt is 61 tokens and max_new_tokens is 40: 101 tokens, but the model context "
            "is 100. Shorten the prompt to at most 60 tokens or lower max_new_tokens to at "
            "most 39.",
        ),
        (
            56,
            40,
            100,
            5,
            "prompt is 56 tokens + 5 template and max_new_tokens is 40: 101 tokens, but the model "
            "context is 100. Shorten the prompt to at most 55 tokens or lower max_new_tokens to "
            "at most 39.",
        ),
        (
            5,
            99,
            100,
            0,
            "prompt is 5 tokens and max_new_tokens is 99: 104 tokens, but the model context is "
            "100. Shorten the prompt to at most 1 tokens or lower max_new_tokens to at most 95.",
        ),
        (
            99,
            5,
            100,
            0,
            "prompt is 99 tokens and max_new_tokens is 5: 104 tokens, but the model context is "
            "100. Shorten the prompt to at most 95 tokens or lower max_new_tokens to at most 1.",
        ),
        (
            1200,
            10,
            1024,
            0,
            "prompt is 1,200 tokens and max_new_tokens is 10: 1,210 tokens, but the model context "
            "is 1,024. Shorten the prompt to at most 1,014 tokens. For long documents use a "
            "summarize job, which splits them.",
        ),
        (
            2,
            2,
            3,
            1,
            "prompt is 2 tokens + 1 template and max_new_tokens is 2: 5 tokens, but the model "
            "context is 3. Shorten the prompt to at most 1 tokens with max_new_tokens=1. For long "
            "documents use a summarize job, which splits them.",
        ),
        (
            0,
            1,
            2,
            2,
            "prompt is 0 tokens + 2 template and max_new_tokens is 1: 3 tokens, but the model "
            "context is 2. This model cannot run such a job at all.",
        ),
    ],
)
def test_generate_rejection_message_in_full(
    prompt: int, new: int, window: int, template: int, message: str
) -> None:
    with pytest.raises(PromptTooLong) as err:
        _generate(prompt, new, window, template)
    assert err.value.message == message


@pytest.mark.parametrize(
    ("new", "window", "template", "message"),
    [
        (
            70,
            100,
            5,
            "max_new_tokens=70 leaves 25 tokens of text per chunk in the model context of 100 "
            "tokens (the template takes 5); a summary needs at least 32. Use max_new_tokens of "
            "at most 63.",
        ),
        (
            1000,
            1024,
            5,
            "max_new_tokens=1,000 leaves 19 tokens of text per chunk in the model context of "
            "1,024 tokens (the template takes 5); a summary needs at least 32. Use "
            "max_new_tokens of at most 987.",
        ),
        (
            200,
            100,
            5,
            "max_new_tokens=200 leaves 0 tokens of text per chunk in the model context of 100 "
            "tokens (the template takes 5); a summary needs at least 32. Use max_new_tokens of "
            "at most 63.",
        ),
    ],
)
def test_summarize_rejection_message_in_full(
    new: int, window: int, template: int, message: str
) -> None:
    with pytest.raises(PromptTooLong) as err:
        check_job_fits(
            JobType.summarize, max_new_tokens=new, context_window=window, template_tokens=template
        )
    assert err.value.message == message


def test_without_template_tokens_the_template_counts_as_empty() -> None:
    check_job_fits(JobType.generate, max_new_tokens=40, context_window=100, prompt_tokens=60)
    with pytest.raises(PromptTooLong, match="101 tokens"):
        check_job_fits(JobType.generate, max_new_tokens=40, context_window=100, prompt_tokens=61)
    check_job_fits(JobType.summarize, max_new_tokens=68, context_window=100)
    with pytest.raises(PromptTooLong, match="at most 68"):
        check_job_fits(JobType.summarize, max_new_tokens=69, context_window=100)


def test_a_generate_check_without_prompt_length_says_so() -> None:
    with pytest.raises(ValueError) as err:
        check_job_fits(JobType.generate, max_new_tokens=1, context_window=10)
    assert str(err.value) == "a generate job's check needs prompt_tokens"
