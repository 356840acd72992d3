"""`python -m gateway`: serve the app with uvicorn on MEMQ_GATEWAY_HOST:MEMQ_GATEWAY_PORT."""

from __future__ import annotations

import uvicorn

from gateway.core.config import GatewaySettings
from gateway.main import create_app
from memq.logs import configure_logging
from memq.settings import load_settings


def main() -> None:
    settings = load_settings(GatewaySettings, "gateway")
    configure_logging(settings, "gateway")
    uvicorn.run(
        create_app(settings),
        host=settings.gateway_host,
        port=settings.gateway_port,
        log_level=settings.log_level.lower(),
        log_config=None,  # keep memq's logging configuration
    )


if __name__ == "__main__":
    main()
