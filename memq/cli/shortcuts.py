"""The first commands memq had, kept as shortcuts for their longer spellings."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from memq.cli.common import ApiKey, Gateway, JsonOpt
from memq.cli.jobs import jobs_show
from memq.cli.memory import memory_add
from memq.cli.submit import submit_generate, submit_summarize


def remember(
    namespace: str,
    text: str,
    as_json: JsonOpt = False,
    gateway: Gateway = None,
    api_key: ApiKey = None,
) -> None:
    """Add a memory to NAMESPACE (= memq memory add TEXT -n NAMESPACE)."""
    memory_add(text, namespace, as_json=as_json, gateway=gateway, api_key=api_key)


def generate(
    prompt: str,
    namespace: Annotated[str | None, typer.Option(help="Retrieve memories from here.")] = None,
    max_new_tokens: Annotated[int | None, typer.Option(help="Tokens to generate.")] = None,
    wait: Annotated[bool, typer.Option(help="Follow the job to its end.")] = True,
    as_json: JsonOpt = False,
    gateway: Gateway = None,
    api_key: ApiKey = None,
) -> None:
    """Generate, following the job live (= memq submit generate PROMPT -n NS --watch)."""
    submit_generate(
        prompt,
        namespace=[namespace] if namespace else None,
        max_new_tokens=max_new_tokens,
        watch=wait,
        as_json=as_json,
        gateway=gateway,
        api_key=api_key,
    )


def summarize(
    file: Path,
    wait: Annotated[bool, typer.Option(help="Follow the job to its end.")] = True,
    as_json: JsonOpt = False,
    gateway: Gateway = None,
    api_key: ApiKey = None,
) -> None:
    """Summarize FILE, following the job live (= memq submit summarize FILE --watch)."""
    submit_summarize(file, watch=wait, as_json=as_json, gateway=gateway, api_key=api_key)


def status(
    job_id: str, as_json: JsonOpt = False, gateway: Gateway = None, api_key: ApiKey = None
) -> None:
    """Show a job (= memq jobs show JOB_ID)."""
    jobs_show(job_id, as_json=as_json, gateway=gateway, api_key=api_key)
