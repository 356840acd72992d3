"""`memq eval`: measure memory on the running stack (recall per search mode, answers with
memory on vs off), next to issue 10's targets."""

from __future__ import annotations

import contextlib
import re
import uuid
from typing import Annotated

import typer

from memq.cli import views
from memq.cli.common import (
    EXIT_USAGE,
    ApiKey,
    Gateway,
    JsonOpt,
    connect,
    console,
    echo_json,
    err,
    print_error,
)
from memq.contracts import NAMESPACE_PATTERN, SearchMode
from memq.evaluation import runner as evaluation
from memq.evaluation.scoring import MAX_TOKENS, MODES


def _search_modes(values: list[str] | None) -> list[SearchMode]:
    """`--mode hybrid --mode dense` or `--modes hybrid,dense`; all of them by default."""
    if not values:
        return list(MODES)
    found: list[SearchMode] = []
    for name in ",".join(values).replace(",", " ").split():
        try:
            mode = SearchMode(name)
        except ValueError:
            choices = ", ".join(m.value for m in SearchMode)
            raise typer.BadParameter(
                f"{name!r} is not a search mode; choose from {choices}", param_hint="--mode"
            ) from None
        if mode not in found:
            found.append(mode)
    return found


def eval_(
    quick: Annotated[
        bool,
        typer.Option("--quick", help="10 facts among 100 distractors (default: 40 among 400)."),
    ] = False,
    namespace: Annotated[
        str | None,
        typer.Option(
            "--namespace",
            "-n",
            help="Where to store the set; it must be empty (default: eval:<random>).",
        ),
    ] = None,
    mode: Annotated[
        list[str] | None,
        typer.Option(
            "--mode",
            "--modes",
            "-m",
            help="Search modes to measure: dense, keyword, hybrid (repeatable or "
            "comma-separated; default: all).",
        ),
    ] = None,
    with_answers: Annotated[
        bool,
        typer.Option(
            "--answers/--no-answers",
            help="Also ask every question as a chat job, memory on and off.",
        ),
    ] = True,
    max_new_tokens: Annotated[
        int, typer.Option(min=1, max=1024, help="Tokens per answer.")
    ] = MAX_TOKENS,
    keep: Annotated[
        bool, typer.Option("--keep", help="Keep the namespace afterwards (to inspect it).")
    ] = False,
    as_json: JsonOpt = False,
    gateway: Gateway = None,
    api_key: ApiKey = None,
) -> None:
    """Measure memory on the running stack: recall per search mode, answers with memory
    on vs off.

    Stores memq's labelled set (fictional facts, paraphrased questions, distractors) in a
    fresh namespace, searches it, asks each question as a chat job with and without
    memory, and prints the numbers next to issue 10's targets: reported, not enforced
    (exit 0 when it ran). Then deletes the namespace unless --keep."""
    modes = _search_modes(mode)
    name = namespace or f"eval:{uuid.uuid4().hex[:12]}"
    if not re.fullmatch(NAMESPACE_PATTERN, name):
        raise typer.BadParameter(
            f"{name!r} is not a namespace: 1-128 letters, digits and _ . : @ -",
            param_hint="--namespace",
        )
    with connect(gateway, api_key) as client:
        if client.list_memories(name, limit=1).items:
            print_error(
                f"error: namespace {name} already holds memories; memq eval stores its set in "
                "an empty namespace and deletes it afterwards: pick another --namespace"
            )
            raise typer.Exit(EXIT_USAGE)
        spinner = None if as_json or not err.is_terminal else err.status("memq eval")
        with spinner or contextlib.nullcontext():
            try:
                report = evaluation.run(
                    client,
                    name,
                    quick=quick,
                    modes=modes,
                    with_answers=with_answers,
                    max_new_tokens=max_new_tokens,
                    progress=spinner.update if spinner else evaluation.quiet,
                )
            finally:
                if not keep:
                    client.forget(name)
        report.deleted = not keep
    if as_json:
        echo_json(report.to_json())
    else:
        console.print(views.eval_report(report))
