"""Link tracking: button URLs become ``{public_url}/r/{code}``; a click is counted and answered with a 302.

Codes are 128 random bits (``secrets.token_urlsafe(16)``), stored with the one URL they stand for. The
redirect target always comes from that row, never from the request, so ``/r/…`` cannot be used as an open
redirect; a code that is unknown, malformed or points at anything but http(s) gets a 404 page.
"""

from __future__ import annotations

import copy
import datetime as dt
import hashlib
import re
import secrets
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from replyflow.automation import clock
from replyflow.automation.models import Run
from replyflow.config import Settings, get_settings
from replyflow.conversations.models import LinkClick, Thread, TrackedLink
from replyflow.conversations.repository import bump_engagement, insert_ignore, thread_for
from replyflow.errors import ValidationFailed
from replyflow.ids import new_id
from replyflow.logging import get_logger

log = get_logger("replyflow.conversations.links")

REDIRECT_PREFIX = "/r/"
_CODE_BYTES = 16
CODE_PATTERN = re.compile(r"^[A-Za-z0-9_-]{22}$")
# Link previews (Meta's crawler fetches every URL in a DM) are not people clicking.
_PREVIEW_AGENTS = re.compile(
    r"facebookexternalhit|facebot|meta-external|twitterbot|slackbot|discordbot|whatsapp|telegrambot|linkedinbot"
    r"|skypeuripreview|googlebot|bingbot|embedly|crawler|spider|preview|\bbot\b",
    re.IGNORECASE,
)


def new_code() -> str:
    return secrets.token_urlsafe(_CODE_BYTES)


def is_redirectable(url: str) -> bool:
    """Only absolute http(s) URLs with a host and no control characters are ever redirected to."""
    if not url or any(ord(char) < 0x21 or ord(char) == 0x7F for char in url):
        return False
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    return parts.scheme.lower() in ("http", "https") and bool(parts.hostname)


def _settings() -> Settings:
    from replyflow import runtime

    try:
        return runtime.current().settings
    except RuntimeError:
        return get_settings()


def public_base(public_url: str | None) -> str:
    """Where ``/r/…`` is reachable: the argument, else this process's configuration."""
    return (public_url or _settings().public_url).rstrip("/")


_LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "::1", "0.0.0.0"})  # noqa: S104  (compared, not bound)
_warned_local = False


def trackable(base: str) -> bool:
    """Whether people on Instagram can reach ``base``: a link to this very machine only works in the sandbox demo.

    Rewriting real DMs to ``http://127.0.0.1:8000/r/…`` would break every link, so without a public
    ``REPLYFLOW_PUBLIC_URL`` links are sent as they are (and not counted) outside sandbox mode.
    """
    global _warned_local
    host = (urlsplit(base).hostname or "").lower()
    if host not in _LOCAL_HOSTS and not host.endswith(".localhost"):
        return True
    if _settings().is_sandbox:
        return True
    if not _warned_local:
        _warned_local = True
        log.warning(
            "link_tracking_off",
            reason="REPLYFLOW_PUBLIC_URL points at this machine; links in DMs are sent untracked",
        )
    return False


def _origin(run_or_thread: Run | Thread, session: Session) -> tuple[str, str, str | None, str | None]:
    """(workspace_id, account_id, run_id, thread_id) of whatever the link is sent in."""
    if isinstance(run_or_thread, Thread):
        return run_or_thread.workspace_id, run_or_thread.account_id, run_or_thread.run_id, run_or_thread.id
    run = run_or_thread
    igsid = run.dm_recipient_id or run.from_id
    thread = thread_for(session=session, account_id=run.account_id, igsid=igsid) if igsid else None
    return run.workspace_id, run.account_id, run.id, thread.id if thread is not None else None


def tracked_url(
    *,
    session: Session,
    run_or_thread: Run | Thread,
    url: str,
    public_url: str | None = None,
    source: str = "private_reply",
) -> str:
    """The short URL that counts clicks on ``url`` sent for this run (or thread); the same one every time."""
    if not is_redirectable(url):
        raise ValidationFailed("Only http(s) links can be tracked.", field="url")
    base = public_base(public_url)
    if not trackable(base):
        return url
    workspace_id, account_id, run_id, thread_id = _origin(run_or_thread, session)
    url_hash = hashlib.sha256(url.encode()).hexdigest()
    existing = _find(session=session, run_id=run_id, source=source, url_hash=url_hash)
    if existing is None:
        now = clock.now()
        for _ in range(3):  # a code collision is astronomically unlikely; a retry costs nothing
            inserted = insert_ignore(
                session,
                TrackedLink,
                {
                    "id": new_id("lnk"),
                    "code": new_code(),
                    "workspace_id": workspace_id,
                    "account_id": account_id,
                    "run_id": run_id,
                    "thread_id": thread_id,
                    "source": source,
                    "url": url,
                    "url_hash": url_hash,
                    "click_count": 0,
                    "created_at": now,
                },
            )
            existing = _find(session=session, run_id=run_id, source=source, url_hash=url_hash)
            if existing is not None:
                if inserted and run_id is not None:
                    bump_engagement(session=session, run_id=run_id, account_id=account_id, at=now, links=1)
                break
        if existing is None:
            raise RuntimeError("could not store a tracked link")
    return f"{base}{REDIRECT_PREFIX}{existing.code}"


def _find(*, session: Session, run_id: str | None, source: str, url_hash: str) -> TrackedLink | None:
    if run_id is None:
        return None
    return session.scalar(
        select(TrackedLink).where(
            TrackedLink.run_id == run_id, TrackedLink.source == source, TrackedLink.url_hash == url_hash
        )
    )


def track_message(
    *,
    session: Session,
    run_or_thread: Run | Thread,
    message: dict[str, Any],
    public_url: str | None = None,
    source: str = "private_reply",
) -> dict[str, Any]:
    """A copy of a Send API ``message`` whose link buttons (and template default actions) go through ``/r/``."""
    tracked = copy.deepcopy(message)
    for holder in _links_of(tracked):
        holder["url"] = tracked_url(
            session=session, run_or_thread=run_or_thread, url=holder["url"], public_url=public_url, source=source
        )
    return tracked


def has_tracked_links(message: dict[str, Any]) -> bool:
    """Whether :func:`track_message` would change ``message`` (it has a link to send through ``/r/``)."""
    return next(_links_of(message), None) is not None


def _links_of(message: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The parts of a Send API ``message`` holding a redirectable ``url``: link buttons, template default actions."""
    payload = (message.get("attachment") or {}).get("payload") or {}
    holders: list[Any] = list(payload.get("buttons") or [])
    for element in payload.get("elements") or []:
        if isinstance(element, dict):
            holders.append(element.get("default_action"))
            holders.extend(element.get("buttons") or [])
    for holder in holders:
        if isinstance(holder, dict) and holder.get("type") == "web_url":
            url = holder.get("url")
            if isinstance(url, str) and is_redirectable(url):
                yield holder


def is_preview(user_agent: str | None) -> bool:
    return bool(user_agent) and _PREVIEW_AGENTS.search(user_agent or "") is not None


def follow(*, session: Session, code: str, user_agent: str | None, now: dt.datetime | None = None) -> str | None:
    """Record a click on ``code`` and return where to send the visitor; None when there is no such link."""
    if not CODE_PATTERN.fullmatch(code):
        return None
    link = session.scalar(select(TrackedLink).where(TrackedLink.code == code))
    if link is None or not is_redirectable(link.url):
        return None
    now = now or clock.now()
    preview = is_preview(user_agent)
    session.add(
        LinkClick(link_id=link.id, account_id=link.account_id, run_id=link.run_id, clicked_at=now, is_preview=preview)
    )
    if preview:
        return link.url
    session.execute(
        update(TrackedLink)
        .where(TrackedLink.id == link.id)
        .values(
            click_count=TrackedLink.click_count + 1,
            last_clicked_at=now,
            first_clicked_at=link.first_clicked_at or now,
        )
    )
    if link.run_id is not None:
        bump_engagement(session=session, run_id=link.run_id, account_id=link.account_id, at=now, clicks=1)
    thread_id = link.thread_id or _thread_of_run(session=session, run_id=link.run_id)
    if thread_id is not None:
        session.execute(update(Thread).where(Thread.id == thread_id).values(click_count=Thread.click_count + 1))
    log.info("link_clicked", link_id=link.id, run_id=link.run_id, thread_id=thread_id)
    return link.url


def _thread_of_run(*, session: Session, run_id: str | None) -> str | None:
    if run_id is None:
        return None
    run = session.get(Run, run_id)
    igsid = (run.dm_recipient_id or run.from_id) if run is not None else None
    if run is None or igsid is None:
        return None
    thread = thread_for(session=session, account_id=run.account_id, igsid=igsid)
    return thread.id if thread is not None else None


def links_of(*, session: Session, threads: list[Thread]) -> dict[str, list[TrackedLink]]:
    """Links sent in each thread: by the thread itself (follow-ups), or by a run whose DM is in it (one query)."""
    from replyflow.conversations.models import ThreadMessage

    found: dict[str, list[TrackedLink]] = {thread.id: [] for thread in threads}
    if not threads:
        return found
    ids = list(found)
    thread_of_run = {
        run_id: thread_id
        for run_id, thread_id in session.execute(
            select(ThreadMessage.run_id, ThreadMessage.thread_id)
            .where(ThreadMessage.thread_id.in_(ids), ThreadMessage.run_id.is_not(None))
            .distinct()
        )
    }
    query = select(TrackedLink).where((TrackedLink.thread_id.in_(ids)) | (TrackedLink.run_id.in_(list(thread_of_run))))
    for link in session.scalars(query.order_by(TrackedLink.created_at, TrackedLink.id)):
        thread_id = link.thread_id if link.thread_id in found else thread_of_run.get(link.run_id or "")
        if thread_id is not None:
            found[thread_id].append(link)
    return found
