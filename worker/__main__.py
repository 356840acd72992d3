"""`python -m worker [celery worker options]`: a Celery worker with the pool and
concurrency the engine wants. Extra arguments go to `celery worker` (e.g. `--hostname`; not
`--autoscale`: the thread pool cannot grow, docs/deployment.md)."""

from __future__ import annotations

import sys

from memq.broker import job_queues
from memq.logs import configure_logging
from memq.settings import load_settings
from worker.celery_app import create_celery_app
from worker.config import WorkerSettings


def main() -> None:
    if any(arg.startswith("--autoscale") for arg in sys.argv[1:]):
        print(
            "memq workers run Celery's threads pool, which cannot grow: --autoscale would "
            "crash the worker at its first scale-up. Run more worker processes instead "
            "(memq up --workers N, or `python -m worker` on more hosts; docs/deployment.md).",
            file=sys.stderr,
        )
        raise SystemExit(2)
    settings = load_settings(WorkerSettings, "worker")
    configure_logging(settings, "worker")
    app = create_celery_app(settings)
    app.worker_main(
        [
            "worker",
            "--pool=threads",
            f"--concurrency={settings.celery_concurrency}",
            f"--queues={','.join(job_queues(settings))}",
            f"--loglevel={settings.log_level}",
            "--without-gossip",
            "--without-mingle",
            *sys.argv[1:],
        ]
    )


if __name__ == "__main__":
    main()
