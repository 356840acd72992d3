"""Split a document into overlapping chunks that end on whitespace where possible.

Every chunk is at most `chunk_chars` long and shares at most `overlap_chars` with the one
before. A chunk may end early, at the last whitespace of its window, but never so early
that the next one would start less than `min_step` characters after it: so each chunk
moves the start forward by at least ⌈(chunk − overlap) / 2⌉ characters, and a text of n
characters gives at most 1 + ⌈(n − chunk) / min_step⌉ chunks, whatever its words look like.
"""

from __future__ import annotations

import re

# Greedy: matches up to and including the last whitespace character of the searched range.
_UP_TO_LAST_SPACE = re.compile(r".*\s", re.DOTALL)


def min_step(chunk_chars: int, overlap_chars: int) -> int:
    """The least distance between the starts of consecutive chunks."""
    return (chunk_chars - overlap_chars + 1) // 2


def chunk_spans(text: str, chunk_chars: int, overlap_chars: int) -> list[tuple[int, int]]:
    """(start, end) character spans covering every non-whitespace character of `text`, in
    order. Needs 0 <= overlap_chars < chunk_chars / 2. Whitespace-only spans are dropped."""
    if overlap_chars < 0 or 2 * overlap_chars >= chunk_chars:
        raise ValueError(
            f"overlap_chars ({overlap_chars}) must be at least 0 and less than half of "
            f"chunk_chars ({chunk_chars})"
        )
    step = min_step(chunk_chars, overlap_chars)
    spans: list[tuple[int, int]] = []
    n = len(text)
    start = 0
    while True:
        end = min(start + chunk_chars, n)
        if end < n:
            # The last whitespace that still leaves a step of `step` once the overlap is
            # taken back; a run without whitespace (a URL, a hash) is cut at the window.
            found = _UP_TO_LAST_SPACE.match(text, start + overlap_chars + step, end)
            if found:
                end = found.end() - 1
        if text[start:end].strip():
            spans.append((start, end))
        if end == n:
            return spans
        # Overlap the previous chunk, starting on a word rather than inside one.
        start = end - overlap_chars
        while start < end and not text[start - 1].isspace():
            start += 1
