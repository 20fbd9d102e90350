"""The sandbox as a real HTTP server on loopback: usable as REPLYFLOW_GRAPH_API_URL, mounted under a prefix."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import socket
import threading
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Mount, Route

from replyflow.config import Settings
from replyflow.graph.client import GraphClient
from replyflow.graph.errors import CommentFinal, OutcomeUnknown
from replyflow.sandbox import SandboxState, WebhookSender, create_sandbox_app, seed_demo_world

pytestmark = pytest.mark.anyio


class ServerThread:
    """uvicorn on a socket bound to a free loopback port, in a thread, stopped by the fixture."""

    def __init__(self, app: Any, sock: socket.socket) -> None:
        self.sock = sock
        self.port: int = sock.getsockname()[1]
        config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=lambda: asyncio.run(self.server.serve(sockets=[sock])), daemon=True)

    def start(self) -> None:
        self.thread.start()
        for _ in range(500):
            if self.server.started:
                return
            threading.Event().wait(0.01)
        raise RuntimeError("uvicorn did not start")

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.sock.close()


@pytest.fixture
def serve() -> Iterator[Callable[[Any], ServerThread]]:
    started: list[ServerThread] = []

    def run(app: Any) -> ServerThread:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        server = ServerThread(app, sock)
        server.start()
        started.append(server)
        return server

    yield run
    for server in started:
        server.stop()


async def test_standalone_server_works_as_graph_api_url(
    serve: Callable[[Any], ServerThread], make_settings: Callable[..., Settings]
) -> None:
    # The emulator signs and checks with the same app credentials our settings hold (sandbox mode).
    probe = make_settings()
    state = SandboxState(app_id=probe.app_id, app_secret=probe.app_secret, require_appsecret_proof=True)
    demo = seed_demo_world(state)
    server = serve(create_sandbox_app(state))
    settings = make_settings(graph_api_url=f"http://127.0.0.1:{server.port}/graph", graph_timeout_seconds=0.5)
    assert settings.graph_base_url == f"http://127.0.0.1:{server.port}/graph"

    async with GraphClient.from_settings(settings) as client:
        pages = await client.list_pages(user_token=demo.user_token)
        page = next(p for p in pages if p.id == demo.page_id)
        assert page.access_token is not None
        token = page.access_token.get_secret_value()
        media = await client.list_media(ig_id=demo.ig_account_id, token=token)
        assert [m.id for m in media.items] == demo.media_ids
        thumb = await httpx.AsyncClient().get(media.items[0].thumbnail_url or "")
        assert thumb.status_code == 200 and thumb.headers["content-type"].startswith("image/svg+xml")

        comment = state.add_comment(demo.media_ids[0], text="ROAST", username="coffee.lena")
        sent = await client.send_private_reply(
            page_id=demo.page_id, comment_id=comment.id, message={"text": "Here you go"}, token=token
        )
        assert sent.recipient_id == comment.from_id
        with pytest.raises(CommentFinal):
            await client.send_private_reply(
                page_id=demo.page_id, comment_id=comment.id, message={"text": "again"}, token=token
            )

        # A real timeout: the sandbox sends, then hangs longer than the client waits.
        late = state.add_comment(demo.media_ids[0], text="ROAST 2", username="marco")
        state.inject_failure("POST /{page-id}/messages", kind="timeout_after_send", hang_seconds=1.5)
        with pytest.raises(OutcomeUnknown) as info:
            await client.send_private_reply(
                page_id=demo.page_id, comment_id=late.id, message={"text": "Here you go"}, token=token
            )
        assert info.value.cause == "timeout"
        assert [e.comment_id for e in state.outbox(kind="private_reply")] == [late.id, comment.id]


async def test_mounted_under_a_prefix_with_webhooks_to_the_same_server(
    serve: Callable[[Any], ServerThread],
) -> None:
    """As in our app: the emulator at /sandbox, our webhook receiver beside it, deliveries over real HTTP."""
    state = SandboxState()
    demo = seed_demo_world(state)
    received: list[tuple[bytes, str]] = []

    async def webhook(request: Request) -> PlainTextResponse:
        received.append((await request.body(), request.headers["x-hub-signature-256"]))
        return PlainTextResponse("EVENT_RECEIVED")

    holder: dict[str, Any] = {}

    async def sandbox_app(scope: Any, receive: Any, send: Any) -> None:
        await holder["app"](scope, receive, send)

    outer = Starlette(
        routes=[Mount("/sandbox", app=sandbox_app), Route("/webhooks/instagram", webhook, methods=["POST"])]
    )
    server = serve(outer)
    public_url = f"http://127.0.0.1:{server.port}"
    holder["app"] = create_sandbox_app(state, webhook_sender=WebhookSender.for_public_url(public_url))
    state.subscribe_page(demo.page_id, fields=["feed"])

    async with httpx.AsyncClient(base_url=public_url) as http:
        created = await http.post(
            "/sandbox/control/comments",
            json={"media_id": demo.media_ids[1], "text": "LINK", "username": "jules.pours"},
        )
        assert created.status_code == 202 and created.json()["webhooks"][0]["ok"] is True
        body, signature = received[0]
        assert signature == "sha256=" + hmac.new(state.app.secret.encode(), body, hashlib.sha256).hexdigest()

        token = state.page_token(user_token=demo.user_token, page_id=demo.page_id)
        profile = await http.get(
            f"/sandbox/graph/v25.0/{demo.ig_account_id}",
            params={"fields": "profile_picture_url"},
            headers={"Authorization": f"Bearer {token}"},
        )
        url = profile.json()["profile_picture_url"]
        assert url == f"{public_url}/sandbox/assets/avatars/{demo.ig_account_id}.svg"
        assert (await http.get(url)).status_code == 200

        dialog = await http.get(
            "/sandbox/v25.0/dialog/oauth",
            params={
                "client_id": state.app.id,
                "redirect_uri": f"{public_url}/cb",
                "state": "s",
                "scope": "pages_show_list",
            },
        )
        assert 'action="/sandbox/v25.0/dialog/oauth"' in dialog.text
