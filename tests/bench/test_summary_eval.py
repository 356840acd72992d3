"""The summarization evaluation's own parts: the degenerate-output detector, the lead-3
baseline's sentence splitter, and the evaluation set's promises."""

from __future__ import annotations

import pytest

from bench.summary_eval import degenerate, lead, load_texts, rouge_l, sentences


@pytest.mark.parametrize(
    "output",
    [
        "- **Memq_JOB_JOB_JOB_JOB_JOB_JOB_JOB_JOB_JOB_JOB",  # issue 10's complaint
        "The job record is sent to the server, and the server can reject the job. The job "
        "record is sent to the server, and the server can reject the job. The job record is "
        "sent to the server, and",
        "The answer is: yes. The answer is: yes. The answer is: yes.",
    ],
)
def test_a_repeated_ngram_loop_is_degenerate(output: str) -> None:
    reason = degenerate(output)

    assert reason is not None
    assert reason.startswith("loop")


def test_an_ngram_twice_is_not_yet_a_loop() -> None:
    text = "The council approved the plan. Traders objected, but the council approved the plan."

    assert degenerate(text) is None
    assert degenerate(text + " Then the council approved the plan.") is not None


def test_mostly_one_token_is_degenerate_even_without_a_loop() -> None:
    reason = degenerate("yes yes no yes maybe yes yes, yes ok")
    marks = degenerate("Yes!!!!!!!!!!!!!!!!!!!!!!!!")

    assert reason is not None
    assert reason.startswith("one token: 'yes'")
    assert marks is not None
    assert marks.startswith("one token: '!'")


def test_a_phrase_repeated_with_other_words_around_it_is_not_a_loop() -> None:
    text = (
        "The team's performance was a highlight, with a goal from Leclerc. The team's coach "
        "praised the team's best players."
    )

    assert degenerate(text) is None


@pytest.mark.parametrize("output", ["", "   ", "\n\n", "...", "- **"])
def test_an_output_without_words_is_degenerate(output: str) -> None:
    assert degenerate(output) == "empty"


def test_the_reference_summaries_are_not_degenerate() -> None:
    texts = load_texts()

    assert [t.id for t in texts if degenerate(t.reference)] == []


def test_sentences_split_after_end_marks_before_a_capital_or_digit() -> None:
    text = (
        'Revenue rose 8.5 percent to 212 million. "It was strong," she said. Shares fell! '
        "Why? 2024 was worse.\n\nA new paragraph without a full stop\n\nthen lower case."
    )

    assert sentences(text) == [
        "Revenue rose 8.5 percent to 212 million.",
        '"It was strong," she said.',
        "Shares fell!",
        "Why?",
        "2024 was worse.",
        "A new paragraph without a full stop",
        "then lower case.",
    ]
    assert (
        lead(text)
        == 'Revenue rose 8.5 percent to 212 million. "It was strong," she said. Shares fell!'
    )


def test_rouge_l_is_one_for_the_reference_and_lower_for_other_words() -> None:
    ref = "The council approved the bike lanes."

    same, other = rouge_l([ref, "Shops opposed parking changes."], [ref, ref])

    assert same == pytest.approx(1.0)
    assert other < 0.2


def test_the_evaluation_set_keeps_its_promises() -> None:
    texts = load_texts()

    assert len(texts) >= 20
    assert len({t.kind for t in texts}) >= 10
    for t in texts:
        assert 2 <= len(sentences(t.reference)) <= 4, t.id
        assert 300 <= t.tokens <= 3000, t.id
        # The stored SmolLM2 token count is plausible for the text (1.1-1.4 a word here).
        assert 1.0 <= t.tokens / len(t.text.split()) <= 1.5, t.id
    # One summarize call takes 1,903 tokens of text at a 2,048 context: these map-reduce.
    assert sum(t.tokens > 1903 for t in texts) >= 5


def test_a_counting_loop_is_degenerate_but_a_few_amounts_are_not() -> None:
    counting = "The meeting notes, 14 March, 2022, 18 March, 2019, 19 March, 2020, 21 March, 2030"
    amounts = (
        "Revenue rose to 212 million dollars, profit fell to 14 million dollars, and the plant "
        "closure cost 5 million dollars, so the company cut its forecast for the full year."
    )

    reason = degenerate(counting)
    assert reason is not None
    assert reason.startswith("counting loop")
    assert degenerate(amounts) is None
