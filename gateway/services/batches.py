"""Batches: create one from an uploaded JSONL file, read, list and cancel them, and the
background work that moves every unfinished batch along (see memq.store.batches for the states
and why every line ends up in exactly one file exactly once).

The work on one batch (creating its jobs, cancelling them, expiring it, writing the lines of
jobs whose end went unrecorded, finalizing its files) is done under the batch's lease by
whichever gateway holds it: the one that created or cancelled it does it at once, and every
gateway's sweeper looks at all unfinished batches each `MEMQ_BATCH_SWEEP_INTERVAL_S`, so a
batch left half-created by a gateway that died is taken up by the next sweep (the creation
is idempotent: line jobs have fixed ids and only missing ones are made).
"""

from __future__ import annotations

import copy
import logging
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import redis
from celery import Celery
from pydantic import TypeAdapter
from tokenizers import Tokenizer

from gateway.core.config import GatewaySettings
from gateway.services.files import FileNotFound, FileService
from gateway.services.jobs import JobService
from gateway.services.openai import MODEL_ALIASES, ModelNotFound
from memq.batch_format import (
    ERROR,
    OUTPUT,
    JobBuilder,
    PlannedLine,
    iter_file,
    line_job_id,
    new_batch_id,
    plan_input,
)
from memq.broker import queue_name, send_jobs
from memq.contracts import (
    BATCH_ID_KEY,
    CUSTOM_ID_KEY,
    BatchCreate,
    BatchEndpoint,
    BatchError,
    BatchListResponse,
    BatchPublic,
    BatchStatus,
    FilePurpose,
    JobRequest,
    ModelInfo,
    Priority,
    completion_window_seconds,
)
from memq.contracts.openai import ChatCompletionRequest, CompletionRequest
from memq.errors import GatewayError, InputNotJsonl, InvalidInput, NotFound
from memq.store.batches import BatchMeta, BatchState, BatchStore
from memq.store.files import FileRecord
from memq.store.jobs import JobStore, utcnow

log = logging.getLogger("memq.gateway.batches")

CHUNK_LINES = 500
"""Line jobs created (one Redis round trip) and sent (one pipelined flush) together."""
ORPHAN_GRACE_S = 5.0
"""A job that ended less than this ago is left to the process that ended it, whose terminal
hook writes its line; older ones without a line lost that process."""
MAX_USER_LABELS = 30
"""A line's own job metadata labels: the job holds 32, the batch adds two."""
_job_adapter: TypeAdapter[JobRequest] = TypeAdapter(JobRequest)


class _Pinned:
    """A `TokenCounter` that answers with the model it was given."""

    def __init__(self, served: tuple[Tokenizer, ModelInfo] | None) -> None:
        self.served = served

    def model(self) -> tuple[Tokenizer, ModelInfo] | None:
        return self.served


class BatchNotFound(NotFound):
    code = "batch_not_found"


class BatchFinished(GatewayError):
    status_code = 409
    code = "batch_finished"


class Abandoned(GatewayError):
    """This gateway stops working on a batch (shutting down, or its lease was lost); the
    next sweep, here or in another gateway, takes it up again. Never reaches a client."""

    code = "batch_abandoned"


class BatchService:
    def __init__(
        self,
        store: JobStore,
        batches: BatchStore,
        files: FileService,
        jobs: JobService,
        celery: Celery,
        settings: GatewaySettings,
    ) -> None:
        self.store = store
        self.batches = batches
        self.files = files
        self.jobs = jobs
        self.celery = celery
        self.settings = settings
        self.owner = f"gateway:{uuid.uuid4().hex[:12]}"
        self._pool = ThreadPoolExecutor(2, thread_name_prefix="memq-batch")
        self._busy: set[tuple[str, str]] = set()
        self._lock = threading.Lock()
        self._reconciled: dict[tuple[str, str], float] = {}
        self._stop = threading.Event()
        self._sweeper = threading.Thread(target=self._sweep_loop, name="memq-batches", daemon=True)

    def start(self) -> None:
        self._sweeper.start()

    def close(self) -> None:
        self._stop.set()
        if self._sweeper.is_alive():
            self._sweeper.join(5)
        self._pool.shutdown(wait=True, cancel_futures=True)

    # the API ------------------------------------------------------------------------------
    def create(self, tenant: str, body: BatchCreate) -> BatchPublic:
        """Record a batch (`validating`) and start creating its line jobs."""
        source = self.files.record(tenant, body.input_file_id)
        if source.purpose != FilePurpose.batch:
            raise InvalidInput(
                f"file {source.id} has purpose {source.purpose.value!r}; a batch reads a file "
                "uploaded with purpose `batch`"
            )
        now = int(time.time())
        info = self.store.model_info()
        meta = BatchMeta(
            id=new_batch_id(),
            tenant=tenant,
            endpoint=body.endpoint,
            input_file_id=body.input_file_id,
            completion_window=body.completion_window,
            created_at=now,
            expires_at=now + completion_window_seconds(body.completion_window),
            metadata=body.metadata,
            output_file_id=f"file-{uuid.uuid4().hex}",
            error_file_id=f"file-{uuid.uuid4().hex}",
            model=info.name if info else None,
        )
        self.batches.create(meta)
        log.info("batch %s created from file %s (%s)", meta.id, source.id, body.endpoint.value)
        self.kick(tenant, meta.id)
        return self.get(tenant, meta.id)

    def state(self, tenant: str, batch_id: str) -> BatchState:
        state = self.batches.get(tenant, batch_id)
        if state is None:
            raise BatchNotFound(f"no batch {batch_id!r} for this API key's tenant")
        return state

    def get(self, tenant: str, batch_id: str) -> BatchPublic:
        state = self.state(tenant, batch_id)
        if state.status == BatchStatus.finalizing:
            self.kick(tenant, batch_id)
        return state.public()

    def list_batches(self, tenant: str, *, limit: int, after: str | None) -> BatchListResponse:
        found, more = self.batches.page(tenant, limit=limit, after=after)
        data = [s.public() for s in found]
        return BatchListResponse(
            data=data,
            first_id=data[0].id if data else None,
            last_id=data[-1].id if data else None,
            has_more=more,
        )

    def cancel(self, tenant: str, batch_id: str) -> BatchPublic:
        """Queued lines are cancelled (they go to the error file as `batch_cancelled`),
        running ones finish; what completed stays in the output file."""
        state = self.state(tenant, batch_id)
        if state.status in (BatchStatus.cancelling, BatchStatus.cancelled):
            return state.public()
        if state.status not in (BatchStatus.validating, BatchStatus.in_progress):
            raise BatchFinished(
                f"batch {batch_id} is {state.status.value}; only a validating or in_progress "
                "batch can be cancelled"
            )
        self.batches.end_early(tenant, batch_id, "cancelled")
        log.info("batch %s cancelling", batch_id)
        self.kick(tenant, batch_id)
        return self.state(tenant, batch_id).public()

    # the work -----------------------------------------------------------------------------
    def kick(self, tenant: str, batch_id: str) -> None:
        """Work on the batch soon, in the background (once at a time in this process)."""
        key = (tenant, batch_id)
        with self._lock:
            if key in self._busy or self._stop.is_set():
                return
            self._busy.add(key)
        try:
            self._pool.submit(self._advance_logged, tenant, batch_id)
        except RuntimeError:  # shutting down
            with self._lock:
                self._busy.discard(key)

    def _advance_logged(self, tenant: str, batch_id: str) -> None:
        try:
            self.advance(tenant, batch_id)
        except Abandoned as exc:
            log.info("batch %s: left for the next sweep (%s)", batch_id, exc)
        except redis.RedisError as exc:
            log.warning("batch %s: redis unavailable (%s); the next sweep retries", batch_id, exc)
        except Exception:
            log.exception("batch %s: work failed; the next sweep retries", batch_id)
        finally:
            with self._lock:
                self._busy.discard((tenant, batch_id))

    def advance(self, tenant: str, batch_id: str) -> None:
        """Do what the batch's state asks, under its lease (skipped while another gateway
        holds it)."""
        if not self.batches.take_lease(tenant, batch_id, self.owner):
            return
        try:
            state = self.batches.get(tenant, batch_id)
            if state is None:
                self.batches.clean_up(tenant, batch_id)
                return
            if not state.enqueued and state.status in (
                BatchStatus.validating,
                BatchStatus.cancelling,
            ):
                self._create_jobs(state)
                state = self.state(tenant, batch_id)
            if state.status == BatchStatus.cancelling:
                self._cancel_jobs(state, running=False)
            elif state.status == BatchStatus.in_progress and time.time() >= state.meta.expires_at:
                self.batches.end_early(tenant, batch_id, "expired")
                log.info("batch %s: completion window over, expiring", batch_id)
                self._cancel_jobs(state, running=True)
            if state.status in (BatchStatus.in_progress, BatchStatus.cancelling):
                self._reconcile(state)
            state = self.state(tenant, batch_id)
            if state.status == BatchStatus.finalizing:
                self._finalize(state)
            elif state.status.terminal:
                self.batches.clean_up(tenant, batch_id)
                self._reconciled.pop((tenant, batch_id), None)
        finally:
            self.batches.release_lease(tenant, batch_id, self.owner)

    def _check_in(self, tenant: str, batch_id: str) -> None:
        if self._stop.is_set():
            raise Abandoned("the gateway is shutting down")
        if not self.batches.renew_lease(tenant, batch_id, self.owner):
            raise Abandoned("its lease lapsed")

    def _create_jobs(self, state: BatchState) -> None:
        """Read and validate the input file, write the refused lines, create and send the
        line jobs in chunks; stop creating when the batch is cancelled meanwhile."""
        meta = state.meta
        tenant, batch_id = meta.tenant, meta.id
        try:
            data = self.files.read_all(tenant, meta.input_file_id)
            plan = plan_input(
                data,
                meta.endpoint,
                self._builder(meta.endpoint, batch_id),
                max_lines=self.settings.batch_max_lines,
            )
        except FileNotFound:
            self._fail(
                state,
                "input_file_missing",
                "the input file was deleted before the batch read it; upload it again and "
                "create a new batch",
            )
            return
        except InputNotJsonl as exc:
            self._fail(state, exc.code, exc.message, exc.line)
            return
        for file_id, name in ((meta.output_file_id, "output"), (meta.error_file_id, "error")):
            record = FileRecord(
                id=file_id,
                bytes=0,
                created_at=int(time.time()),
                filename=f"{batch_id}_{name}.jsonl",
                purpose=FilePurpose.batch_output,
                tenant=tenant,
                batch_id=batch_id,
                stored=False,
            )
            self.files.records.put(record, only_new=True)
        self.batches.planned(tenant, batch_id, plan.total, with_files=True)
        for refused in plan.refused:
            self.batches.write_refused(tenant, batch_id, refused)
        queue = queue_name(self.settings, Priority.low)
        pending_key = self.batches.keys.batch_pending(tenant, batch_id)
        for start in range(0, len(plan.lines), CHUNK_LINES):
            self._check_in(tenant, batch_id)
            chunk = plan.lines[start : start + CHUNK_LINES]
            if self.state(tenant, batch_id).status == BatchStatus.cancelling:
                self._cancel_uncreated(tenant, batch_id, plan.lines[start:])
                break
            jobs = [(line_job_id(batch_id, p.number), p.job, str(p.number)) for p in chunk]
            created = self.store.create_many(tenant, jobs, group=pending_key)
            # A message lost here (the broker went away) is sent again by the reconciler:
            # the records exist.
            send_jobs(self.celery, tenant, ((job_id, queue) for job_id in created), retry=False)
        status = self.batches.enqueued(tenant, batch_id)
        log.info(
            "batch %s: %d lines, %d refused up front, %d jobs queued (%s)",
            batch_id,
            plan.total,
            len(plan.refused),
            len(plan.lines),
            status.value if status else "gone",
        )

    def _cancel_uncreated(self, tenant: str, batch_id: str, remaining: list[PlannedLine]) -> None:
        """Lines whose jobs were not created when the batch was cancelled: their error
        lines are written directly (those whose jobs exist are cancelled as jobs)."""
        pipe = self.store.r.pipeline(transaction=False)
        for line in remaining:
            pipe.exists(self.store.keys.job(tenant, line_job_id(batch_id, line.number)))
        for line, exists in zip(remaining, pipe.execute(), strict=True):
            if not exists:
                self.batches.write_cancelled(tenant, batch_id, line, "batch_cancelled")

    def _builder(self, endpoint: BatchEndpoint, batch_id: str) -> JobBuilder:
        info = self.store.model_info()
        served = {info.name, *MODEL_ALIASES} if info else None
        # The job API's own budget check, with the served model read once per batch instead
        # of once per line.
        jobs = copy.copy(self.jobs)
        jobs.tokens = _Pinned(self.jobs.tokens.model())  # type: ignore[assignment]

        def build(body: dict[str, Any], custom_id: str) -> JobRequest:
            if body.get("priority", Priority.low.value) != Priority.low.value:
                raise ValueError(
                    "batch lines run at priority `low` (interactive jobs go first); remove "
                    "`priority` from the body"
                )
            job: JobRequest
            if endpoint == BatchEndpoint.jobs:
                job = _job_adapter.validate_python(body)
            else:
                openai: CompletionRequest | ChatCompletionRequest
                if endpoint == BatchEndpoint.completions:
                    openai = CompletionRequest.model_validate(body)
                else:
                    openai = ChatCompletionRequest.model_validate(body)
                if openai.stream:
                    raise ValueError("`stream` has no meaning in a batch line; remove it")
                if served is not None and openai.model not in served:
                    raise ModelNotFound(
                        f"the model {openai.model[:80]!r} is not served here; available: "
                        f"{', '.join(sorted(served))}"
                    )
                job = openai.to_job()
            labels = dict(job.metadata)
            reserved = {BATCH_ID_KEY, CUSTOM_ID_KEY} & labels.keys()
            if reserved:
                raise ValueError(
                    f"metadata key(s) {sorted(reserved)} are set by the batch; rename them"
                )
            if len(labels) > MAX_USER_LABELS:
                raise ValueError(
                    f"metadata has {len(labels)} labels; a batch line may have "
                    f"{MAX_USER_LABELS} (the batch adds `{BATCH_ID_KEY}` and `{CUSTOM_ID_KEY}`)"
                )
            labels[BATCH_ID_KEY] = batch_id
            labels[CUSTOM_ID_KEY] = custom_id
            job = job.model_copy(update={"priority": Priority.low, "metadata": labels})
            jobs.validate(job)
            return job

        return build

    def _fail(self, state: BatchState, code: str, message: str, line: int | None = None) -> None:
        error = BatchError(code=code, message=message, line=line)
        self.batches.fail(state.meta.tenant, state.meta.id, [error])
        log.info("batch %s failed in validation: %s", state.meta.id, message)

    def _cancel_jobs(self, state: BatchState, *, running: bool) -> None:
        """Cancel the batch's queued jobs (and running ones too when `running`); each
        cancellation writes its line through the terminal hook."""
        tenant, batch_id = state.meta.tenant, state.meta.id
        cancelled = 0
        for n, job_id in enumerate(self.batches.pending(tenant, batch_id)):
            if n % 200 == 0:
                self._check_in(tenant, batch_id)
            if running:
                done = self.store.cancel(tenant, job_id) is not None
            else:
                done = self.store.cancel_queued(tenant, job_id) is not None
            cancelled += done
        if cancelled:
            log.info("batch %s: %d line jobs cancelled", batch_id, cancelled)

    def _reconcile(self, state: BatchState) -> None:
        """Write the lines of jobs that ended without their line (the process that ended
        them died in between), at most every MEMQ_BATCH_RECONCILE_S."""
        tenant, batch_id = state.meta.tenant, state.meta.id
        now = time.monotonic()
        last = self._reconciled.get((tenant, batch_id))
        if last is not None and now - last < self.settings.batch_reconcile_s:
            return
        self._reconciled[(tenant, batch_id)] = now
        pending = list(self.batches.pending(tenant, batch_id))
        statuses = self.store.statuses([(tenant, job_id) for job_id in pending])
        for job_id, status in zip(pending, statuses, strict=True):
            if status is not None and not status.terminal:
                continue
            record = self.store.get(tenant, job_id)
            if record is None:
                if self.batches.write_lost_line(tenant, batch_id, job_id):
                    log.warning("batch %s: job %s is gone; its line is an error", batch_id, job_id)
                continue
            ended = record.timestamps.get(record.status)
            if ended is not None and (utcnow() - ended).total_seconds() < ORPHAN_GRACE_S:
                continue  # the process that ended it is writing its line right now
            if record.status.terminal and self.batches.write_job_line(
                record, self.settings.gateway_url, endpoint=state.meta.endpoint
            ):
                log.warning(
                    "batch %s: job %s had ended (%s) without its line; written now",
                    batch_id,
                    job_id,
                    record.status.value,
                )

    def _finalize(self, state: BatchState) -> None:
        """Write the output and error files from the batch's lines, then move the batch to
        its outcome and drop the lines."""
        meta = state.meta
        tenant, batch_id = meta.tenant, meta.id
        for file_id, kind in ((meta.output_file_id, OUTPUT), (meta.error_file_id, ERROR)):
            lines = self.batches.lines(tenant, batch_id, kind)
            size = self.files.storage.write(file_id, iter_file(lines))
            record = self.files.records.get(tenant, file_id)
            if record is not None:
                record.bytes, record.stored = size, True
                self.files.records.put(record)
        outcome = BatchStatus(state.outcome) if state.outcome else BatchStatus.completed
        self.batches.finish(tenant, batch_id, outcome)
        self.batches.clean_up(tenant, batch_id)
        self._reconciled.pop((tenant, batch_id), None)
        log.info(
            "batch %s %s: %d completed, %d failed",
            batch_id,
            outcome.value,
            state.completed,
            state.failed,
        )

    # the sweeper --------------------------------------------------------------------------
    def sweep(self) -> None:
        """Kick every unfinished batch once."""
        for tenant, batch_id in self.batches.active():
            self.kick(tenant, batch_id)

    def _sweep_loop(self) -> None:
        while not self._stop.wait(self.settings.batch_sweep_interval_s):
            try:
                self.sweep()
            except redis.RedisError as exc:
                log.warning("batch sweep: redis unavailable (%s); retrying", exc)
            except Exception:
                log.exception("batch sweep failed; retrying")
