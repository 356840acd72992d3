"""`python -m worker`: a Celery worker with the pool and concurrency the engine wants."""

from __future__ import annotations

import sys

from worker.celery_app import app, settings


def main() -> None:
    concurrency = settings.concurrency or (
        settings.max_batch_size if settings.engine == "batched" else 1
    )
    argv = [
        "worker",
        "--pool=threads",
        f"--concurrency={concurrency}",
        f"--queues={settings.queue}",
        f"--loglevel={settings.log_level}",
        "--without-gossip",
        "--without-mingle",
        *sys.argv[1:],
    ]
    app.worker_main(argv)


if __name__ == "__main__":
    main()
