"""`python -m memory_service`: serve the app with uvicorn on MEMQ_MEMORY_HOST:MEMQ_MEMORY_PORT."""

from __future__ import annotations

import uvicorn

from memory_service.core.config import MemorySettings
from memory_service.main import create_app
from memq.logs import configure_logging


def main() -> None:
    settings = MemorySettings()
    configure_logging(settings, "memory")
    uvicorn.run(
        create_app(settings),
        host=settings.memory_host,
        port=settings.memory_port,
        log_config=None,  # keep the handlers configure_logging installed
        log_level=settings.log_level.lower(),
    )


if __name__ == "__main__":
    main()
