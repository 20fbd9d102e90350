"""Starting uvicorn for ``replyflow serve``: migrations first on SQLite, then the app with its embedded worker."""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

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
    address = record_address(settings, host=host, port=port)

    async def forget() -> None:
        # uvicorn re-raises SIGTERM after its shutdown, so the ``finally`` below may never run; the app's
        # shutdown does.
        forget_address(address)

    app.state.shutdown_hooks.append(forget)
    try:
        uvicorn.Server(config).run()
    finally:
        forget_address(address)


#: In the data folder while ``replyflow serve`` runs: where it listens, so ``replyflow demo`` (and other
#: commands run from the same folder) find it whatever ``--port`` it was given.
ADDRESS_FILE = "server.json"


def local_url(host: str, port: int) -> str:
    """A URL this machine reaches the server at (a wildcard host is reached through the loopback)."""
    reach = "127.0.0.1" if host in ("", "0.0.0.0") else ("[::1]" if host == "::" else host)  # noqa: S104
    if ":" in reach and not reach.startswith("["):
        reach = f"[{reach}]"
    return f"http://{reach}:{port}"


def record_address(settings: Settings, *, host: str, port: int) -> Path | None:
    path = settings.data_dir / ADDRESS_FILE
    try:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"url": local_url(host, port), "pid": os.getpid()}))
    except OSError:
        return None  # a read-only data folder only costs the CLI's convenience
    return path


def forget_address(path: Path | None) -> None:
    if path is None:
        return
    with contextlib.suppress(OSError, ValueError):
        if json.loads(path.read_text()).get("pid") == os.getpid():
            path.unlink()


def recorded_url(settings: Settings) -> str | None:
    """The address a ``replyflow serve`` using this data folder recorded, if any (it may have died since)."""
    try:
        found = json.loads((settings.data_dir / ADDRESS_FILE).read_text()).get("url")
    except (OSError, ValueError, AttributeError):
        return None
    return found if isinstance(found, str) and found.startswith("http") else None
