"""How the `memq` command shows jobs, memories and sessions (rich renderables). Text that
comes from users or the model is always a `Text` (never parsed as markup) and never cut."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from rich.console import Group, RenderableType
from rich.panel import Panel
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table
from rich.text import Text

from memq.contracts import (
    JobPublic,
    JobStatus,
    JobSummary,
    MemoryHit,
    MemoryPublic,
    RetrievedMemory,
    SessionPublic,
)
from memq.evaluation.runner import EvalReport

STATUS_STYLE = {
    JobStatus.queued: "yellow",
    JobStatus.running: "cyan",
    JobStatus.succeeded: "green",
    JobStatus.failed: "red",
    JobStatus.cancelled: "magenta",
}


def when(moment: datetime | None) -> str:
    return moment.astimezone().strftime("%Y-%m-%d %H:%M:%S") if moment else ""


def status_text(status: JobStatus) -> Text:
    return Text(status.value, style=STATUS_STYLE[status])


def _number(value: float | None, digits: int = 3) -> str:
    return "" if value is None else f"{value:.{digits}f}"


def retrieved_table(memories: list[RetrievedMemory]) -> Table:
    """The memories a job retrieved, best first: scores, similarity, used or why not."""
    table = Table(title="retrieved memories", title_justify="left", expand=False)
    table.add_column("#", justify="right")
    table.add_column("score", justify="right")
    table.add_column("similarity", justify="right")
    table.add_column("in prompt")
    table.add_column("namespace")
    table.add_column("text", overflow="fold")
    for rank, memory in enumerate(memories, 1):
        used = (
            Text("used", style="green")
            if memory.used
            else Text(f"left out: {memory.left_out or 'no'}", style="dim")
        )
        table.add_row(
            str(rank),
            _number(memory.score),
            _number(memory.similarity),
            used,
            Text(memory.namespace or ""),
            Text(memory.text),
        )
    return table


def numbers(job: JobPublic) -> Table:
    """Token usage and timings of a finished job, one line each."""
    grid = Table.grid(padding=(0, 2))
    if job.result is None:
        return grid
    usage, timings = job.result.usage, job.result.timings
    grid.add_row(
        "tokens",
        f"prompt {usage.prompt_tokens} + context {usage.context_tokens} = input "
        f"{usage.input_tokens}; completion {usage.completion_tokens}; total {usage.total_tokens}",
    )
    parts = [
        ("queue wait", timings.queue_wait_s),
        ("retrieval", timings.retrieval_s),
        ("generation", timings.generation_s),
        ("total", timings.total_s),
    ]
    grid.add_row("timings", " · ".join(f"{k} {v:.3f} s" for k, v in parts if v is not None))
    return grid


def outcome(job: JobPublic) -> RenderableType:
    """What a watched job ended with (its text was already shown as it streamed)."""
    line = Text.assemble("job ", job.id, " ", status_text(job.status))
    parts: list[RenderableType] = [line]
    if job.result is not None:
        line.append(f" · model {job.result.model} · finish {job.result.finish_reason}", style="dim")
        if job.result.memories:
            parts.append(retrieved_table(job.result.memories))
        parts.append(numbers(job))
    if job.error is not None:
        parts.append(Text(f"{job.error.error}: {job.error.message}", style="red"))
    return Group(*parts)


def job_details(job: JobPublic) -> RenderableType:
    """Everything about one job (`memq jobs show`)."""
    head = Table.grid(padding=(0, 2))
    head.add_row("job", Text(job.id))
    head.add_row("type", job.type.value)
    head.add_row("status", status_text(job.status))
    head.add_row("priority", job.request.priority.value)
    for state, moment in job.timestamps.items():
        head.add_row(f"  {state.value}", when(moment))
    if job.attempts:
        head.add_row("attempts", str(job.attempts))
    if job.worker:
        head.add_row("worker", Text(job.worker))
    if job.replay_of:
        head.add_row("replay of", Text(job.replay_of))
    if job.request.metadata:
        head.add_row(
            "metadata", Text(", ".join(f"{k}={v}" for k, v in job.request.metadata.items()))
        )
    parts: list[RenderableType] = [head]
    if job.progress is not None and not job.status.terminal:
        parts.append(Panel(Text(job.progress.text), title=f"so far ({job.progress.tokens} tokens)"))
    if job.result is not None:
        parts.append(Panel(Text(job.result.text), title=f"text · {job.result.model}"))
        if job.result.memories:
            parts.append(retrieved_table(job.result.memories))
        parts.append(numbers(job))
    if job.error is not None:
        parts.append(Text(f"{job.error.error}: {job.error.message}", style="red"))
    return Group(*parts)


def jobs_table(items: list[JobSummary]) -> Table:
    """One row per job; the error, priority and metadata columns only when some job has one."""
    table = Table(expand=False)
    table.add_column("id", no_wrap=True)
    table.add_column("type")
    table.add_column("status")
    table.add_column("created", no_wrap=True)
    errors = any(job.error for job in items)
    priorities = any(job.priority.value != "normal" for job in items)
    labels = any(job.metadata for job in items)
    for name, shown in (("error", errors), ("priority", priorities), ("metadata", labels)):
        if shown:
            table.add_column(name, overflow="fold")
    for job in items:
        row: list[RenderableType] = [
            Text(job.id),
            job.type.value,
            status_text(job.status),
            when(job.created_at),
        ]
        if errors:
            row.append(Text(job.error or ""))
        if priorities:
            row.append(job.priority.value)
        if labels:
            row.append(Text(", ".join(f"{k}={v}" for k, v in job.metadata.items())))
        table.add_row(*row)
    return table


def hits_table(hits: Iterable[MemoryHit]) -> Table:
    table = Table(expand=False)
    table.add_column("#", justify="right")
    table.add_column("score", justify="right")
    table.add_column("similarity", justify="right")
    table.add_column("id", no_wrap=True)
    table.add_column("text", overflow="fold")
    for rank, hit in enumerate(hits, 1):
        table.add_row(
            str(rank), _number(hit.score), _number(hit.similarity), Text(hit.id), Text(hit.text)
        )
    return table


def memories_table(items: Iterable[MemoryPublic]) -> Table:
    table = Table(expand=False)
    table.add_column("id", no_wrap=True)
    table.add_column("kind")
    table.add_column("created", no_wrap=True)
    table.add_column("text", overflow="fold")
    for memory in items:
        table.add_row(
            Text(memory.id), memory.kind.value, when(memory.created_at), Text(memory.text)
        )
    return table


def transcript(session: SessionPublic) -> RenderableType:
    parts: list[RenderableType] = []
    if session.summary is not None:
        parts.append(
            Panel(
                Text(session.summary.text),
                title=f"summary of turns 1-{session.summary.through_turn}",
            )
        )
    for turn in session.turns:
        parts.append(Text.assemble((f"{turn.role.value}> ", "bold"), turn.content))
    return Group(*parts)


def eval_report(report: EvalReport) -> RenderableType:
    """`memq eval`: recall per search mode, answer-contains-fact with memory on and off, and
    the issue's targets next to the measured numbers."""
    fate = "kept" if not report.deleted else "deleted"
    head = Text(
        f"memory evaluation: {report.facts} facts among {report.distractors} distractors in "
        f"{report.namespace} ({fate}); {report.seconds:.0f} s"
    )
    retrieval = Table(title="retrieval (top 5)", title_justify="left", expand=False)
    for column in ("mode", "recall@1", "recall@5"):
        retrieval.add_column(column, justify="left" if column == "mode" else "right")
    for mode, numbers in report.recall.items():
        retrieval.add_row(mode, f"{numbers['recall@1']:.2f}", f"{numbers['recall@5']:.2f}")
    parts: list[RenderableType] = [head, retrieval]
    if report.answers is not None:
        model = f" · model {report.model}" if report.model else ""
        answers = Table(title=f"answers{model}", title_justify="left", expand=False)
        answers.add_column("asked with")
        answers.add_column("answer contains the fact", justify="right")
        for name, rate in report.answers.items():
            answers.add_row(name, f"{rate:.0%}")
        parts.append(answers)
        if report.failed_jobs:
            parts.append(
                Text(f"{report.failed_jobs} jobs did not succeed (scored as misses)", style="red")
            )
    targets = Table(title="targets (reported, not enforced)", title_justify="left", expand=False)
    for column in ("metric", "measured", "target", "met", "note"):
        targets.add_column(column, justify="right" if column == "measured" else "left")
    for row in report.targets:
        met = Text("yes", style="green") if row["met"] else Text("no", style="red")
        targets.add_row(row["metric"], row["shown"], row["target"], met, Text(row["note"]))
    if report.targets:
        parts.append(targets)
    return Group(*parts)


class LiveJob:
    """A running job as rich redraws it: a progress bar of tokens and the text so far."""

    def __init__(self, job_id: str, max_tokens: int | None) -> None:
        self.job_id = job_id
        self.progress = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("tokens"),
            TimeElapsedColumn(),
        )
        self._task = self.progress.add_task(f"job {job_id} queued", total=max_tokens)
        self.text = Text()

    def update(self, status: JobStatus | None, tokens: int, text: str) -> None:
        described = f"job {self.job_id} {status.value}" if status else f"job {self.job_id}"
        self.progress.update(self._task, completed=tokens, description=described)
        self.text = Text(text)

    def __rich__(self) -> RenderableType:
        return Group(self.progress, Panel(self.text, title="text", title_align="left"))
