from __future__ import annotations

import uvicorn

from gateway.core.config import GatewaySettings
from gateway.main import create_app


def main() -> None:
    settings = GatewaySettings()
    uvicorn.run(
        create_app(settings),
        host=settings.gateway_host,
        port=settings.gateway_port,
        log_level=settings.log_level.lower(),
    )


if __name__ == "__main__":
    main()
