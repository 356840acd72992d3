"""Consolidation's training data: token-level examples built from memories.

Per memory (see docs/adapters.md for why):

- its text, as plain language-model data (loss on every token), ending with EOS; a memory
  longer than `max_tokens` is split into overlapping windows, never cut;
- for `fact` memories that fit, two question/answer variants whose answer is the fact:
  "What do you know about {subject}?" and "Tell me about {first name}." (the subject is the
  leading run of capitalised words, e.g. "Zorvan Kell"; a first-person fact gets "What do
  you know about me?"). Loss only on the answer. With an instruct model the pair is
  rendered with its chat template and memq's system prompt, exactly as a generate job's
  prompt is, so the adapter learns the format it will be asked in; GPT-2 gets
  `Question: … / Answer: …` text. Messages, document chunks and summaries are not single
  facts: they get only the text variant.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from memq.contracts import MemoryKind, MemoryPublic
from worker.prompting import SYSTEM_PROMPT

IGNORE = -100
"""Label of a token the loss skips (PyTorch's cross-entropy `ignore_index`)."""
_NOT_SUBJECTS = frozenset(
    {"A", "An", "The", "This", "That", "These", "Those", "There", "It", "Its", "He", "She"}
    | {"They", "We", "Our", "Your", "His", "Her", "Their", "Every", "Each", "Some", "No"}
    | {"In", "On", "At", "For", "To", "From"}
)
_FIRST_PERSON = re.compile(r"^(I|I'm|I've|I'd|My|Me|Mine)\b")
_SUBJECT = re.compile(r"^((?:[A-Z][\w\-]*)(?:\s+[A-Z][\w\-]*)*)")


@dataclass(frozen=True)
class Example:
    input_ids: list[int]
    labels: list[int]


def subject_of(text: str) -> str | None:
    """The person or thing a fact is about: its leading run of capitalised words, without
    a possessive ("Ilsa Brannock's favourite …" → "Ilsa Brannock"); "me" for first person."""
    if _FIRST_PERSON.match(text):
        return "me"
    found = _SUBJECT.match(text.strip())
    if found is None:
        return None
    words = found.group(1).split()
    while words and words[0] in _NOT_SUBJECTS:
        words.pop(0)
    if not words or len(words) != len(found.group(1).split()):
        return None  # "The office …": not a named subject
    return " ".join(words)


def questions_for(text: str) -> list[str]:
    subject = subject_of(text)
    if subject is None:
        return []
    if subject == "me":
        return ["What do you know about me?"]
    first = subject.split()[0]
    return [f"What do you know about {subject}?", f"Tell me about {first}."]


class ExampleBuilder:
    """Turns memories into token-level training examples for one tokenizer."""

    def __init__(self, tokenizer: Any, *, chat_template: bool) -> None:
        self.tokenizer = tokenizer
        self.chat_template = chat_template
        self.eos = tokenizer.eos_token_id

    def encode(self, text: str) -> list[int]:
        ids: list[int] = self.tokenizer.encode(text, add_special_tokens=False)
        return ids

    def build(
        self, memories: Sequence[MemoryPublic], *, max_tokens: int, qa_variants: bool
    ) -> list[Example]:
        examples: list[Example] = []
        for memory in memories:
            examples += self.text_windows(memory.text, max_tokens)
            if qa_variants and memory.kind == MemoryKind.fact:
                for question in questions_for(memory.text):
                    pair = self.qa(question, memory.text)
                    if len(pair.input_ids) <= max_tokens:
                        examples.append(pair)
        return examples

    def text_windows(self, text: str, max_tokens: int) -> list[Example]:
        ids = self.encode(text) + ([self.eos] if self.eos is not None else [])
        stride = max(1, max_tokens - max_tokens // 4)
        windows = []
        start = 0
        while True:
            window = ids[start : start + max_tokens]
            windows.append(Example(window, list(window)))
            if start + max_tokens >= len(ids):
                return windows
            start += stride

    def qa(self, question: str, answer: str) -> Example:
        if self.chat_template:
            messages = [
                {"role": "system", "content": SYSTEM_PROMPT},
                {"role": "user", "content": question},
            ]
            prompt: str = self.tokenizer.apply_chat_template(
                messages, tokenize=False, add_generation_prompt=True
            )
            full: str = self.tokenizer.apply_chat_template(
                [*messages, {"role": "assistant", "content": answer}], tokenize=False
            )
            # A template that renders the turn differently once answered: the bare answer.
            reply = full[len(prompt) :] if full.startswith(prompt) else answer
            prompt_ids, reply_ids = self.encode(prompt), self.encode(reply.rstrip("\n"))
        else:
            prompt_ids = self.encode(f"Question: {question}\nAnswer:")
            reply_ids = self.encode(f" {answer}") + ([self.eos] if self.eos is not None else [])
        return Example(prompt_ids + reply_ids, [IGNORE] * len(prompt_ids) + reply_ids)
