"""Worker exception tree.

WorkerError
 ├── ModelUnavailable      the model cannot be loaded
 ├── PromptTooLong         user text + max_new_tokens cannot fit the context window
 ├── MemoryUnavailable     the memory service did not answer (retried first)
 └── JobCancelled          the job was cancelled while running
"""

from __future__ import annotations


class WorkerError(Exception):
    code = "worker_error"


class ModelUnavailable(WorkerError):
    code = "model_unavailable"


class PromptTooLong(WorkerError):
    code = "prompt_too_long"


class MemoryUnavailable(WorkerError):
    code = "memory_unavailable"


class JobCancelled(WorkerError):
    code = "cancelled"
