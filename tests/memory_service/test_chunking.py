"""Document chunking: exact spans on hand-checked inputs, the regressions found by search,
and properties over arbitrary text (cover, size, overlap, count bound, specification)."""

from __future__ import annotations

import itertools
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from memory_service.services.chunking import chunk_spans, min_step


def specified_spans(text: str, chunk: int, overlap: int) -> list[tuple[int, int]]:
    """The chunking rule written as plainly as possible, to compare the fast one against:
    a span ends at the last whitespace of its window that leaves a step of `min_step`, else
    at the window's end; the next starts `overlap` back, moved forward onto a word."""
    step = math.ceil((chunk - overlap) / 2)
    spans, start = [], 0
    while True:
        window_end = min(start + chunk, len(text))
        breaks = [p for p in range(start + overlap + step, window_end) if text[p].isspace()]
        end = breaks[-1] if breaks and window_end < len(text) else window_end
        if any(not ch.isspace() for ch in text[start:end]):
            spans.append((start, end))
        if end == len(text):
            return spans
        start = next(j for j in range(end - overlap, end + 1) if j == end or text[j - 1].isspace())


def span_bound(n: int, chunk: int, overlap: int) -> int:
    return 1 + math.ceil(max(0, n - chunk) / min_step(chunk, overlap))


# --------------------------------------------------------------------------- regressions


def test_search_found_input_now_respects_the_span_bound() -> None:
    # Found by hypothesis against the previous version: it cut at any whitespace in the
    # window's second half and then stepped back `overlap` characters, so a step could be
    # a single character and a text made more chunks than 1 + (n - chunk) / min_step
    # (here 4; overlap 99 of 100 made one chunk per 2 characters).
    assert chunk_spans("uuu u uuuuu", 5, 0) == [(0, 3), (3, 8), (8, 11)]
    assert span_bound(11, 5, 0) == 3


def test_token_longer_than_half_a_chunk_is_cut_at_the_window_and_chunking_terminates() -> None:
    # Issue 7 reported a hang on a whitespace-free run longer than half a chunk (a URL).
    text = "see " + "u" * 70 + " and then a few more words to finish the text off nicely."
    assert chunk_spans(text, 40, 10) == [(0, 40), (40, 78), (75, 114), (104, 131)]
    url = "x " + "u" * 300 + " y"
    assert chunk_spans(url, 100, 30) == [(0, 100), (100, 200), (200, 300), (300, 304)]


def test_two_million_characters_without_whitespace_make_few_chunks() -> None:
    spans = chunk_spans("u" * 2_000_000, 20_000, 5_000)
    assert len(spans) == 100
    assert spans[0] == (0, 20_000) and spans[-1] == (1_980_000, 2_000_000)


@pytest.mark.parametrize(("chunk", "overlap"), [(100, 50), (100, 99), (101, 51), (4, 2), (5, -1)])
def test_overlap_of_half_a_chunk_or_more_is_refused(chunk: int, overlap: int) -> None:
    with pytest.raises(ValueError, match=r"less than half of chunk_chars"):
        chunk_spans("some text", chunk, overlap)


def test_the_refusal_names_both_sizes_and_the_rule() -> None:
    with pytest.raises(ValueError) as err:
        chunk_spans("some text", 100, 50)
    assert str(err.value) == (
        "overlap_chars (50) must be at least 0 and less than half of chunk_chars (100)"
    )


@pytest.mark.parametrize(("chunk", "overlap"), [(100, 49), (101, 50), (5, 2), (1, 0)])
def test_overlap_just_under_half_a_chunk_is_accepted(chunk: int, overlap: int) -> None:
    assert chunk_spans("abc def", chunk, overlap)


# ----------------------------------------------------------------------- exact examples


def test_words_are_split_on_whitespace_with_overlap_starting_on_a_word() -> None:
    text = "one two three four five six seven"
    spans = chunk_spans(text, 12, 4)
    assert spans == [(0, 12), (8, 18), (14, 23), (19, 27), (24, 33)]
    assert [text[s:e] for s, e in spans] == [
        "one two thre",
        "three four",
        "four five",
        "five six",
        "six seven",
    ]


def test_short_text_is_one_span_and_blank_text_none() -> None:
    assert chunk_spans("hello world", 100, 10) == [(0, 11)]
    assert chunk_spans("exactly10!", 10, 0) == [(0, 10)]
    assert chunk_spans("", 10, 0) == []
    assert chunk_spans(" \n\t ", 10, 0) == []


def test_whitespace_only_windows_are_dropped() -> None:
    text = "a" + " " * 30 + "b"
    assert chunk_spans(text, 10, 0) == [(0, 9), (27, 32)]


def test_cut_uses_the_last_whitespace_at_or_after_the_minimum_step() -> None:
    # chunk 10, overlap 2: min_step 4, so a cut is only taken at index >= 6 of the window;
    # a space at 5 is too early (hard cut at 10), one at 6 is used.
    assert chunk_spans("abcde fghij klmno", 10, 2) == [(0, 10), (10, 17)]
    assert chunk_spans("abcdef ghij klmno", 10, 2) == [(0, 6), (6, 16), (16, 17)]
    assert chunk_spans("abcdefghij klmno", 10, 0) == [(0, 10), (10, 16)]


def test_tabs_and_other_unicode_whitespace_are_cut_points() -> None:
    assert chunk_spans("aaaaaaa\tbbbbbbbbbb", 10, 0) == [(0, 7), (7, 17), (17, 18)]
    assert chunk_spans("aaaaaaa\u3000bbbbbbbbbb", 10, 0) == [(0, 7), (7, 17), (17, 18)]


@pytest.mark.parametrize(
    ("chunk", "overlap", "expected"), [(10, 3, 4), (10, 4, 3), (11, 0, 6), (1, 0, 1), (100, 49, 26)]
)
def test_min_step_is_half_the_fresh_part_rounded_up(
    chunk: int, overlap: int, expected: int
) -> None:
    assert min_step(chunk, overlap) == expected


# --------------------------------------------------------------------------- properties

words = st.lists(
    st.one_of(
        st.text(alphabet="ab", min_size=1, max_size=12),
        st.text(alphabet="u", min_size=1, max_size=150),  # URL-like runs, often > half a chunk
        st.sampled_from([" ", "\n", "  ", "\t", " \n ", "\u3000"]),
    ),
    max_size=60,
).map("".join)


@st.composite
def chunk_and_overlap(draw: st.DrawFn) -> tuple[int, int]:
    chunk = draw(st.integers(min_value=1, max_value=80))
    overlap = draw(st.integers(min_value=0, max_value=(chunk - 1) // 2))
    return chunk, overlap


@given(text=words, sizes=chunk_and_overlap())
def test_spans_cover_the_text_within_size_overlap_and_count_bounds(
    text: str, sizes: tuple[int, int]
) -> None:
    chunk, overlap = sizes
    spans = chunk_spans(text, chunk, overlap)
    covered: set[int] = set()
    for start, end in spans:
        assert 0 <= start < end <= len(text)
        assert end - start <= chunk
        assert text[start:end].strip()
        covered.update(range(start, end))
    assert {i for i, ch in enumerate(text) if not ch.isspace()} <= covered
    for (s1, e1), (s2, e2) in itertools.pairwise(spans):
        assert s1 < s2 and e1 < e2
        assert e1 - s2 <= overlap
    assert len(spans) <= span_bound(len(text), chunk, overlap)


@given(text=words, sizes=chunk_and_overlap())
def test_spans_follow_the_specification(text: str, sizes: tuple[int, int]) -> None:
    chunk, overlap = sizes
    assert chunk_spans(text, chunk, overlap) == specified_spans(text, chunk, overlap)
