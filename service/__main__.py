"""``python -m service``: serve the app with uvicorn on FACE_HOST:FACE_PORT (default 0.0.0.0:8000)."""

from __future__ import annotations

import uvicorn

from service.config import get_settings
from service.main import create_app


def main() -> None:
    settings = get_settings()
    app = create_app(settings)
    # log_config=None: keep the JSON-lines logging create_app configured; the app writes its own access log.
    # timeout_graceful_shutdown: on SIGTERM, requests in flight get this long to finish.
    uvicorn.run(
        app, host=settings.host, port=settings.port, log_config=None, access_log=False, timeout_graceful_shutdown=10
    )


if __name__ == "__main__":
    main()
