"""``/app/conversations``: the DM threads rules started: the comment, our replies, the person's answers and taps.

Threads come from the conversations service (the same as ``GET /api/conversations``); this page lays each
one out like the Instagram conversation it mirrors.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from replyflow.accounts import repository as accounts_repository
from replyflow.automation import clock
from replyflow.automation import service as rules_service
from replyflow.conversations import service as conversations
from replyflow.conversations.schemas import ConversationOut, MessageOut
from replyflow.web.pages.labels import post_previews, rule_labels
from replyflow.web.rendering import CurrentUser, PageDb, PageRoute, render

router = APIRouter(route_class=PageRoute)

PATH = "/app/conversations"
PAGE_SIZE = 20

FOLLOW_UP_NOT_SENT = {
    "outside_window": "Meta’s 24-hour window had closed, so the follow-up was not sent.",
    "rule_removed": "The rule was deleted, so the follow-up was not sent.",
    "rule_disabled": "The rule is off, so the follow-up was not sent.",
    "account_paused": "The account needs reconnecting, so the follow-up was not sent.",
    "already_sent": "The follow-up had already been sent.",
}


@dataclass(frozen=True)
class Bubble:
    """One line of the conversation as Instagram would show it."""

    side: str  # "out" (the account) or "in" (the person)
    text: str
    note: str | None
    buttons: list[str]
    at: Any


def _buttons(payload: dict[str, Any] | None) -> list[str]:
    """Button and quick-reply titles of a DM as sent (Meta's button template or quick replies)."""
    if not payload:
        return []
    template = (payload.get("attachment") or {}).get("payload") or {}
    titles = [str(b.get("title", "")) for b in template.get("buttons") or [] if isinstance(b, dict)]
    titles += [str(q.get("title", "")) for q in payload.get("quick_replies") or [] if isinstance(q, dict)]
    return [t for t in titles if t]


def _dm_text(message: MessageOut) -> str:
    template = ((message.payload or {}).get("attachment") or {}).get("payload") or {}
    return message.text or str(template.get("text") or "")


def bubbles(conversation: ConversationOut) -> list[Bubble]:
    found: list[Bubble] = []
    for m in sorted(conversation.messages, key=lambda m: m.created_at):
        if m.kind == "public_reply":
            continue  # shown with the comment, where it was posted
        if m.deleted:
            found.append(Bubble("in" if m.direction == "in" else "out", "", "Message deleted", [], m.created_at))
        elif m.kind == "private_reply":
            found.append(Bubble("out", _dm_text(m), None, _buttons(m.payload), m.created_at))
        elif m.kind == "follow_up":
            found.append(Bubble("out", _dm_text(m), "Follow-up", _buttons(m.payload), m.created_at))
        elif m.kind == "echo":
            found.append(Bubble("out", m.text or "", "Sent from the Instagram app", [], m.created_at))
        elif m.kind in ("quick_reply", "postback"):
            title = m.text or str((m.payload or {}).get("title") or "a button")
            found.append(Bubble("in", "", f"Tapped “{title}”", [], m.created_at))
        else:
            attachments = (m.payload or {}).get("attachments") or []
            found.append(Bubble("in", m.text or "", "Sent an attachment" if attachments else None, [], m.created_at))
    return found


@router.get(PATH)
async def conversations_page(
    request: Request,
    db: PageDb,
    signed_in: CurrentUser,
    account_id: str | None = None,
    rule_id: str | None = None,
    media_id: str | None = None,
    replied: str | None = None,
    cursor: str | None = None,
) -> Response:
    workspace_id = signed_in.workspace.id
    accounts = accounts_repository.list_accounts(session=db, workspace_id=workspace_id)
    rules, _ = rules_service.list_rules(session=db, workspace_id=workspace_id, account_id=None, cursor=None, limit=200)
    views, next_cursor = conversations.list_threads(
        session=db,
        workspace_id=workspace_id,
        account_id=(account_id or "")[:64] or None,
        rule_id=(rule_id or "")[:64] or None,
        media_id=(media_id or "")[:128] or None,
        replied=True if replied == "yes" else None,
        cursor=cursor[:300] if cursor else None,
        limit=PAGE_SIZE,
    )
    now = clock.now()
    threads = [ConversationOut.of(view, now=now) for view in views]
    usernames = {a.id: a.username for a in accounts}
    labels = rule_labels(db, workspace_id, (t.rule.id for t in threads if t.rule))
    posts = await post_previews(request, db, accounts, ((t.account_id, t.origin.media_id or "") for t in threads))
    values = {
        "threads": [(t, bubbles(t), usernames.get(t.account_id, "")) for t in threads],
        "rule_labels": labels,
        "posts": posts,
        "next_cursor": next_cursor,
        "accounts": accounts,
        "rules": rules,
        "filters": {
            "account_id": account_id or "",
            "rule_id": rule_id or "",
            "media_id": media_id or "",
            "replied": replied == "yes",
        },
        "not_sent": FOLLOW_UP_NOT_SENT,
    }
    return render(request, "conversations.html", values, signed_in=signed_in)
