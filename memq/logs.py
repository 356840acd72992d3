"""Logging for every memq process, configured in one place.

`configure_logging(settings, service)` is called once by each entry point (gateway,
memory service, worker, `memq up`). With `MEMQ_LOG_FORMAT=json` every line is one JSON
object; the job id of the request or task being handled rides along in a context
variable (`bind_job_id`), so one job can be followed across gateway, worker and memory
service by grepping its id.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import sys
from collections.abc import Iterator
from importlib.metadata import PackageNotFoundError, version

from pythonjsonlogger.json import JsonFormatter

from memq.settings import CommonSettings

job_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("memq_job_id", default=None)


def package_version() -> str:
    """memq's version from the installed package metadata (one source: pyproject.toml)."""
    try:
        return version("memq")
    except PackageNotFoundError:  # running from a source tree that was never installed
        return "0+unknown"


@contextlib.contextmanager
def bind_job_id(job_id: str | None) -> Iterator[None]:
    """Attach `job_id` to every log record emitted inside the block (this thread/task)."""
    token = job_id_var.set(job_id)
    try:
        yield
    finally:
        job_id_var.reset(token)


class _Context(logging.Filter):
    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def filter(self, record: logging.LogRecord) -> bool:
        record.service = self.service
        if not hasattr(record, "job_id"):
            record.job_id = job_id_var.get()
        return True


def configure_logging(settings: CommonSettings, service: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(_Context(service))
    if settings.log_format == "json":
        handler.setFormatter(
            JsonFormatter(
                "%(asctime)s %(levelname)s %(name)s %(service)s %(job_id)s %(message)s",
                rename_fields={"levelname": "level", "asctime": "time", "name": "logger"},
            )
        )
    else:
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)s [%(service)s] %(name)s: %(message)s")
        )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.log_level)
