"""Sandbox mode inside our app: the emulator mounted at /sandbox, Graph calls routed to it, /api/sandbox routes.

Graph calls and webhook deliveries go through ``httpx.ASGITransport`` into this same app, so the product code
runs exactly as against Meta (HTTP requests, signed deliveries, the real ingestion path) without a socket.
"""

from __future__ import annotations

from typing import Any, cast

import httpx
from fastapi import APIRouter, FastAPI, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.orm import Session
from starlette.datastructures import State

from replyflow.accounts import repository as accounts
from replyflow.accounts.models import Account
from replyflow.config import Settings
from replyflow.db import SessionDep
from replyflow.errors import NotFound, ValidationFailed
from replyflow.graph_access import APP_STATE_TRANSPORT, set_default_transport
from replyflow.sandbox.app import create_sandbox_app, outbox_json
from replyflow.sandbox.models import OutboxKind
from replyflow.sandbox.state import SandboxState, WebhookDelivery
from replyflow.sandbox.webhooks import WebhookSender
from replyflow.workspaces.auth import CurrentWorkspace

MOUNT_PATH = "/sandbox"
WORLD_FILE = "sandbox-world.json"


def open_state(settings: Settings) -> SandboxState:
    """The emulator's world, kept in the data folder so it survives restarts; seeded with the demo on first use."""
    quota = settings.private_reply_quota
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    return SandboxState.open(
        settings.data_dir / WORLD_FILE,
        app_id=settings.app_id,
        app_secret=settings.app_secret,
        private_reply_quota=(quota.count, quota.seconds),
    )


def install(app: FastAPI) -> None:
    settings: Settings = app.state.settings
    state = open_state(settings)
    sender = WebhookSender(
        target_url=f"{settings.public_url}/webhooks/instagram", transport=httpx.ASGITransport(app=app)
    )
    app.mount(MOUNT_PATH, create_sandbox_app(state, webhook_sender=sender))
    app.state.sandbox_state = state
    app.state.sandbox_sender = sender
    # Request-scoped clients (the API) and the worker's shared client both reach the emulator in-process.
    setattr(app.state, APP_STATE_TRANSPORT, httpx.ASGITransport(app=app))
    set_default_transport(lambda: httpx.ASGITransport(app=app))
    app.include_router(router)

    async def close() -> None:
        set_default_transport(None)
        await sender.aclose()

    app.state.shutdown_hooks.append(close)


router = APIRouter(prefix="/api/sandbox", tags=["sandbox"])


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class SimulatedComment(_In):
    account_id: str
    media_id: str
    text: str = Field(min_length=1, max_length=2200)
    username: str = Field(min_length=1, max_length=30, pattern=r"^[A-Za-z0-9._]+$")
    parent_id: str | None = None


class SimulatedMessage(_In):
    account_id: str
    username: str = Field(min_length=1, max_length=30, pattern=r"^[A-Za-z0-9._]+$")
    text: str | None = Field(default=None, max_length=1000)
    quick_reply_payload: str | None = Field(default=None, max_length=1000)
    postback_payload: str | None = Field(default=None, max_length=1000)
    postback_title: str | None = Field(default=None, max_length=20)
    #: The message replies to this story of the account (a ``story_reply``).
    story_id: str | None = Field(default=None, max_length=128, pattern=r"^[A-Za-z0-9_.-]+$")
    #: The person mentioned the account in their story (a ``story_mention`` attachment; ``text`` may be empty).
    story_mention: bool = False


class SimulatedFollow(_In):
    account_id: str
    username: str = Field(min_length=1, max_length=30, pattern=r"^[A-Za-z0-9._]+$")
    #: True follows, False unfollows, None makes Meta leave ``is_user_follow_business`` out (an unknown answer).
    follows: bool | None = True


class SimulatedLive(_In):
    account_id: str
    caption: str = Field(default="Live now", min_length=1, max_length=200)


def _sandbox(request: Request) -> tuple[SandboxState, WebhookSender]:
    return request.app.state.sandbox_state, request.app.state.sandbox_sender


def _deliveries_json(deliveries: list[WebhookDelivery]) -> list[dict[str, Any]]:
    return [
        {"field": d.field, "ok": d.ok, "status_code": d.status_code, "skipped_reason": d.skipped_reason}
        for d in deliveries
    ]


async def _deliver(request: Request) -> list[dict[str, Any]]:
    state, sender = _sandbox(request)
    return _deliveries_json(await sender.flush(state))


async def post_simulated_comment(
    *,
    app_state: State,
    session: Session,
    account: Account,
    media_id: str,
    text: str,
    username: str,
    parent_id: str | None = None,
) -> tuple[str, list[WebhookDelivery]]:
    """The emulator "posts" a comment on one of ``account``'s posts and delivers the signed webhook through our
    real ingestion path; returns the comment id and the deliveries. Used by the API and the dashboard.

    Raises ``ValidationFailed`` (``field`` is ``media_id`` or ``text``) when the post is not the account's or
    the emulator refuses the comment.
    """
    state: SandboxState = app_state.sandbox_state
    sender: WebhookSender = app_state.sandbox_sender
    media = state.get_media(media_id)
    if media is None or media.ig_account_id != account.instagram_id:
        raise ValidationFailed(
            "This post does not belong to the account.",
            field="media_id",
            hint="Pick one of the ids from GET /api/accounts/{id}/media.",
        )
    try:
        comment = state.add_comment(media_id, text=text, username=username, parent_id=parent_id)
    except (KeyError, ValueError) as exc:
        raise ValidationFailed(f"The sandbox refused this comment: {exc}", field="text") from None
    # Nothing of ours changed, but the webhook comes back into this process: release SQLite's write lock first.
    if session.in_transaction():
        session.commit()
    return comment.id, await sender.flush(state)


@router.post("/comments", status_code=202)
async def simulate_comment(
    body: SimulatedComment, request: Request, session: SessionDep, workspace: CurrentWorkspace
) -> JSONResponse:
    """The emulator "posts" a comment and delivers the signed webhook through our real ingestion path."""
    account = accounts.get_account(session=session, workspace_id=workspace.id, account_id=body.account_id)
    comment_id, deliveries = await post_simulated_comment(
        app_state=request.app.state,
        session=session,
        account=account,
        media_id=body.media_id,
        text=body.text,
        username=body.username,
        parent_id=body.parent_id,
    )
    return JSONResponse({"comment_id": comment_id, "webhook_deliveries": _deliveries_json(deliveries)}, status_code=202)


@router.post("/messages", status_code=202)
async def simulate_message(
    body: SimulatedMessage, request: Request, session: SessionDep, workspace: CurrentWorkspace
) -> JSONResponse:
    """The commenter answers the DM: a text, a quick-reply tap or a button (postback) tap."""
    account = accounts.get_account(session=session, workspace_id=workspace.id, account_id=body.account_id)
    state, _ = _sandbox(request)
    try:
        if body.postback_payload is not None:
            result = state.user_postback(
                account.instagram_id,
                payload=body.postback_payload,
                title=body.postback_title or "Open",
                username=body.username,
            )
        elif body.text or body.quick_reply_payload is not None or body.story_mention:
            result = state.user_message(
                account.instagram_id,
                text=body.text or "",
                username=body.username,
                quick_reply_payload=body.quick_reply_payload,
                story_id=body.story_id,
                story_mention_url="https://sandbox.test/story-mention.jpg" if body.story_mention else None,
            )
        else:
            raise ValidationFailed(
                "Send a text, a quick_reply_payload, a postback_payload or story_mention: true.",
                field="text",
                hint="A DM, a story reply (text with story_id) and a story mention are all messages.",
            )
    except (KeyError, ValueError) as exc:
        raise ValidationFailed(f"The sandbox refused this message: {exc}", field="text") from None
    session.commit()
    deliveries = await _deliver(request)
    return JSONResponse({"result": result, "webhook_deliveries": deliveries}, status_code=202)


@router.post("/follows")
def simulate_follow(
    body: SimulatedFollow, request: Request, session: SessionDep, workspace: CurrentWorkspace
) -> dict[str, Any]:
    """The person follows (or unfollows) the account, as ``is_user_follow_business`` will say."""
    account = accounts.get_account(session=session, workspace_id=workspace.id, account_id=body.account_id)
    state, _ = _sandbox(request)
    person = state.set_follows(account.instagram_id, follows=body.follows, username=body.username)
    return {"igsid": person.igsid, "username": person.username, "follows": body.follows}


@router.post("/live", status_code=201)
def start_live(
    body: SimulatedLive, request: Request, session: SessionDep, workspace: CurrentWorkspace
) -> dict[str, Any]:
    """The account goes live: comments on this broadcast arrive as ``live_comments`` (POST /comments with its id)."""
    account = accounts.get_account(session=session, workspace_id=workspace.id, account_id=body.account_id)
    state, _ = _sandbox(request)
    media = state.add_media(account.instagram_id, caption=body.caption, live=True)
    return {"media_id": media.id, "live": True}


@router.post("/live/{media_id}/end")
def end_live(media_id: str, request: Request, session: SessionDep, workspace: CurrentWorkspace) -> dict[str, Any]:
    """The broadcast ends: Meta then refuses private replies to its comments."""
    state, _ = _sandbox(request)
    media = state.get_media(media_id)
    owned = {a.instagram_id for a in accounts.list_accounts(session=session, workspace_id=workspace.id)}
    if media is None or media.ig_account_id not in owned or media.live_status is None:
        raise NotFound("No live broadcast with this id.", hint="Start one with POST /api/sandbox/live.")
    state.end_live(media_id)
    return {"media_id": media_id, "live": False}


@router.get("/outbox")
def outbox(
    request: Request,
    session: SessionDep,
    workspace: CurrentWorkspace,
    account_id: str | None = None,
    kind: str | None = None,
    limit: int = Query(default=100, ge=1, le=1000),
) -> dict[str, Any]:
    """What the emulator received from us (public replies, private replies, messages), newest first."""
    from sqlalchemy import select

    from replyflow.accounts.models import Account

    query = select(Account.instagram_id).where(Account.workspace_id == workspace.id)
    if account_id is not None:
        query = query.where(Account.id == account_id)
    ig_ids = set(session.scalars(query))
    if account_id is not None and not ig_ids:
        raise NotFound("No connected account with this id.")
    if kind not in (None, "public_reply", "private_reply", "message"):
        raise ValidationFailed("kind must be public_reply, private_reply or message.", field="kind")
    state, _ = _sandbox(request)
    entries = [e for e in state.outbox(kind=cast(OutboxKind | None, kind)) if e.ig_account_id in ig_ids]
    return {"items": [outbox_json(e) for e in entries[:limit]], "next_cursor": None}
