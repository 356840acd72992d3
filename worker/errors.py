"""Worker-only errors; branches of `memq.errors.WorkerError`.

WorkerError (memq.errors)
 ├── ModelUnavailable          the model cannot be loaded
 ├── JobCancelled              the job was cancelled while running
 ├── SummaryDidNotConverge     map-reduce would need more rounds than allowed
 ├── TrainingBusy              this process is already training (worker/training.py)
 ├── WebhookAddressRefused     a webhook URL resolving to a refused address (worker/webhooks.py)
 ├── EngineClosed              the engine closed under a request (worker/engine/batched.py)
 └── _Interrupted              a cancelled model call, inside the pipeline (worker/pipeline.py)
Shared branches a job can also fail with: PromptTooLong, MemoryUnavailable,
EngineUnavailable, MemoryRequestRejected (memq.errors).
"""

from __future__ import annotations

from memq.contracts import JobResult
from memq.errors import WorkerError


class ModelUnavailable(WorkerError):
    code = "model_unavailable"


class JobCancelled(WorkerError):
    code = "cancelled"

    def __init__(self, message: str, partial: JobResult | None = None) -> None:
        super().__init__(message)
        self.partial = partial


class SummaryDidNotConverge(WorkerError):
    code = "summary_did_not_converge"
