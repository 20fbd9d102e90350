"""``replyflow demo``: a demo workspace, a connected sandbox account and a rule per post that asks — idempotently.

It goes through the product's real paths: a User token from the emulator (as Graph API Explorer would give it),
the token conversion and save services, and the rule service. When a server is already running on
``public_url`` the emulator inside it is used over HTTP (so both see the same world); otherwise the emulator is
opened in-process from the world file that ``replyflow serve`` loads at start-up.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import httpx
from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.applications import Starlette
from starlette.routing import Mount

from replyflow.accounts import repository as accounts_repository
from replyflow.accounts import service as accounts_service
from replyflow.accounts.crypto import cipher_for
from replyflow.accounts.models import Account
from replyflow.automation import service as rules_service
from replyflow.automation.models import Rule
from replyflow.automation.schemas import RuleCreate
from replyflow.config import Settings
from replyflow.errors import ConfigurationError, UpstreamError
from replyflow.graph.client import GraphClient
from replyflow.graph.types import Media
from replyflow.runtime import Runtime
from replyflow.workspaces import service as workspaces
from replyflow.workspaces import users
from replyflow.workspaces.models import Workspace

DEMO_WORKSPACE = "Demo workspace"
# One rule per demo post that asks for a word: the caption says "Comment ROAST", the rule listens for "roast".
# (word in the caption, rule name, keywords, DM text, button title, button link)
DEMO_RULES: tuple[tuple[str, str, list[str], str, str, str], ...] = (
    (
        "ROAST",
        "Early-bird link for ROAST",
        ["roast"],
        "Hi {first_name|there}! Here is your early-bird link to the new Ethiopia Guji ☕",
        "Open the shop",
        "https://example.com/shop/new-roast",
    ),
    (
        "LINK",
        "Cupping tickets for LINK",
        ["link", "ticket"],
        "Hi {first_name|there}! Here are your free tickets for Saturday’s cupping, 10am 🎟️",
        "Get tickets",
        "https://example.com/cupping",
    ),
    (
        "RECIPE",
        "V60 recipe card for RECIPE",
        ["recipe"],
        "Hi {first_name|there}! Here is the V60 recipe card, ready in under a minute ⏱️",
        "Open the recipe",
        "https://example.com/recipes/v60",
    ),
)


@dataclass(frozen=True)
class DemoSeed:
    workspace_id: str
    api_key: str
    account_id: str
    media_ids: list[str]
    rule_id: str
    email: str
    password: str
    rule_ids: tuple[str, ...] = ()
    server_url: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "workspace_id": self.workspace_id,
            "api_key": self.api_key,
            "account_id": self.account_id,
            "media_ids": self.media_ids,
            "rule_id": self.rule_id,
            "rule_ids": list(self.rule_ids),
        }


def demo_rule(account_id: str, media_id: str, word: str) -> RuleCreate:
    """The demo rule for the post whose caption asks people to comment ``word``."""
    _, name, keywords, text, button, url = next(r for r in DEMO_RULES if r[0] == word)
    return RuleCreate.model_validate(
        {
            "account_id": account_id,
            "name": name,
            "enabled": True,
            "posts": {"mode": "specific", "media_ids": [media_id]},
            "keywords": keywords,
            "match": "contains_any",
            "exclude_keywords": [],
            "public_reply": {"texts": ["Sent you a DM, @{username}!", "Check your inbox 📬"]},
            "private_reply": {"text": text, "buttons": [{"title": button, "url": url}]},
            "once_per_user": True,
        }
    )


def asking_posts(media: list[Media]) -> list[tuple[str, str]]:
    """(word, media id) for each demo rule's post: the newest post whose caption says "Comment WORD"."""
    found: list[tuple[str, str]] = []
    for word, *_ in DEMO_RULES:
        pattern = re.compile(rf"\bcomment\s+{word}\b", re.IGNORECASE)
        post = next((m for m in media if pattern.search(m.caption or "")), None)
        if post is not None:
            found.append((word, post.id))
    return found


def _local_transport(settings: Settings) -> httpx.AsyncBaseTransport:
    """The emulator in this process, mounted where ``settings.graph_base_url`` expects it."""
    from replyflow.sandbox.app import create_sandbox_app
    from replyflow.sandbox.wiring import MOUNT_PATH, open_state

    return httpx.ASGITransport(app=Starlette(routes=[Mount(MOUNT_PATH, create_sandbox_app(open_state(settings)))]))


@dataclass(frozen=True)
class Target:
    """Where the demo is seeded: a running server's emulator over HTTP (``url``), or the world file in-process."""

    url: str | None
    transport: httpx.AsyncBaseTransport | None


def _sandbox_app_id(url: str) -> str | None:
    """The app id of the replyflow sandbox answering at ``url``, or None when nothing (or something else) answers."""
    try:
        resp = httpx.get(f"{url}/sandbox/control/state", timeout=1.5)
        found = resp.json().get("app", {}).get("id") if resp.status_code == 200 else None
    except (httpx.HTTPError, ValueError, AttributeError):
        return None
    return str(found) if found else None


def find_target(settings: Settings) -> Target:
    """The running server that uses this data folder (the address ``replyflow serve`` recorded, then
    ``REPLYFLOW_PUBLIC_URL``), else the emulator's world file in-process (for ``make run``, before it serves).

    A sandbox that answers but belongs to another data folder is refused plainly: seeding it would create an
    account whose posts and comments that server never sees.
    """
    from replyflow.server import recorded_url

    candidates = list(dict.fromkeys(url for url in (recorded_url(settings), settings.public_url) if url))
    for url in candidates:
        app_id = _sandbox_app_id(url)
        if app_id == settings.app_id:
            return Target(url, None)
        if app_id is not None:
            raise ConfigurationError(
                f"The replyflow server at {url} uses another data folder, so the demo would not reach it.",
                hint="Run replyflow demo from the folder where replyflow serve runs (or set REPLYFLOW_DATA_DIR "
                "to its data folder), or stop that server first.",
            )
    return Target(None, _local_transport(settings))


async def _sandbox_user_token(graph_root: str, transport: httpx.AsyncBaseTransport | None) -> str:
    """A User token for the demo creator, as Graph API Explorer would hand one out."""
    async with httpx.AsyncClient(transport=transport, timeout=10) as client:
        resp = await client.post(f"{graph_root}/control/tokens", json={})
        resp.raise_for_status()
        return str(resp.json()["access_token"])


async def seed_demo(
    runtime: Runtime, *, transport: httpx.AsyncBaseTransport | None = None, server_url: str | None = None
) -> DemoSeed:
    """Seed through ``transport``, or over HTTP to the server at ``server_url`` (its own emulator)."""
    settings = runtime.settings
    if server_url is not None:
        settings = settings.model_copy(update={"public_url": server_url})
    if not settings.is_sandbox:
        raise ConfigurationError(
            "replyflow demo only runs in sandbox mode.",
            hint="Unset REPLYFLOW_META_APP_SECRET (or set REPLYFLOW_SANDBOX=1) to try the demo.",
        )
    sandbox_root = settings.graph_base_url.removesuffix("/graph")
    cipher = cipher_for(settings)
    graph = GraphClient.from_settings(settings, transport=transport)
    try:
        with runtime.session() as session:
            workspace = session.scalar(select(Workspace).where(Workspace.name == DEMO_WORKSPACE))
            if workspace is None:
                workspace, issued = workspaces.create_workspace(session=session, name=DEMO_WORKSPACE)
            else:
                issued = workspaces.issue_key(session=session, workspace=workspace, label="demo")
            # A fresh password each run, printed by the caller, like the API key.
            demo_user = users.ensure_demo_user(session=session, workspace=workspace, reset_password=True)
            password = demo_user.password or ""
            workspace_id, api_key = workspace.id, issued.secret

        with runtime.session() as session:
            account = next(iter(accounts_repository.list_accounts(session=session, workspace_id=workspace_id)), None)
        if account is None or account.automation_paused:
            user_token = await _sandbox_user_token(sandbox_root, transport)
            with runtime.session() as session:
                _, saved = await accounts_service.connect_with_user_token(
                    session=session,
                    graph=graph,
                    cipher=cipher,
                    settings=settings,
                    workspace_id=workspace_id,
                    user_access_token=user_token,
                    source="cli",
                )
                if not saved:
                    raise UpstreamError("The sandbox had no ready Page to connect.")
                account_id = saved[0].account.id
        else:
            account_id = account.id

        with runtime.session() as session:
            account = session.get(Account, account_id)
            assert account is not None
            token = accounts_service.account_token(account=account, cipher=cipher)
            ig_id = account.instagram_id
        media = await graph.list_media(ig_id=ig_id, token=token, limit=25)
        media_ids = [m.id for m in media.items]
        if not media_ids:
            raise UpstreamError("The sandbox account has no posts.")

        rule_ids: list[str] = []
        asking = asking_posts(list(media.items))
        if not asking:
            raise UpstreamError("The sandbox account has no post that asks for a comment.")
        with runtime.session() as session:
            for word, media_id in asking:
                rule_id = await _ensure_demo_rule(session, workspace_id, account_id, media_id, word)
                rule_ids.append(rule_id)
    finally:
        await graph.aclose()
    return DemoSeed(
        workspace_id=workspace_id,
        api_key=api_key,
        account_id=account_id,
        media_ids=media_ids,
        rule_id=rule_ids[0],
        email=users.DEMO_EMAIL,
        password=password,
        rule_ids=tuple(rule_ids),
        server_url=server_url,
    )


async def _ensure_demo_rule(session: Session, workspace_id: str, account_id: str, media_id: str, word: str) -> str:
    """The demo rule for ``word``, created unless it already exists (by name, not deleted)."""
    body = demo_rule(account_id, media_id, word)
    rule = session.scalar(
        select(Rule).where(Rule.account_id == account_id, Rule.name == body.name, Rule.deleted_at.is_(None))
    )
    if rule is None:

        async def all_known(_account: Account, _ids: Any) -> set[str]:
            return set()  # the ids come straight from the account's media list

        rule = await rules_service.create_rule(
            session=session, workspace_id=workspace_id, body=body, check_media=all_known, end_read=lambda: None
        )
    return rule.id


def seed_demo_sync(runtime: Runtime) -> DemoSeed:
    import asyncio

    target = find_target(runtime.settings)
    return asyncio.run(seed_demo(runtime, transport=target.transport, server_url=target.url))
