"""Split a document into overlapping chunks that end on whitespace where possible."""

from __future__ import annotations


def chunk_spans(text: str, chunk_chars: int, overlap_chars: int) -> list[tuple[int, int]]:
    """(start, end) character spans covering `text`; consecutive spans share about
    `overlap_chars` characters. Whitespace-only spans are dropped."""
    if overlap_chars >= chunk_chars:
        raise ValueError("overlap_chars must be smaller than chunk_chars")
    spans: list[tuple[int, int]] = []
    n = len(text)
    start = 0
    while start < n:
        end = min(start + chunk_chars, n)
        if end < n:
            # Prefer to cut at whitespace in the second half of the window.
            cut = max(
                text.rfind(" ", start + chunk_chars // 2, end),
                text.rfind("\n", start + chunk_chars // 2, end),
            )
            if cut > start:
                end = cut
        if text[start:end].strip():
            spans.append((start, end))
        if end >= n:
            break
        next_start = max(end - overlap_chars, start + 1)
        # Move the overlap start forward to a word boundary, never past the cut.
        while 0 < next_start < end and not text[next_start - 1].isspace():
            next_start += 1
        start = next_start if next_start < end else end
    return spans
