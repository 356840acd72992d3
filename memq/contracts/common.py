"""What every domain's contracts share: the strict base model and number types, the error
body every service returns, the visible-text rule and the namespace type.
"""

from __future__ import annotations

import unicodedata
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, Strict

NAMESPACE_PATTERN = r"^[A-Za-z0-9_.:@\-]{1,128}$"

Namespace = Annotated[
    str,
    Field(
        pattern=NAMESPACE_PATTERN,
        description="Memory scope, e.g. `user:42`, `agent:support`, `session:abc` "
        "(1-128 chars of letters, digits and `_ . : @ -`).",
        examples=["user:42"],
    ),
]


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid")


# Numbers are never coerced from strings or booleans on the public API: `"8"` and `true`
# are type errors, not 8 and 1.
StrictInt = Annotated[int, Strict()]
StrictFloat = Annotated[float, Strict(), Field(allow_inf_nan=False)]
StrictBool = Annotated[bool, Strict()]

_INVISIBLE = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zs", "Zl", "Zp", "Mn", "Me"})


def has_visible_text(text: str) -> bool:
    """True when `text` has a character a reader would see (not only whitespace, controls,
    zero-width or combining characters)."""
    return any(unicodedata.category(ch) not in _INVISIBLE for ch in text)


class ErrorResponse(BaseModel):
    """Every 4xx/5xx body of every memq service."""

    error: str = Field(description="Machine-readable error code, e.g. `job_not_found`.")
    message: str = Field(description="What went wrong and what to change.")
    details: list[dict[str, Any]] | None = Field(
        default=None, description="Per-field problems for validation errors."
    )
