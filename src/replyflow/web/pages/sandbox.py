"""``/app/sandbox`` (sandbox mode only): simulate a comment on a demo post and watch replyflow answer it.

The comment goes through the same path as ``POST /api/sandbox/comments``: the emulator records it and
delivers a signed ``comments`` webhook to our own ingestion endpoint; the panel then shows the runs and
what the emulator ("Meta") received back.
"""

from __future__ import annotations

import re
from typing import Any

from fastapi import APIRouter, Request
from pydantic import ValidationError
from sqlalchemy.orm import Session
from starlette.responses import Response

from replyflow.accounts import repository as accounts_repository
from replyflow.accounts.models import Account
from replyflow.errors import NotFound, ValidationFailed
from replyflow.web.pages.activity import STEP_LABELS, Filters, feed_items
from replyflow.web.pages.rules import load_posts
from replyflow.web.rendering import CurrentUser, PageDb, PageRoute, SubmittedForm, is_htmx, render, settings_of
from replyflow.web.sessions import SignedIn

router = APIRouter(route_class=PageRoute)

PATH = "/app/sandbox"
DEFAULT_USERNAME = "alex.rivera"
RECENT = 6


def _require_sandbox(request: Request) -> Any:
    state = getattr(request.app.state, "sandbox_state", None)
    if not settings_of(request).is_sandbox or state is None:
        raise NotFound("The sandbox is only available in sandbox mode.", hint="It is off because Meta is configured.")
    return state


def _outbox(request: Request, accounts: list[Account]) -> list[dict[str, Any]]:
    """What the emulator received from replyflow for these accounts, newest first, with the DMs' buttons."""
    from replyflow.sandbox.app import outbox_json

    state = _require_sandbox(request)
    ig_ids = {a.instagram_id for a in accounts}
    account_ids = {a.instagram_id: a.id for a in accounts}
    people = {p.igsid: p.username for p in state.world.people.values()}
    found = []
    for entry in state.outbox():
        if entry.ig_account_id not in ig_ids:
            continue
        data = outbox_json(entry)
        data["buttons"] = dm_buttons(entry.body)
        data["to"] = people.get(entry.recipient_id or "", "")
        data["account_id"] = account_ids[entry.ig_account_id]
        found.append(data)
    return found[:RECENT]


def dm_buttons(body: dict[str, Any]) -> list[dict[str, str]]:
    """The buttons and quick replies of a DM as sent: ``{"kind": "url"|"postback"|"quick_reply", "title", "value"}``."""
    message = body.get("message")
    if not isinstance(message, dict):
        return []  # a public reply's body carries its text as ``message``
    attachment = message.get("attachment")
    template = attachment.get("payload") if isinstance(attachment, dict) else None
    template = template if isinstance(template, dict) else {}
    found = []
    for button in template.get("buttons") or []:
        if button.get("type") == "web_url":
            found.append({"kind": "url", "title": str(button.get("title", "")), "value": str(button.get("url", ""))})
        elif button.get("type") == "postback":
            found.append(
                {"kind": "postback", "title": str(button.get("title", "")), "value": str(button.get("payload"))}
            )
    for reply in message.get("quick_replies") or []:
        found.append({"kind": "quick_reply", "title": str(reply.get("title", "")), "value": str(reply.get("payload"))})
    return found


async def _watch_values(request: Request, db: Session, signed_in: SignedIn) -> dict[str, Any]:
    accounts = accounts_repository.list_accounts(session=db, workspace_id=signed_in.workspace.id)
    # The account's own public replies are hidden here as in Activity: they show under "What Meta received".
    items, _ = await feed_items(request, db, signed_in, Filters(), cursor=None, limit=RECENT)
    return {"items": items[:RECENT], "outbox": _outbox(request, accounts), "step_labels": STEP_LABELS}


async def _page(
    request: Request,
    db: Session,
    signed_in: SignedIn,
    *,
    values: dict[str, Any] | None = None,
    status: int = 200,
) -> Response:
    _require_sandbox(request)
    accounts = accounts_repository.list_accounts(session=db, workspace_id=signed_in.workspace.id)
    form = {"account_id": accounts[0].id if accounts else "", "media_id": "", "username": DEFAULT_USERNAME, "text": ""}
    form.update((values or {}).get("form", {}))
    account = next((a for a in accounts if a.id == form["account_id"]), accounts[0] if accounts else None)
    posts = await load_posts(request, db, account) if account is not None else None
    context: dict[str, Any] = {
        "accounts": accounts,
        "account": account,
        "posts": posts,
        "form": form,
        "errors": {},
        "result": None,
        "follower_actions": FOLLOWER_ACTIONS,
        **(await _watch_values(request, db, signed_in)),
    }
    context.update({k: v for k, v in (values or {}).items() if k != "form"})
    return render(request, "sandbox.html", context, signed_in=signed_in, status=status)


@router.get(PATH)
async def sandbox_page(request: Request, db: PageDb, signed_in: CurrentUser) -> Response:
    return await _page(request, db, signed_in)


@router.get(PATH + "/watch")
async def watch(request: Request, db: PageDb, signed_in: CurrentUser) -> Response:
    """The panel's live part (htmx polling): the newest runs and the emulator's outbox."""
    _require_sandbox(request)
    values = await _watch_values(request, db, signed_in)
    return render(request, "partials/sandbox_watch.html", values, signed_in=signed_in)


_FIELDS = {"media_id": "media_id", "text": "text", "username": "username", "account_id": "account_id"}


@router.post(PATH + "/comments")
async def simulate_comment(request: Request, db: PageDb, signed_in: CurrentUser, form: SubmittedForm) -> Response:
    from replyflow.sandbox.wiring import SimulatedComment, post_simulated_comment

    _require_sandbox(request)
    typed = {name: str(form.get(name) or "").strip()[:2300] for name in _FIELDS}
    typed["username"] = typed["username"].lstrip("@")
    errors: dict[str, str] = {}
    try:
        body = SimulatedComment.model_validate(typed)
    except ValidationError as exc:
        for problem in exc.errors():
            name = str(problem["loc"][0]) if problem["loc"] else "text"
            errors.setdefault(name, _friendly(name, problem["type"]))
        return await _page(request, db, signed_in, values={"form": typed, "errors": errors}, status=422)
    account = accounts_repository.get_account(
        session=db, workspace_id=signed_in.workspace.id, account_id=body.account_id
    )
    try:
        comment_id, deliveries = await post_simulated_comment(
            app_state=request.app.state,
            session=db,
            account=account,
            media_id=body.media_id,
            text=body.text,
            username=body.username,
        )
    except ValidationFailed as exc:
        field = exc.field or "text"
        errors[field] = "Choose one of this account’s posts." if field == "media_id" else exc.message
        return await _page(request, db, signed_in, values={"form": typed, "errors": errors}, status=422)
    delivered = bool(deliveries) and all(d.ok for d in deliveries)
    result = {"comment_id": comment_id, "text": body.text, "username": body.username, "delivered": delivered}
    if is_htmx(request):
        return render(request, "partials/sandbox_result.html", {"result": result}, signed_in=signed_in)
    keep = {"account_id": body.account_id, "media_id": body.media_id, "username": body.username, "text": ""}
    return await _page(request, db, signed_in, values={"form": keep, "result": result})


FOLLOWER_ACTIONS = {
    "dm": "Send a DM",
    "story_reply": "Reply to a story",
    "story_mention": "Mention you in their story",
    "live_comment": "Comment on a live broadcast",
    "follow": "Follow the account",
    "unfollow": "Unfollow the account",
    "follow_unknown": "Hide whether they follow (Meta does not answer)",
}
_USERNAME = re.compile(r"^[A-Za-z0-9._]{1,30}$")


@router.post(PATH + "/follower")
async def simulate_follower(request: Request, db: PageDb, signed_in: CurrentUser, form: SubmittedForm) -> Response:
    """The follower's side: DMs, story replies and mentions, live comments, follow or not, and taps on buttons."""
    state = _require_sandbox(request)
    account = accounts_repository.get_account(
        session=db, workspace_id=signed_in.workspace.id, account_id=str(form.get("account_id") or "")[:64]
    )
    username = str(form.get("username") or "").strip().lstrip("@")[:30]
    action = str(form.get("action") or "")
    text = str(form.get("text") or "").strip()[:1000]
    tap = str(form.get("tap") or "")
    if not _USERNAME.match(username):
        return _follower_result(request, signed_in, ok=False, note="Use letters, digits, dots and underscores only.")
    ig_id = account.instagram_id
    if tap:
        kind, _, value = tap.partition(":")
        if kind == "postback":
            state.user_postback(ig_id, payload=value, title=str(form.get("tap_title") or "Tap")[:20], username=username)
            note = f"@{username} tapped the button."
        else:
            state.user_message(
                ig_id, text=str(form.get("tap_title") or "")[:20] or "ok", username=username, quick_reply_payload=value
            )
            note = f"@{username} tapped the quick reply."
    elif action in ("follow", "unfollow", "follow_unknown"):
        follows = {"follow": True, "unfollow": False}.get(action)
        state.set_follows(ig_id, follows=follows, username=username)
        return _follower_result(request, signed_in, ok=True, note=f"@{username}: {FOLLOWER_ACTIONS[action].lower()}.")
    elif action == "story_mention":
        state.user_message(ig_id, text="", username=username, story_mention_url="https://sandbox.test/story.jpg")
        note = f"@{username} mentioned you in their story."
    elif action in ("dm", "story_reply") and text:
        story = "story_demo_1" if action == "story_reply" else None
        state.user_message(ig_id, text=text, username=username, story_id=story)
        note = f"@{username} {'replied to your story' if story else 'wrote'}: “{text}”."
    elif action == "live_comment" and text:
        live = next(
            (m for m in state.world.media.values() if m.ig_account_id == ig_id and m.live_status == "live"), None
        )
        live = live or state.add_media(ig_id, caption="Live roasting session", live=True)
        state.add_comment(live.id, text=text, username=username)
        note = f"@{username} commented “{text}” on your live broadcast."
    else:
        return _follower_result(request, signed_in, ok=False, note="Write the message or comment first.")
    if db.in_transaction():
        db.commit()
    deliveries = await request.app.state.sandbox_sender.flush(state)
    ok = all(d.ok for d in deliveries)
    return _follower_result(
        request, signed_in, ok=ok, note=note if ok else note + " Its webhook did not reach replyflow."
    )


def _follower_result(request: Request, signed_in: SignedIn, *, ok: bool, note: str) -> Response:
    if is_htmx(request):
        return render(request, "partials/follower_result.html", {"ok": ok, "note": note}, signed_in=signed_in)
    from replyflow.web.rendering import redirect

    return redirect(request, PATH, flash=("success" if ok else "error", note))


def _friendly(name: str, kind: str) -> str:
    if name == "username":
        return "Use letters, digits, dots and underscores only (up to 30), like alex.rivera."
    if name == "text":
        return (
            "Write the comment (up to 2,200 characters)."
            if kind != "string_too_long"
            else "A comment may have at most 2,200 characters: shorten it."
        )
    if name == "media_id":
        return "Choose the post to comment on."
    return "Choose an account."
