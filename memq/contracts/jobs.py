"""Jobs: what a client submits (generate, summarize, chat and consolidate requests, with
their sampling and retrieval options), what it reads back (the job, its result, progress
and webhook delivery, listings), and the public models of chat sessions.

A job request is one of four models told apart by `type` (`JobRequest`). The summarize
defaults are wire defaults (they fill the `params` a summarize request leaves out and
appear in its schema), so they live here with the measurements that chose them.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, Field, field_validator, model_validator

from memq.contracts.adapters import (
    AdapterChoice,
    AdapterName,
    AdapterServed,
    AdapterVersionPublic,
    TrainingOptions,
)
from memq.contracts.common import (
    ErrorResponse,
    Namespace,
    StrictFloat,
    StrictInt,
    StrictModel,
    has_visible_text,
)
from memq.contracts.memories import (
    MAX_MEMORY_TEXT_CHARS,
    MemoryFilter,
    MemoryId,
    MemoryKind,
)

MAX_NEW_TOKENS_LIMIT = 1024
MAX_PROMPT_CHARS = 200_000
MAX_SUMMARIZE_CHARS = 1_000_000


class JobType(StrEnum):
    generate = "generate"
    summarize = "summarize"
    chat = "chat"
    consolidate = "consolidate"


class JobStatus(StrEnum):
    queued = "queued"
    running = "running"
    succeeded = "succeeded"
    failed = "failed"
    cancelled = "cancelled"

    @property
    def terminal(self) -> bool:
        return self in (JobStatus.succeeded, JobStatus.failed, JobStatus.cancelled)


class Priority(StrEnum):
    """Separate queues that workers drain in this order: interactive work stays fast while
    bulk work waits."""

    high = "high"
    normal = "normal"
    low = "low"


SUMMARY_REPETITION_PENALTY = 1.0
"""Summarize's default repetition penalty: off. Hugging Face's penalty also hits every
token of the text being summarized, so the model stops copying names and numbers and
invents them (ROUGE-L 0.3 x lead-3 at 1.3; bench/results/summaries-quick.md)."""
SUMMARY_NO_REPEAT_NGRAM = 3
SUMMARY_NO_REPEAT_NGRAM_SCOPE = "output"
"""Summarize's default loop guard: no 3 tokens in a row twice in the summary, while
phrases of the text may be copied (scope `output`). Greedy decoding of small models loops
on a phrase without a guard; Hugging Face's rule (scope `all`) also forbids copying the
text's phrases and cost a quarter of ROUGE-L; with the output scope, n = 6 let loops
through (bench/results/summaries.md)."""
SUMMARY_PARAMS: dict[str, Any] = {
    "max_new_tokens": 96,
    "repetition_penalty": SUMMARY_REPETITION_PENALTY,
    "no_repeat_ngram_size": SUMMARY_NO_REPEAT_NGRAM,
    "no_repeat_ngram_scope": SUMMARY_NO_REPEAT_NGRAM_SCOPE,
}
"""A summarize job's parameters where its `params` leave them out."""

TEMPERATURE_FLOOR = 0.01
"""Below this a softmax over float32 logits under- or overflows: such temperatures are
refused (use 0 for greedy decoding)."""

JobMetadataKey = Annotated[str, Field(pattern=r"^[A-Za-z0-9_.:\-]{1,64}$")]
JobMetadataValue = Annotated[str, Field(max_length=1024)]


class GenerationParams(StrictModel):
    """Sampling parameters; `temperature=0` means greedy decoding."""

    max_new_tokens: StrictInt = Field(
        default=64, ge=1, le=MAX_NEW_TOKENS_LIMIT, description="Tokens to generate (1..1024)."
    )
    temperature: StrictFloat = Field(
        default=0.0,
        ge=0.0,
        le=5.0,
        description=f"0 = greedy; otherwise {TEMPERATURE_FLOOR}..5.",
    )
    top_p: StrictFloat = Field(default=1.0, gt=0.0, le=1.0, description="Nucleus sampling mass.")
    top_k: StrictInt = Field(default=0, ge=0, le=1000, description="0 = disabled.")
    repetition_penalty: StrictFloat = Field(
        default=1.0, ge=0.5, le=3.0, description="1 = off; > 1 discourages repeats."
    )
    no_repeat_ngram_size: StrictInt = Field(
        default=0,
        ge=0,
        le=10,
        description="0 = off; n > 0: no n tokens in a row occur twice in prompt + output "
        "(Hugging Face's no_repeat_ngram_size).",
    )
    no_repeat_ngram_scope: Literal["all", "output"] = Field(
        default="all",
        description="What `no_repeat_ngram_size` covers: `all` = prompt + output (Hugging "
        "Face's rule), `output` = the generated tokens only, so phrases of the prompt may be "
        "copied once but the output never repeats itself.",
    )
    seed: StrictInt | None = Field(
        default=None, ge=0, le=2**32 - 1, description="Seed of a sampled job (reproducible)."
    )
    stop: list[Annotated[str, Field(min_length=1, max_length=64)]] = Field(
        default_factory=list, max_length=8, description="Stop sequences (not included in output)."
    )

    @field_validator("temperature")
    @classmethod
    def _temperature_floor(cls, v: float) -> float:
        if 0.0 < v < TEMPERATURE_FLOOR:
            raise ValueError(
                f"temperature must be 0 (greedy) or at least {TEMPERATURE_FLOOR}; got {v}"
            )
        return v

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0

    def to_generate_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for Hugging Face `generate` (stop sequences handled by memq)."""
        kwargs: dict[str, Any] = {
            "max_new_tokens": self.max_new_tokens,
            "repetition_penalty": self.repetition_penalty,
        }
        # The output-only scope has no Hugging Face switch: memq's engines apply it
        # (worker.engine.sampling.OutputNGramProcessor in the simple engine).
        if self.no_repeat_ngram_size and self.no_repeat_ngram_scope == "all":
            kwargs["no_repeat_ngram_size"] = self.no_repeat_ngram_size
        if self.greedy:
            kwargs["do_sample"] = False
        else:
            kwargs.update(do_sample=True, temperature=self.temperature, top_p=self.top_p)
            kwargs["top_k"] = self.top_k if self.top_k > 0 else None
        return kwargs


class PinnedMemory(StrictModel):
    """A memory given with the job instead of searched for (what a replay uses)."""

    id: Annotated[str, Field(min_length=1, max_length=128)]
    text: Annotated[str, Field(min_length=1, max_length=MAX_MEMORY_TEXT_CHARS)]
    score: StrictFloat = Field(default=1.0, description="Rank: higher goes first.")
    version: StrictInt | None = Field(default=None, ge=1)
    similarity: StrictFloat | None = None


class MemoryOptions(StrictModel):
    namespace: Namespace | None = Field(
        default=None, description="Namespace to retrieve from; omit to skip retrieval."
    )
    namespaces: list[Namespace] | None = Field(
        default=None,
        min_length=1,
        max_length=8,
        description="Several namespaces to retrieve from (merged best first); chat jobs "
        "default to the session's and the user's.",
    )
    pinned: list[PinnedMemory] | None = Field(
        default=None,
        max_length=50,
        description="Use exactly these memories instead of searching (a replay pins the "
        "memories its original job saw).",
    )
    top_k: StrictInt = Field(default=5, ge=0, le=50, description="Memories to retrieve (0 = none).")
    min_similarity: StrictFloat | None = Field(
        default=None,
        ge=-1.0,
        le=1.0,
        description="Memories whose cosine similarity to the query is below this are left "
        "out of the prompt (and reported as such); default MEMQ_MIN_SIMILARITY.",
    )

    @model_validator(mode="after")
    def _one_way_to_name_namespaces(self) -> MemoryOptions:
        if self.namespace is not None and self.namespaces is not None:
            raise ValueError("give `namespace` or `namespaces`, not both")
        return self

    def search_namespaces(self) -> list[str]:
        if self.namespaces is not None:
            return list(self.namespaces)
        return [self.namespace] if self.namespace is not None else []


JobMetadata = Annotated[
    dict[JobMetadataKey, JobMetadataValue],
    Field(
        max_length=32,
        description="Up to 32 string labels (keys: 1-64 chars of letters, digits, `_ . : -`; "
        "values: up to 1,024 chars), echoed back on the job.",
    ),
]


def _http_url(v: str) -> str:
    parts = urlsplit(v)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an absolute http:// or https:// URL")
    if parts.username or parts.password:
        raise ValueError("must not carry credentials; the body is signed instead")
    return v


CallbackUrl = Annotated[str, Field(min_length=8, max_length=2048), AfterValidator(_http_url)]

MAX_CONSOLIDATE_MEMORIES = 1000


class ConsolidateJobRequest(StrictModel):
    """Train a LoRA adapter on a namespace's memories (implicit memory); the result is a new
    version of the named adapter that generate, summarize and chat jobs can use."""

    type: Literal["consolidate"] = "consolidate"
    adapter: AdapterName = Field(
        description="The adapter to make: a new name starts at version 1, an existing one "
        "gets its next version."
    )
    namespace: Namespace = Field(description="Whose memories to consolidate.")
    memory_ids: list[MemoryId] | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_CONSOLIDATE_MEMORIES,
        description="Only these memories of the namespace (an id not in it fails the job).",
    )
    kinds: list[MemoryKind] | None = Field(
        default=None, min_length=1, max_length=4, description="Only memories of these kinds."
    )
    where: MemoryFilter | None = Field(
        default=None, description="Only memories whose metadata matches this filter."
    )
    training: TrainingOptions = Field(default_factory=TrainingOptions)
    metadata: JobMetadata = Field(default_factory=dict)
    priority: Priority = Field(
        default=Priority.normal,
        description="Recorded for listings: consolidation jobs wait in the training queue.",
    )
    callback_url: CallbackUrl | None = Field(
        default=None,
        description="POSTed the finished job (signed, see the README) when it ends.",
    )


def _visible(v: str, field: str) -> str:
    if not has_visible_text(v):
        raise ValueError(
            f"{field} must contain visible characters (not only whitespace, control or "
            "zero-width characters)"
        )
    return v


SESSION_ID_PATTERN = r"^[A-Za-z0-9_.@\-]{1,100}$"
SessionId = Annotated[
    str,
    Field(
        pattern=SESSION_ID_PATTERN,
        description="A conversation's id (1-100 letters, digits, `_ . @ -`); its turns live in "
        "the namespace `session:{id}`.",
        examples=["chat-2024-alice"],
    ),
]
UserId = Annotated[
    str,
    Field(
        pattern=SESSION_ID_PATTERN,
        description="The end user's id; long-term memories live in `user:{id}`.",
        examples=["alice"],
    ),
]


def session_namespace(session_id: str) -> str:
    return f"session:{session_id}"


def user_namespace(user_id: str) -> str:
    return f"user:{user_id}"


class ChatRole(StrEnum):
    system = "system"
    user = "user"
    assistant = "assistant"


class ChatMessage(StrictModel):
    role: ChatRole
    content: str = Field(min_length=1, max_length=MAX_PROMPT_CHARS)

    @field_validator("content")
    @classmethod
    def _content_visible(cls, v: str) -> str:
        return _visible(v, "content")


CHAT_MAX_NEW_TOKENS = 256


class ChatJobRequest(StrictModel):
    """One turn of a conversation: the new message(s), with the session's recent turns, its
    rolling summary and long-term memories put in front of the model by memq."""

    type: Literal["chat"] = "chat"
    messages: list[ChatMessage] = Field(
        min_length=1,
        max_length=256,
        description="The conversation so far as the client has it, ending with a user "
        "message. With a `session_id`, sending only the new user message is enough: memq "
        "adds the session's earlier turns.",
    )
    session_id: SessionId | None = None
    user_id: UserId | None = None
    write_back: bool = Field(
        default=True,
        description="With a session: store the user's message and the reply as `message` "
        "memories of the session once the job succeeds (exactly once).",
    )
    remember_facts: bool = Field(
        default=False,
        description="With a `user_id`: keep the first-person statements of the user's message "
        '("I live in …", "My sister is …") as `fact` memories of `user:{id}`, so new '
        "sessions of the user find them (a documented heuristic, no model call).",
    )
    params: GenerationParams = Field(
        default_factory=lambda: GenerationParams(max_new_tokens=CHAT_MAX_NEW_TOKENS)
    )
    memory: MemoryOptions = Field(default_factory=MemoryOptions)
    adapter: AdapterChoice = None
    metadata: JobMetadata = Field(default_factory=dict)
    priority: Priority = Field(default=Priority.normal, description="Which queue it waits in.")
    callback_url: CallbackUrl | None = Field(
        default=None,
        description="POSTed the finished job (signed, see the README) when it ends.",
    )

    @model_validator(mode="after")
    def _ends_with_the_user(self) -> ChatJobRequest:
        if self.messages[-1].role != ChatRole.user:
            raise ValueError("the last message must be the user's (role `user`)")
        if self.session_id and self.write_back and len(self.prompt) > MAX_MEMORY_TEXT_CHARS:
            raise ValueError(
                f"the last user message is {len(self.prompt):,} characters; a session stores "
                f"at most {MAX_MEMORY_TEXT_CHARS:,} per turn: shorten it or set write_back to false"
            )
        return self

    @property
    def prompt(self) -> str:
        """The newest user message: the retrieval query and the text never cut."""
        return self.messages[-1].content

    def memory_namespaces(self) -> list[str]:
        """Where long-term memories are searched: as given, else the session's and the
        user's namespaces."""
        return [scope.namespace for scope in self.memory_scopes()]

    def memory_scopes(self) -> list[MemoryScope]:
        return _scopes(self.memory, self.session_id, self.user_id)


class SessionSummaryTarget(StrictModel):
    session_id: SessionId
    through_turn: StrictInt = Field(ge=1, le=10**9)


class GenerateJobRequest(StrictModel):
    type: Literal["generate"] = "generate"
    prompt: str = Field(
        min_length=1, max_length=MAX_PROMPT_CHARS, description="The text to continue."
    )
    params: GenerationParams = Field(default_factory=GenerationParams)
    memory: MemoryOptions = Field(default_factory=MemoryOptions)
    user_id: UserId | None = Field(
        default=None,
        description="Whose job this is: with no namespace named in `memory`, retrieval "
        "searches `user:{user_id}` (OpenAI's `user` on /v1/completions sets it).",
    )
    adapter: AdapterChoice = None
    metadata: JobMetadata = Field(default_factory=dict)
    priority: Priority = Field(default=Priority.normal, description="Which queue it waits in.")
    callback_url: CallbackUrl | None = Field(
        default=None,
        description="POSTed the finished job (signed, see the README) when it ends.",
    )

    @field_validator("prompt")
    @classmethod
    def _prompt_visible(cls, v: str) -> str:
        return _visible(v, "prompt")

    def memory_scopes(self) -> list[MemoryScope]:
        return _scopes(self.memory, None, self.user_id)


class SummarizeJobRequest(StrictModel):
    type: Literal["summarize"] = "summarize"
    text: str = Field(
        min_length=1,
        max_length=MAX_SUMMARIZE_CHARS,
        description="Text to summarize; longer than the context is map-reduced over chunks.",
    )
    params: GenerationParams = Field(
        default_factory=lambda: GenerationParams(**SUMMARY_PARAMS),
        description="Sampling parameters; those left out take summarize's defaults "
        f"({', '.join(f'{k}={v}' for k, v in SUMMARY_PARAMS.items())}).",
    )
    sentences: StrictInt = Field(
        default=3, ge=1, le=20, description="Instruct models: how many sentences to write."
    )
    session_summary: SessionSummaryTarget | None = Field(
        default=None,
        description="Make the summary the session's rolling summary, covering its turns up "
        "to `through_turn` (memq schedules these itself as a session grows).",
    )
    memory: MemoryOptions = Field(default_factory=lambda: MemoryOptions(top_k=0))
    adapter: AdapterChoice = None
    metadata: JobMetadata = Field(default_factory=dict)
    priority: Priority = Field(default=Priority.normal, description="Which queue it waits in.")
    callback_url: CallbackUrl | None = Field(
        default=None,
        description="POSTed the finished job (signed, see the README) when it ends.",
    )

    @field_validator("text")
    @classmethod
    def _text_visible(cls, v: str) -> str:
        return _visible(v, "text")

    @field_validator("params", mode="before")
    @classmethod
    def _summary_defaults(cls, v: Any) -> Any:
        # `{"max_new_tokens": 200}` must not switch the loop guards off.
        if isinstance(v, GenerationParams):
            unset = {k: d for k, d in SUMMARY_PARAMS.items() if k not in v.model_fields_set}
            return v.model_copy(update=unset) if unset else v
        if isinstance(v, dict):
            return {**SUMMARY_PARAMS, **v}
        return v


JobRequest = Annotated[
    GenerateJobRequest | SummarizeJobRequest | ChatJobRequest | ConsolidateJobRequest,
    Field(discriminator="type"),
]
GenerationJobRequest = GenerateJobRequest | SummarizeJobRequest | ChatJobRequest
"""The job types that run the model (and may name an adapter)."""


class LeftOut(StrEnum):
    below_similarity_floor = "below_similarity_floor"
    did_not_fit = "did_not_fit"
    different_subject = "different_subject"
    """The question names someone or something the memory is not about."""
    superseded = "superseded"
    """A newer memory replaced it (it was searched with `include_superseded`)."""


class RetrievedMemory(BaseModel):
    id: str
    score: float = Field(description="Rank score of the search (fusion score in hybrid mode).")
    text: str
    namespace: str | None = None
    version: int | None = Field(default=None, description="The version the job saw.")
    similarity: float | None = Field(default=None, description="Cosine similarity to the query.")
    used: bool = Field(description="Whether it was put in the prompt.")
    left_out: LeftOut | None = Field(
        default=None,
        description="Why it was not used: below the similarity floor, no room, about "
        "another subject than the question (`different_subject`), or replaced by a newer "
        "memory (`superseded`).",
    )


class ScopeReason(StrEnum):
    explicit = "explicit"
    """The job named the namespace (`memory.namespace(s)`)."""
    session = "session"
    """The job's `session_id`: its `session:{id}` namespace."""
    user = "user"
    """The job's user (`user_id`, OpenAI's `user`): its `user:{id}` namespace."""


class MemoryScope(BaseModel):
    """A namespace a job's retrieval searched, and why."""

    namespace: str
    reason: ScopeReason


class Citation(BaseModel):
    """A memory the answer relies on."""

    id: str
    version: int | None = Field(default=None, description="The version the job saw.")
    namespace: str | None = None


class TokenUsage(BaseModel):
    prompt_tokens: int = Field(description="Tokens of the user's own text.")
    context_tokens: int = Field(description="Tokens of retrieved memories plus template.")
    input_tokens: int = Field(description="prompt_tokens + context_tokens: the model's input.")
    completion_tokens: int
    total_tokens: int = Field(description="input_tokens + completion_tokens.")


class JobTimings(BaseModel):
    queue_wait_s: float | None = None
    retrieval_s: float | None = None
    generation_s: float | None = None
    engine_first_token_s: float | None = Field(
        default=None,
        description="From the first model call's submission to the engine until its first "
        "token (engine queueing and prefill); None when no token was generated.",
    )
    total_s: float | None = None


class JobResult(BaseModel):
    text: str
    model: str = Field(description="The model that produced the text.")
    finish_reason: str = Field(
        description="`length`, `stop` (stop sequence), `eos`, `cancelled` (partial text), "
        '`trained` (a consolidate job), or `abstained`: memq answered "I don\'t know" '
        "itself because every memory retrieved for the question was about someone or "
        "something else (the model was not called)."
    )
    memories: list[RetrievedMemory] = Field(default_factory=list)
    memory_scope: list[MemoryScope] = Field(
        default_factory=list,
        description="The namespaces searched and why: named by the job, the session's, or "
        "the user's (memory is on by default wherever the scope is known).",
    )
    citations: list[Citation] = Field(
        default_factory=list,
        description="The memories the answer relies on: used in the prompt, and their own "
        "details (the value asked for, a name, a number) appear in the answer. Empty when the "
        "answer uses none (e.g. it says it does not know).",
    )
    usage: TokenUsage
    timings: JobTimings
    prompt: str = Field(description="The exact assembled model input (memories + user text).")
    prompt_token_ids: list[int] = Field(
        default_factory=list, description="The model input as token ids (the final call's)."
    )
    params: GenerationParams | None = Field(
        default=None,
        description="The sampling parameters applied, with the seed drawn for a sampled job "
        "that gave none: a replay with them reproduces the output.",
    )
    chunks: int = Field(default=1, description="Summarize: number of map chunks.")
    adapter: AdapterServed | None = Field(
        default=None, description="The adapter that served the job; null: the base model."
    )
    consolidation: AdapterVersionPublic | None = Field(
        default=None, description="Consolidate jobs: the adapter version trained."
    )


class WebhookAttempt(BaseModel):
    at: datetime
    status_code: int | None = Field(default=None, description="The receiver's answer, if any.")
    error: str | None = None


class WebhookDelivery(BaseModel):
    url: str
    delivered_at: datetime | None = None
    attempts: list[WebhookAttempt] = Field(default_factory=list)
    gave_up: bool = False


class JobProgress(BaseModel):
    tokens: int = 0
    text: str = ""
    step: int | None = Field(default=None, description="Consolidate jobs: steps done.")
    total_steps: int | None = Field(default=None, description="Consolidate jobs: steps in all.")
    loss: float | None = Field(default=None, description="Consolidate jobs: the latest loss.")


class JobPublic(BaseModel):
    id: str
    type: JobType
    status: JobStatus
    tenant: str
    created_at: datetime
    status_url: str | None = None
    timestamps: dict[JobStatus, datetime] = Field(
        default_factory=dict, description="When the job entered each state."
    )
    request: JobRequest
    attempts: int = Field(
        default=0, description="How many times a worker started it (> 1: a worker was lost)."
    )
    worker: str | None = Field(default=None, description="The worker that ran it last.")
    replay_of: str | None = Field(default=None, description="The job this one replays.")
    progress: JobProgress | None = None
    result: JobResult | None = None
    error: ErrorResponse | None = None
    webhook: WebhookDelivery | None = None


class JobSummary(BaseModel):
    """A job in a listing (without its request text or result)."""

    id: str
    type: JobType
    status: JobStatus
    priority: Priority = Priority.normal
    created_at: datetime
    timestamps: dict[JobStatus, datetime] = Field(default_factory=dict)
    metadata: dict[str, str] = Field(default_factory=dict)
    replay_of: str | None = None
    error: str | None = Field(default=None, description="Error code of a failed job.")


class JobListResponse(BaseModel):
    items: list[JobSummary]
    next_cursor: str | None = Field(
        default=None, description="Pass as `cursor` for the next page; null on the last page."
    )


class SessionTurn(BaseModel):
    turn: int
    role: ChatRole
    content: str
    memory_id: str
    created_at: datetime


class SessionSummary(BaseModel):
    text: str
    version: int = Field(description="Each time the summary grows it gets a new version.")
    through_turn: int = Field(description="The turns it covers: 1 through this one.")


class SessionPublic(BaseModel):
    session_id: str
    turns: list[SessionTurn] = Field(description="Every stored turn, oldest first.")
    summary: SessionSummary | None = None


class SessionForgotten(BaseModel):
    session_id: str
    deleted_memories: int
    cancelled_jobs: int = Field(description="Its queued or running chat jobs, cancelled.")


class JobAccepted(BaseModel):
    id: str
    status: JobStatus
    status_url: str


class ModelInfo(BaseModel):
    """What a worker publishes about the model it serves (read by the gateway to validate)."""

    name: str
    context_window: int
    tokenizer_json: str = Field(description="Serialized fast tokenizer (tokenizers JSON).")
    template_tokens: dict[JobType, int] = Field(
        default_factory=dict,
        description="Tokens each job type's prompt template adds around the user's text.",
    )
    chat_template: bool = Field(
        default=False, description="Whether prompts use the model's chat template."
    )


def _scopes(
    memory: MemoryOptions, session_id: str | None, user_id: str | None
) -> list[MemoryScope]:
    """Where a job's memories are searched: the namespaces it names, else its session's and
    its user's (none when it pins its memories)."""
    given = memory.search_namespaces()
    if given or memory.pinned is not None:
        return [MemoryScope(namespace=ns, reason=ScopeReason.explicit) for ns in given]
    found = []
    if session_id:
        found.append(
            MemoryScope(namespace=session_namespace(session_id), reason=ScopeReason.session)
        )
    if user_id:
        found.append(MemoryScope(namespace=user_namespace(user_id), reason=ScopeReason.user))
    return found
