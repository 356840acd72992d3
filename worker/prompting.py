"""How each job type's model input is built for the served model.

Base models (GPT-2) get plain text: memories in a `Relevant memories:` block, `TL;DR:` for
summaries, `User:` / `Assistant:` turns for chat. Instruct models (a tokenizer with a chat
template, e.g. the SmolLM2 fallback) get their chat template: memories and the session's
summary in the system message, turns as messages, a summarize instruction as the user
message. Either way:

- the user's own text is never cut: when it cannot fit with `max_new_tokens`, the job is
  refused (`PromptTooLong`, with the counts);
- a retrieved memory is left out when its cosine similarity is below the floor, or when it
  does not fit (a shorter one may still fit); `left_out` says which;
- usage adds up: `prompt_tokens` counts the user's own text, `context_tokens` everything
  memq added (template, memories, earlier turns, summary).

Base models' generate and summarize inputs are concatenated from token-id segments
(`assemble`), so the counts add up exactly; `split_tokens` cuts a text too long for one
summarize call into chunks that fit.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from memq.budget import check_job_fits
from memq.contracts import ChatJobRequest, ChatRole, JobType, LeftOut, MemoryHit
from memq.errors import PromptTooLong
from worker.grounding import about_something_else

TLDR = "\n\nTL;DR:"
"""GPT-2's zero-shot summarization cue, after the text to summarize."""
MEMORY_HEADER = "Relevant memories:\n"
MEMORY_LINE = "- {text}\n"
MEMORY_FOOTER = "\n"
SYSTEM_PROMPT = "You are a helpful assistant. Answer briefly and directly."
FACTS_HEADER = (
    "Use these facts to answer. If they do not say what is asked, answer that you do not "
    "know.\nFacts:"
)
NO_FACTS: str | None = (
    "Your notes hold nothing about what is asked. If the question asks for a fact about a "
    "person, place or thing, answer that you do not know."
)
"""Replaces the facts block when a search kept no memory (issue 28: abstain)."""
SUMMARY_HEADER = "Summary of the conversation so far:"
SUMMARIZE_SYSTEM = "You write short, faithful summaries. Never repeat yourself."
SUMMARIZE_INSTRUCTION = "Summarize the following text in {n} sentences.\n\nText:\n{text}"
PLAIN_CHAT_STOP = ["\nUser:"]
# Chat-template renderings can tokenize a hair differently at the seams than their parts.
TEMPLATE_MARGIN = 8


@dataclass
class AssembledPrompt:
    input_ids: list[int]
    prompt_tokens: int
    context_tokens: int
    used_memory_ids: list[str] = field(default_factory=list)
    left_out: dict[str, LeftOut] = field(default_factory=dict)


@dataclass(frozen=True)
class Turn:
    """One earlier message of the session, as stored."""

    role: ChatRole
    content: str
    memory_id: str | None = None


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
    """`user_ids` (+ optional template `suffix_ids`, e.g. "TL;DR:") after the memories,
    best score first while they fit.

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
        line = encode(tokenizer, MEMORY_LINE.format(text=_one_line(hit.text)))
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


def split_tokens(ids: list[int], chunk: int, overlap: int = 0) -> list[list[int]]:
    """`ids` cut into chunks of at most `chunk` tokens, each overlapping the one before by
    `overlap`; the last one reaches the end."""
    if chunk <= overlap:
        raise ValueError("chunk must be larger than overlap")
    out, start = [], 0
    while start < len(ids):
        out.append(ids[start : start + chunk])
        if start + chunk >= len(ids):
            break
        start += chunk - overlap
    return out


def gate(
    memories: Sequence[MemoryHit], floor: float | None, question: str | None = None
) -> tuple[list[MemoryHit], dict[str, LeftOut]]:
    """Memories worth putting in the prompt, best first; the rest, with the reason:
    replaced by a newer memory, below the similarity floor, or about another subject than
    `question` asks about."""
    left_out: dict[str, LeftOut] = {}
    kept: list[MemoryHit] = []
    for hit in memories:
        if hit.superseded_by is not None:
            left_out[hit.id] = LeftOut.superseded
        elif floor is not None and hit.similarity is not None and hit.similarity < floor:
            left_out[hit.id] = LeftOut.below_similarity_floor
        elif question is not None and about_something_else(question, hit.text):
            left_out[hit.id] = LeftOut.different_subject
        else:
            kept.append(hit)
    kept.sort(key=lambda h: h.similarity if h.similarity is not None else h.score, reverse=True)
    return kept, left_out


def _with_unfit(
    built: AssembledPrompt, kept: Sequence[MemoryHit], left_out: dict[str, LeftOut]
) -> AssembledPrompt:
    """`built`, with every kept memory it did not use marked as not fitting."""
    for hit in kept:
        if hit.id not in built.used_memory_ids:
            left_out[hit.id] = LeftOut.did_not_fit
    built.left_out = left_out
    return built


def _one_line(text: str) -> str:
    return " ".join(text.split())


class Prompts(ABC):
    chat_template: bool

    def __init__(self, tokenizer: Any, context_window: int) -> None:
        self.tokenizer = tokenizer
        self.context_window = context_window

    def encode(self, text: str) -> list[int]:
        return encode(self.tokenizer, text)

    @abstractmethod
    def template_tokens(self) -> dict[JobType, int]:
        """Tokens each job type adds around the user's text (the gateway's budget check)."""

    @abstractmethod
    def generate(
        self, prompt: str, memories: Sequence[MemoryHit], max_new_tokens: int, floor: float | None
    ) -> AssembledPrompt: ...

    @abstractmethod
    def summary_room(self, max_new_tokens: int) -> int:
        """Tokens of text one summarize call can take."""

    @abstractmethod
    def summarize(
        self,
        piece: list[int],
        memories: Sequence[MemoryHit],
        max_new_tokens: int,
        sentences: int,
        floor: float | None,
    ) -> AssembledPrompt: ...

    @abstractmethod
    def chat(
        self,
        request: ChatJobRequest,
        history: Sequence[Turn],
        summary: str | None,
        memories: Sequence[MemoryHit],
        max_new_tokens: int,
        floor: float | None,
    ) -> AssembledPrompt: ...

    def chat_stop(self) -> list[str]:
        return []

    def _fill(
        self,
        render: Callable[[list[MemoryHit], list[Turn]], list[int]],
        prompt_tokens: int,
        history: Sequence[Turn],
        memories: Sequence[MemoryHit],
        max_new_tokens: int,
        floor: float | None,
        question: str | None = None,
    ) -> AssembledPrompt:
        """Render the smallest prompt (refusing the job when even that does not fit), then
        add earlier turns newest first up to half the room left, memories best first while
        they fit, and the remaining turns."""
        limit = self.context_window - max_new_tokens
        base = render([], [])
        if len(base) > limit:
            check_job_fits(
                JobType.generate,
                max_new_tokens=max_new_tokens,
                context_window=self.context_window,
                template_tokens=len(base) - prompt_tokens,
                prompt_tokens=prompt_tokens,
            )
            raise PromptTooLong(
                f"the prompt is {len(base):,} tokens with its template; with max_new_tokens="
                f"{max_new_tokens:,} it exceeds the model context of {self.context_window:,}"
            )
        kept, left_out = gate(memories, floor, question)
        used: list[MemoryHit] = []
        turns: list[Turn] = []
        newest_first = list(reversed(history))
        half = len(base) + (limit - len(base)) // 2

        def try_turns(bound: int) -> None:
            while newest_first:
                candidate = [newest_first[0], *turns]
                if len(render(used, candidate)) > bound:
                    return
                turns.insert(0, newest_first.pop(0))

        try_turns(half)
        for hit in kept:
            if len(render([*used, hit], turns)) <= limit:
                used.append(hit)
            else:
                left_out[hit.id] = LeftOut.did_not_fit
        try_turns(limit)
        ids = render(used, turns)
        return AssembledPrompt(
            input_ids=ids,
            prompt_tokens=prompt_tokens,
            context_tokens=len(ids) - prompt_tokens,
            used_memory_ids=[h.id for h in used] + [t.memory_id for t in turns if t.memory_id],
            left_out=left_out,
        )


class PlainPrompts(Prompts):
    """Base models: text prompts built from token-id segments."""

    chat_template = False

    def template_tokens(self) -> dict[JobType, int]:
        return {
            JobType.generate: 0,
            JobType.summarize: len(self.encode(TLDR)),
            JobType.chat: len(self.encode("User: \nAssistant:")),
        }

    def generate(
        self, prompt: str, memories: Sequence[MemoryHit], max_new_tokens: int, floor: float | None
    ) -> AssembledPrompt:
        kept, left_out = gate(memories, floor, prompt)
        built = assemble(
            self.tokenizer,
            self.encode(prompt),
            kept,
            max_new_tokens=max_new_tokens,
            context_window=self.context_window,
        )
        return _with_unfit(built, kept, left_out)

    def summary_room(self, max_new_tokens: int) -> int:
        return self.context_window - max_new_tokens - len(self.encode(TLDR))

    def summarize(
        self,
        piece: list[int],
        memories: Sequence[MemoryHit],
        max_new_tokens: int,
        sentences: int,
        floor: float | None,
    ) -> AssembledPrompt:
        kept, left_out = gate(memories, floor)
        built = assemble(
            self.tokenizer,
            piece,
            kept,
            max_new_tokens=max_new_tokens,
            context_window=self.context_window,
            suffix_ids=self.encode(TLDR),
        )
        return _with_unfit(built, kept, left_out)

    def chat(
        self,
        request: ChatJobRequest,
        history: Sequence[Turn],
        summary: str | None,
        memories: Sequence[MemoryHit],
        max_new_tokens: int,
        floor: float | None,
    ) -> AssembledPrompt:
        system = "\n".join(m.content for m in request.messages if m.role == ChatRole.system)
        said = [Turn(m.role, m.content) for m in request.messages if m.role != ChatRole.system]
        prompt_tokens = sum(len(self.encode(m.content)) for m in request.messages)

        def render(used: list[MemoryHit], turns: list[Turn]) -> list[int]:
            text = f"{system}\n\n" if system else ""
            if used:
                lines = "".join(MEMORY_LINE.format(text=_one_line(h.text)) for h in used)
                text += MEMORY_HEADER + lines + MEMORY_FOOTER
            if summary:
                text += f"{SUMMARY_HEADER} {_one_line(summary)}\n\n"
            for turn in [*turns, *said]:
                speaker = "User" if turn.role == ChatRole.user else "Assistant"
                text += f"{speaker}: {turn.content}\n"
            return self.encode(text + "Assistant:")

        return self._fill(
            render, prompt_tokens, history, memories, max_new_tokens, floor, request.prompt
        )

    def chat_stop(self) -> list[str]:
        return list(PLAIN_CHAT_STOP)


class TemplatePrompts(Prompts):
    """Instruct models: the tokenizer's own chat template."""

    chat_template = True

    def _render(self, messages: list[dict[str, str]]) -> list[int]:
        text: str = self.tokenizer.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=True
        )
        return self.encode(text)

    def _system(self, base: str, summary: str | None) -> str:
        if summary:
            return f"{base}\n\n{SUMMARY_HEADER}\n{_one_line(summary)}"
        return base

    @staticmethod
    def _with_facts(
        message: str, used: Sequence[MemoryHit], question: bool = True, searched: bool = False
    ) -> str:
        """Memories go into the user's message, best one last, nearest the question: on
        the eval set this beat the system message and best-first order (see
        bench/results/prompt_variants.md). A question whose search kept no memory says so,
        so the model can answer that it does not know instead of guessing."""
        if not used:
            if searched and question and NO_FACTS:
                return f"{NO_FACTS}\n\nQuestion: {message}"
            return message
        facts = "\n".join(f"- {_one_line(h.text)}" for h in reversed(used))
        asked = f"Question: {message}" if question else message
        return f"{FACTS_HEADER}\n{facts}\n\n{asked}"

    def template_tokens(self) -> dict[JobType, int]:
        probe = "x"
        probe_tokens = len(self.encode(probe))
        # The budget keeps room for the no-facts note, which replaces the facts block.
        generate = self._render(
            [
                {"role": "system", "content": SYSTEM_PROMPT},
                {"role": "user", "content": self._with_facts(probe, [], searched=True)},
            ]
        )
        summarize = self._summary_ids(probe, 3, [])
        return {
            JobType.generate: len(generate) - probe_tokens + TEMPLATE_MARGIN,
            JobType.summarize: len(summarize) - probe_tokens + TEMPLATE_MARGIN,
            JobType.chat: len(generate) - probe_tokens + TEMPLATE_MARGIN,
        }

    def generate(
        self, prompt: str, memories: Sequence[MemoryHit], max_new_tokens: int, floor: float | None
    ) -> AssembledPrompt:
        def render(used: list[MemoryHit], _: list[Turn]) -> list[int]:
            return self._render(
                [
                    {"role": "system", "content": SYSTEM_PROMPT},
                    {"role": "user", "content": self._with_facts(prompt, used, searched=searched)},
                ]
            )

        searched = bool(memories)
        prompt_tokens = len(self.encode(prompt))
        return self._fill(render, prompt_tokens, [], memories, max_new_tokens, floor, prompt)

    def _summary_ids(self, text: str, sentences: int, used: Sequence[MemoryHit]) -> list[int]:
        instruction = SUMMARIZE_INSTRUCTION.format(n=sentences, text=text)
        return self._render(
            [
                {"role": "system", "content": SUMMARIZE_SYSTEM},
                {"role": "user", "content": self._with_facts(instruction, used, question=False)},
            ]
        )

    def summary_room(self, max_new_tokens: int) -> int:
        overhead = len(self._summary_ids("", 3, [])) + TEMPLATE_MARGIN
        return self.context_window - max_new_tokens - overhead

    def summarize(
        self,
        piece: list[int],
        memories: Sequence[MemoryHit],
        max_new_tokens: int,
        sentences: int,
        floor: float | None,
    ) -> AssembledPrompt:
        text = self.tokenizer.decode(piece)

        def render(used: list[MemoryHit], _: list[Turn]) -> list[int]:
            return self._summary_ids(text, sentences, used)

        return self._fill(render, len(piece), [], memories, max_new_tokens, floor)

    def chat(
        self,
        request: ChatJobRequest,
        history: Sequence[Turn],
        summary: str | None,
        memories: Sequence[MemoryHit],
        max_new_tokens: int,
        floor: float | None,
    ) -> AssembledPrompt:
        given_system = [m.content for m in request.messages if m.role == ChatRole.system]
        base = "\n\n".join(given_system) if given_system else SYSTEM_PROMPT
        said = [
            {"role": m.role.value, "content": m.content}
            for m in request.messages
            if m.role != ChatRole.system
        ]
        prompt_tokens = sum(len(self.encode(m.content)) for m in request.messages)

        def render(used: list[MemoryHit], turns: list[Turn]) -> list[int]:
            earlier = [{"role": t.role.value, "content": t.content} for t in turns]
            system = {"role": "system", "content": self._system(base, summary)}
            content = self._with_facts(said[-1]["content"], used, searched=bool(memories))
            last = {**said[-1], "content": content}
            return self._render([system, *earlier, *said[:-1], last])

        return self._fill(
            render, prompt_tokens, history, memories, max_new_tokens, floor, request.prompt
        )


def prompts_for(tokenizer: Any, context_window: int, style: str = "auto") -> Prompts:
    if style == "template" or (style == "auto" and getattr(tokenizer, "chat_template", None)):
        return TemplatePrompts(tokenizer, context_window)
    return PlainPrompts(tokenizer, context_window)
