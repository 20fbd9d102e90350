"""Starting uvicorn for ``replyflow serve``: migrations first on SQLite, then the app with its embedded worker."""

from __future__ import annotations

import uvicorn

from replyflow.config import Settings
from replyflow.db import migrate
from replyflow.webhooks.api import WebhookFastPath


def serve(settings: Settings, *, host: str, port: int, run_worker: bool) -> None:
    from replyflow.app import create_app

    if settings.is_sqlite:
        migrate(settings.database_url)
    app = create_app(settings, run_worker=run_worker)
    config = uvicorn.Config(
        WebhookFastPath(app),
        host=host,
        port=port,
        log_config=None,
        access_log=False,
        proxy_headers=True,
        timeout_graceful_shutdown=10,
        server_header=False,
    )
    uvicorn.Server(config).run()
