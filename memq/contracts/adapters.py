"""Adapters: LoRA adapters consolidated from a namespace's memories (implicit memory):
how a job names one, how a consolidation trains one, and what the API reports about them
(docs/adapters.md). The consolidate job request itself is a job (`memq.contracts.jobs`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, Field, WithJsonSchema, model_validator

from memq.contracts.common import StrictBool, StrictFloat, StrictInt, StrictModel

ADAPTER_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$"
MAX_ADAPTER_VERSION = 1_000_000
AdapterName = Annotated[
    str,
    Field(
        pattern=ADAPTER_NAME_PATTERN,
        description="An adapter's name, unique per tenant (1-64 letters, digits and `_ . -`, "
        "starting with a letter or digit).",
        examples=["alice-facts"],
    ),
]


class AdapterRef(StrictModel):
    """Which adapter serves a job: a name and, optionally, a version (default the latest)."""

    name: AdapterName
    version: StrictInt | None = Field(
        default=None, ge=1, le=MAX_ADAPTER_VERSION, description="Default: the latest version."
    )


def _adapter_ref(v: Any) -> Any:
    return {"name": v} if isinstance(v, str) else v


AdapterChoice = Annotated[
    AdapterRef | None,
    BeforeValidator(_adapter_ref),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "pattern": ADAPTER_NAME_PATTERN},
                AdapterRef.model_json_schema(),
                {"type": "null"},
            ],
            "description": "Serve the job with a LoRA adapter consolidated from memories "
            '(implicit memory): `"name"` (its latest version) or `{"name", "version"}`; '
            "null: the base model. An unknown adapter is a 404 `adapter_not_found`.",
        }
    ),
]


class TrainingOptions(StrictModel):
    """How a consolidation job trains its LoRA adapter (see docs/adapters.md)."""

    steps: StrictInt | None = Field(
        default=None, ge=1, le=5000, description="Optimizer steps; give `steps` or `epochs`."
    )
    epochs: StrictInt | None = Field(
        default=None,
        ge=1,
        le=100,
        description="Passes over the training examples (default 5 when `steps` is not given).",
    )
    batch_size: StrictInt = Field(default=8, ge=1, le=64, description="Examples per step.")
    learning_rate: StrictFloat = Field(default=1e-3, gt=0.0, le=0.1, description="AdamW's.")
    rank: StrictInt = Field(default=16, ge=1, le=256, description="LoRA rank r.")
    alpha: StrictInt | None = Field(
        default=None, ge=1, le=4096, description="LoRA alpha; default 2 × rank."
    )
    dropout: StrictFloat = Field(default=0.0, ge=0.0, lt=1.0, description="LoRA dropout.")
    target_modules: (
        list[Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_.]{0,63}$")]] | None
    ) = Field(
        default=None,
        min_length=1,
        max_length=16,
        description="Module names LoRA adapts; default per architecture: GPT-2 `c_attn`, "
        "`c_proj`; Llama-style models `q_proj`, `k_proj`, `v_proj`, `o_proj`.",
    )
    max_tokens: StrictInt = Field(
        default=128,
        ge=16,
        le=1024,
        description="Longest training example in tokens: a longer memory is split into "
        "windows of this many tokens (never cut).",
    )
    qa_variants: StrictBool = Field(
        default=True,
        description="Besides each memory's text, train question/answer variants of `fact` "
        "memories (with the model's chat template when it has one).",
    )
    seed: StrictInt = Field(
        default=0, ge=0, le=2**32 - 1, description="Seeds LoRA's init and the example order."
    )

    @model_validator(mode="after")
    def _steps_or_epochs(self) -> TrainingOptions:
        if self.steps is not None and self.epochs is not None:
            raise ValueError("give `steps` or `epochs`, not both")
        return self


class AdapterServed(BaseModel):
    """The adapter version that served a job."""

    name: str
    version: int
    stale: bool = Field(
        default=False, description="Its memories were forgotten since it was trained."
    )


class TrainedMemory(BaseModel):
    id: str
    version: int = Field(description="The version of the memory the adapter was trained on.")


class AdapterVersionPublic(BaseModel):
    """One trained version of an adapter: what it learned from, how, and whether its
    memories were forgotten since."""

    version: int
    created_at: datetime
    job_id: str = Field(description="The consolidation job that trained it.")
    base_model: str = Field(description="The model it adapts; only that model can serve it.")
    namespace: str
    memories: list[TrainedMemory] = Field(description="The memories (and versions) it learned.")
    training: TrainingOptions = Field(
        description="The options applied (steps, alpha and target modules resolved)."
    )
    examples: int = Field(description="Training examples built from the memories.")
    tokens: int = Field(description="Tokens in those examples.")
    steps: int
    loss: list[float] = Field(description="Training loss at each step.")
    train_s: float = Field(description="Seconds spent training (not loading or saving).")
    size_bytes: int = Field(description="Size of the stored adapter weights.")
    stale: bool = Field(default=False, description="Its namespace was forgotten since.")
    stale_at: datetime | None = None
    stale_reason: str | None = None


class AdapterPublic(BaseModel):
    name: str
    latest: int = Field(description="The version a job naming only the adapter gets.")
    stale: bool = Field(description="Whether the latest version is stale.")
    versions: list[AdapterVersionPublic] = Field(description="Newest first.")


class AdapterListResponse(BaseModel):
    items: list[AdapterPublic] = Field(description="The tenant's adapters, by name.")


class AdapterDeleted(BaseModel):
    name: str
    deleted_versions: list[int]
