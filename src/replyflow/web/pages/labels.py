"""What pages show instead of raw ids: a post's thumbnail and caption, a rule's name (marked when deleted).

Posts come from Meta (the account's media list, as the post picker reads it), kept for a few minutes per
account and process so a page that refreshes every few seconds does not ask Meta each time.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass

from fastapi import Request
from sqlalchemy import select
from sqlalchemy.orm import Session

from replyflow.accounts.models import Account
from replyflow.automation.models import Rule
from replyflow.web.pages.rules import Post, load_posts

# How long the posts read for one account are reused; thumbnails Meta hands out stay valid far longer.
POSTS_TTL_SECONDS = 300.0
# Pages read further back only when an id is not among the newest posts (each page is one call to Meta).
MAX_PAGES = 3
_STATE_ATTR = "post_previews"


@dataclass(frozen=True)
class RuleLabel:
    name: str
    deleted: bool


def rule_labels(db: Session, workspace_id: str, rule_ids: Iterable[str | None]) -> dict[str, RuleLabel]:
    """Names of these rules, deleted ones included (they are marked, and pages do not link them)."""
    wanted = {rule_id for rule_id in rule_ids if rule_id}
    if not wanted:
        return {}
    rows = db.execute(
        select(Rule.id, Rule.name, Rule.deleted_at).where(Rule.workspace_id == workspace_id, Rule.id.in_(wanted))
    )
    return {rule_id: RuleLabel(name, deleted_at is not None) for rule_id, name, deleted_at in rows}


class _Previews:
    """Per process: account id → (when read, media id → post, every id Meta was asked about)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.by_account: dict[str, tuple[float, dict[str, Post], set[str]]] = {}
        self.newest: dict[str, tuple[float, list[Post]]] = {}


def _previews(request: Request) -> _Previews:
    state = request.app.state
    found = getattr(state, _STATE_ATTR, None)
    if found is None:
        found = _Previews()
        setattr(state, _STATE_ATTR, found)
    assert isinstance(found, _Previews)
    return found


async def post_previews(
    request: Request, db: Session, accounts: Iterable[Account], wanted: Iterable[tuple[str, str]]
) -> dict[str, Post]:
    """media id → Post for the (account id, media id) pairs asked for; ids Meta does not list are left out."""
    by_account: dict[str, set[str]] = {}
    for account_id, media_id in wanted:
        if media_id:
            by_account.setdefault(account_id, set()).add(media_id)
    cache = _previews(request)
    found: dict[str, Post] = {}
    known = {a.id: a for a in accounts}
    now = time.monotonic()
    for account_id, media_ids in by_account.items():
        account = known.get(account_id)
        if account is None:
            continue
        with cache.lock:
            read_at, posts, asked = cache.by_account.get(account_id, (0.0, {}, set()))
        if now - read_at >= POSTS_TTL_SECONDS:
            read_at, posts, asked = now, {}, set()
        if not media_ids <= asked:
            posts = await _read(request, db, account, media_ids, posts)
            asked = asked | media_ids
            with cache.lock:
                cache.by_account[account_id] = (read_at, posts, asked)
        found.update({media_id: posts[media_id] for media_id in media_ids if media_id in posts})
    return found


async def newest_posts(request: Request, db: Session, account: Account) -> list[Post]:
    """The account's newest posts, as the picker's first page lists them (reused for a few minutes)."""
    cache = _previews(request)
    now = time.monotonic()
    with cache.lock:
        read_at, posts = cache.newest.get(account.id, (0.0, []))
    if now - read_at < POSTS_TTL_SECONDS:
        return posts
    page = await load_posts(request, db, account)
    if page.error is None:
        with cache.lock:
            cache.newest[account.id] = (now, page.posts)
    return page.posts


async def _read(
    request: Request, db: Session, account: Account, media_ids: set[str], posts: dict[str, Post]
) -> dict[str, Post]:
    """The account's newest posts, then older pages until every wanted id is found (at most MAX_PAGES)."""
    posts = dict(posts)
    cursor: str | None = None
    for _ in range(MAX_PAGES):
        page = await load_posts(request, db, account, cursor=cursor)
        posts.update({post.id: post for post in page.posts})
        cursor = page.next_cursor
        if page.error is not None or cursor is None or media_ids <= posts.keys():
            break
    return posts
