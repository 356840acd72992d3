"""Per-row next-token selection for a batch, matching Hugging Face `generate` row by row.

The processing order is HF's: repetition penalty (prompt and generated tokens), no-repeat
n-gram bans, then for sampled rows temperature, top-k, top-p, softmax and
`torch.multinomial`. Each sampled row
draws from its own `torch.Generator`, so a seeded request produces the same tokens
whichever requests share its batch.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass

import torch
from transformers import LogitsProcessor

from memq.contracts import GenerationParams


class NGramBans:
    """`no_repeat_ngram_size` for one row, as Hugging Face's `NoRepeatNGramLogitsProcessor`
    applies it: no n-gram of the prompt + generated tokens may occur twice; with
    `include_prompt=False` (scope `output`) only the generated tokens count.

    The n-grams seen so far are indexed by their first n-1 tokens, and each new token adds
    one n-gram, so a step costs O(n) instead of HF's scan of the whole sequence.
    """

    def __init__(self, n: int, prompt: Sequence[int], include_prompt: bool = True) -> None:
        if n < 1:
            raise ValueError(f"n-gram size must be >= 1; got {n}")
        self.n = n
        self._prompt_len = len(prompt) if include_prompt else 0
        self._tokens: list[int] = []
        self._followers: dict[tuple[int, ...], set[int]] = {}
        if include_prompt:
            self.extend(prompt)

    @classmethod
    def for_params(cls, params: GenerationParams, prompt: Sequence[int]) -> NGramBans | None:
        n = params.no_repeat_ngram_size
        if n <= 0:
            return None
        return cls(n, prompt, include_prompt=params.no_repeat_ngram_scope == "all")

    def extend(self, tokens: Iterable[int]) -> None:
        n = self.n
        for token in tokens:
            self._tokens.append(token)
            if len(self._tokens) >= n:
                prefix = tuple(self._tokens[len(self._tokens) - n : -1])
                self._followers.setdefault(prefix, set()).add(token)

    def sync(self, generated: Sequence[int]) -> None:
        """Catch up with the row's generated tokens (those not yet added)."""
        self.extend(generated[len(self._tokens) - self._prompt_len :])

    def banned(self) -> AbstractSet[int]:
        """Tokens that would complete an n-gram already seen (read-only)."""
        if len(self._tokens) < self.n:
            return frozenset()
        return self._followers.get(
            tuple(self._tokens[len(self._tokens) - self.n + 1 :]), frozenset()
        )


class OutputNGramProcessor(LogitsProcessor):
    """Scope `output` of `no_repeat_ngram_size` for Hugging Face `generate` (the simple
    engine): the same bans as `NGramBans(n, prompt, include_prompt=False)`."""

    def __init__(self, n: int, prompt_len: int) -> None:
        self.n = n
        self.prompt_len = prompt_len

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        for i in range(input_ids.shape[0]):
            bans = NGramBans(self.n, [], include_prompt=False)
            bans.extend(input_ids[i, self.prompt_len :].tolist())
            _ban(scores[i], bans.banned())
        return scores


@dataclass
class RowSampling:
    """What the sampler needs to know about one row."""

    params: GenerationParams
    seen_ids: list[int]  # prompt + generated so far, for the repetition penalty
    generator: torch.Generator | None
    ngrams: NGramBans | None = None  # up to date with seen_ids when no_repeat_ngram_size > 0


def _apply_repetition_penalty(logits: torch.Tensor, seen_ids: list[int], penalty: float) -> None:
    ids = torch.tensor(seen_ids, dtype=torch.long)
    scores = logits.gather(0, ids)
    logits.scatter_(0, ids, torch.where(scores < 0, scores * penalty, scores / penalty))


def _ban(logits: torch.Tensor, banned: AbstractSet[int]) -> None:
    # Ids past the logits' width cannot be generated (HF clamps them away likewise).
    ids = [t for t in banned if t < logits.shape[-1]]
    if ids:
        logits[torch.tensor(ids, dtype=torch.long)] = -float("inf")


def _warp(logits: torch.Tensor, params: GenerationParams) -> torch.Tensor:
    scores = logits
    if params.temperature != 1.0:
        scores = scores / params.temperature
    if params.top_k > 0:
        k = min(params.top_k, scores.shape[-1])
        kth = torch.topk(scores, k)[0][..., -1, None]
        scores = scores.masked_fill(scores < kth, -float("inf"))
    if params.top_p < 1.0:
        sorted_logits, sorted_indices = torch.sort(scores, descending=False)
        cumulative = sorted_logits.softmax(dim=-1).cumsum(dim=-1)
        remove_sorted = cumulative <= (1 - params.top_p)
        remove_sorted[..., -1:] = False
        remove = remove_sorted.scatter(-1, sorted_indices, remove_sorted)
        scores = scores.masked_fill(remove, -float("inf"))
    return scores


def select_next_tokens(logits: torch.Tensor, rows: list[RowSampling]) -> list[int | BaseException]:
    """Pick each row's next token from float32 `logits` of shape [rows, vocab].

    A row whose selection raises gets the exception instead of a token, so one bad row
    fails alone.
    """
    for i, row in enumerate(rows):
        if row.params.repetition_penalty != 1.0:
            _apply_repetition_penalty(logits[i], row.seen_ids, row.params.repetition_penalty)
        if row.ngrams is not None:
            _ban(logits[i], row.ngrams.banned())
    greedy = torch.argmax(logits, dim=-1).tolist()
    chosen: list[int | BaseException] = []
    for i, row in enumerate(rows):
        if row.params.greedy:
            chosen.append(int(greedy[i]))
            continue
        try:
            probs = _warp(logits[i : i + 1], row.params).softmax(dim=-1)
            token = torch.multinomial(probs, num_samples=1, generator=row.generator)
            chosen.append(int(token.item()))
        except Exception as exc:
            chosen.append(exc)
    return chosen
