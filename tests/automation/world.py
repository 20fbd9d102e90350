"""A small world for engine tests: the sandbox (Meta), our database with one connected account, and the engine.

Graph calls go to the sandbox in-process (``httpx.ASGITransport``) through a ``GraphRunner`` like a worker's.
Webhooks the sandbox queues travel the real ingestion path (stored delivery → inbox event → intake). Time is
the sandbox's frozen clock, shared with intake and the engine, so tests move time instead of sleeping.
"""

from __future__ import annotations

import datetime as dt
import json
import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
from sqlalchemy import func, select

from replyflow.accounts.crypto import cipher_for
from replyflow.accounts.models import Account
from replyflow.automation.engine import Engine, EngineOptions, install_engine
from replyflow.automation.graph_calls import AccountGraph
from replyflow.automation.matching import PostsMode
from replyflow.automation.models import ACTIVE_STATUSES, Rule, Run, RunStep
from replyflow.automation.quota import DatabaseQuotaGate, QuotaGate
from replyflow.automation.schemas import RuleSpec
from replyflow.graph.client import GraphClient
from replyflow.graph.runner import GraphRunner
from replyflow.runtime import Runtime
from replyflow.sandbox import SandboxState, create_sandbox_app
from replyflow.sandbox.models import OutboxEntry
from replyflow.workspaces import service as workspaces
from tests.webhooks.helpers import ingest

SCOPES = [
    "pages_show_list",
    "pages_read_engagement",
    "pages_manage_metadata",
    "pages_messaging",
    "instagram_basic",
    "instagram_manage_comments",
    "instagram_manage_messages",
]
START = dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.UTC)


def sandbox_state(*, app_id: str, app_secret: str, quota: tuple[int, int] = (750, 3600)) -> SandboxState:
    state = SandboxState(app_id=app_id, app_secret=app_secret, private_reply_quota=quota)
    state.clock.freeze(START)
    return state


@dataclass
class SandboxAccount:
    page_id: str | None
    ig_id: str
    username: str
    page_token: str  # the account's token: a Page token, or an Instagram User token (Instagram Login)
    media_ids: list[str]
    login: str = "facebook"
    app_scoped_id: str | None = None


def seed_instagram_login_account(
    state: SandboxState, *, username: str = "ceramics.test", posts: int = 3
) -> SandboxAccount:
    """An Instagram professional account with no Page, connected through Instagram Login (a 60-day token)."""
    ig = state.add_instagram_account(None, username=username)
    media_ids = [
        state.add_media(ig.id, caption=f"Post {i}", timestamp=state.now() - dt.timedelta(days=posts - i)).id
        for i in range(posts)
    ]
    token = state.issue_instagram_token(ig.id, long_lived=True)
    state.set_app_subscription(object="instagram", fields=["comments", "live_comments", "messages"])
    state.subscribe_instagram(ig.id, fields=["comments", "live_comments", "messages", "messaging_postbacks"])
    return SandboxAccount(None, ig.id, username, token, media_ids, login="instagram", app_scoped_id=ig.app_scoped_id)


def seed_sandbox_account(state: SandboxState, *, username: str = "roastery.test", posts: int = 3) -> SandboxAccount:
    user = state.add_user(f"Owner of {username}", scopes=SCOPES)
    page = state.add_page(f"Page {username}", owner_user_id=user.id)
    ig = state.add_instagram_account(page.id, username=username)
    media_ids = [
        state.add_media(ig.id, caption=f"Post {i}", timestamp=state.now() - dt.timedelta(days=posts - i)).id
        for i in range(posts)
    ]
    user_token = state.issue_user_token(user.id, scopes=SCOPES, long_lived=True)
    page_token = state.page_token(user_token=user_token, page_id=page.id)
    state.set_app_subscription(object="instagram", fields=["comments", "live_comments", "messages"])
    state.subscribe_page(page.id, fields=["feed", "messages"])
    return SandboxAccount(page.id, ig.id, username, page_token, media_ids)


def connect_account(runtime: Runtime, sandbox: SandboxAccount, *, workspace_id: str | None = None) -> tuple[str, str]:
    """(workspace_id, account_id) of our record of the sandbox account, token encrypted like accounts stores it."""
    cipher = cipher_for(runtime.settings)
    with runtime.session() as session:
        if workspace_id is None:
            ws, _ = workspaces.create_workspace(session=session, name=f"ws-{uuid.uuid4().hex[:8]}")
            workspace_id = ws.id
        account = Account(
            workspace_id=workspace_id,
            login=sandbox.login,
            instagram_user_id=sandbox.app_scoped_id,
            token_type="INSTAGRAM" if sandbox.login == "instagram" else "PAGE",
            page_id=sandbox.page_id,
            page_name="Page",
            instagram_id=sandbox.ig_id,
            username=sandbox.username,
            token_ciphertext=cipher.encrypt(sandbox.page_token),
            scopes=list(SCOPES),
        )
        session.add(account)
        session.flush()
        return workspace_id, account.id


def sandbox_runner(state: SandboxState, *, timeout: float = 5.0) -> GraphRunner:
    app = create_sandbox_app(state)
    return GraphRunner(
        lambda: GraphClient(
            base_url="http://sandbox.test/graph",
            instagram_base_url="http://sandbox.test/instagram",
            version="v25.0",
            app_id=state.app.id,
            app_secret=state.app.secret,
            transport=httpx.ASGITransport(app=app),
            timeout=timeout,
        )
    )


@dataclass
class World:
    runtime: Runtime
    state: SandboxState
    runner: GraphRunner
    engine: Engine
    workspace_id: str
    account_id: str
    sandbox: SandboxAccount
    jobs: list[tuple[str, float | None]] = field(default_factory=list)

    @property
    def media_ids(self) -> list[str]:
        return self.sandbox.media_ids

    def now(self) -> dt.datetime:
        return self.state.now()

    def advance(self, **kwargs: float) -> None:
        self.state.clock.advance(**kwargs)

    # -- rules -------------------------------------------------------------------------------------------------

    def add_rule(self, **overrides: Any) -> str:
        data: dict[str, Any] = {
            "name": f"rule {uuid.uuid4().hex[:6]}",
            "posts": {"mode": "specific", "media_ids": [self.media_ids[0]]},
            "keywords": ["link"],
            "match": "contains_any",
            "public_reply": {"texts": ["Sent you a DM, @{username}!"]},
            "private_reply": {"text": "Here is the link, {username}: https://roastery.example/early"},
        }
        data.update(overrides)
        spec = RuleSpec.model_validate(data)
        now = self.now()
        with self.runtime.session() as session:
            rule = Rule(workspace_id=self.workspace_id, account_id=self.account_id, created_at=now, updated_at=now)
            rule.apply_spec(spec)
            if spec.posts.mode is PostsMode.NEXT:
                rule.next_armed_at = now
            session.add(rule)
            session.flush()
            return rule.id

    # -- comments and webhooks ---------------------------------------------------------------------------------

    def comment(self, text: str, *, media: int | str = 0, username: str = "ana.cafe", **kwargs: Any) -> str:
        """Someone comments in the sandbox; its webhook goes through our real ingestion path."""
        media_id = self.media_ids[media] if isinstance(media, int) else media
        comment = self.state.add_comment(media_id, text=text, username=username, **kwargs)
        self.deliver()
        return comment.id

    def deliver(self, *, again: bool = False) -> int:
        """Ingest every webhook the sandbox has queued (``again``: deliver each twice, as Meta may)."""
        pending = self.state.take_pending_webhooks()
        bodies = [json.dumps(item.payload).encode() for item in pending for _ in range(2 if again else 1)]
        if bodies:
            ingest(self.runtime, bodies)
        return len(pending)

    # -- driving the engine ------------------------------------------------------------------------------------

    def drive(self, *, advance: bool = True, max_rounds: int = 2000) -> int:
        """Process due runs until nothing is left to do; with ``advance``, jump the clock to the next due run."""
        processed = 0
        for _ in range(max_rounds):
            self.deliver()
            now = self.now()
            due = self._due(now)
            if due:
                for run_id in due:
                    self.engine.process_run(run_id)
                    processed += 1
                continue
            if not advance:
                return processed
            upcoming = self._next_due()
            if upcoming is None:
                return processed
            self.state.clock.advance(seconds=max(0.001, (upcoming - now).total_seconds() + 0.001))
        raise AssertionError("the engine did not settle")

    def _due(self, now: dt.datetime) -> list[str]:
        with self.runtime.session() as session:
            return list(
                session.scalars(
                    select(Run.id)
                    .where(
                        Run.account_id == self.account_id,
                        Run.status.in_([s.value for s in ACTIVE_STATUSES]),
                        (Run.next_attempt_at.is_(None)) | (Run.next_attempt_at <= now),
                        (Run.lease_expires_at.is_(None)) | (Run.lease_expires_at <= now),
                    )
                    .order_by(Run.next_attempt_at, Run.id)
                )
            )

    def _next_due(self) -> dt.datetime | None:
        with self.runtime.session() as session:
            return session.scalar(
                select(func.min(func.coalesce(Run.lease_expires_at, Run.next_attempt_at))).where(
                    Run.account_id == self.account_id, Run.status.in_([s.value for s in ACTIVE_STATUSES])
                )
            )

    # -- looking -------------------------------------------------------------------------------------------------

    def run_for(self, comment_id: str) -> Run:
        with self.runtime.session() as session:
            run = session.scalar(select(Run).where(Run.account_id == self.account_id, Run.comment_id == comment_id))
            assert run is not None, f"no run for comment {comment_id}"
            return run

    def runs(self) -> list[Run]:
        with self.runtime.session() as session:
            return list(session.scalars(select(Run).where(Run.account_id == self.account_id).order_by(Run.id)))

    def steps(self, run_id: str) -> list[RunStep]:
        with self.runtime.session() as session:
            return list(session.scalars(select(RunStep).where(RunStep.run_id == run_id).order_by(RunStep.id)))

    def outbox(self, kind: str | None = None, *, comment_id: str | None = None) -> list[OutboxEntry]:
        """What Meta received, oldest first."""
        items = list(reversed(self.state.outbox(ig_account_id=self.sandbox.ig_id)))
        return [
            e for e in items if (kind is None or e.kind == kind) and (comment_id is None or e.comment_id == comment_id)
        ]

    def assert_reply_then_dm_once(self, comment_id: str, *, public: bool = True) -> None:
        """The contract: one public reply (when wanted), then one DM, for this comment; nothing twice."""
        sent = self.outbox(comment_id=comment_id)
        kinds = [e.kind for e in sent]
        assert kinds == (["public_reply", "private_reply"] if public else ["private_reply"]), kinds


def build_world(
    runtime: Runtime,
    *,
    quota: tuple[int, int] | None = None,
    options: EngineOptions | None = None,
    gate: QuotaGate | None = None,
    seed: int = 7,
    real_queue: bool = False,
    login: str = "facebook",
) -> Iterator[World]:
    """A world on ``runtime``; jobs are recorded in ``World.jobs`` unless ``real_queue`` (then huey gets them)."""
    settings = runtime.settings
    count, seconds = quota or (settings.private_reply_quota.count, settings.private_reply_quota.seconds)
    state = sandbox_state(app_id=settings.app_id, app_secret=settings.app_secret, quota=(count, seconds))
    sandbox = seed_instagram_login_account(state) if login == "instagram" else seed_sandbox_account(state)
    workspace_id, account_id = connect_account(runtime, sandbox)
    runner = sandbox_runner(state)
    jobs: list[tuple[str, float | None]] = []
    graph = AccountGraph(run=runner.run_sync, cipher=cipher_for(settings))
    engine = Engine(
        runtime=runtime,
        graph=graph,
        gate=gate or DatabaseQuotaGate(session_factory=runtime.session_factory, quota=settings.private_reply_quota),
        options=options or EngineOptions(lease_seconds=30, backoff_base_seconds=1.0, backoff_max_seconds=60.0),
        clock=state.now,
        rng=random.Random(seed),
        enqueue=None if real_queue else (lambda run_id, delay: jobs.append((run_id, delay))),
    )
    install_engine(runtime, engine)
    world = World(runtime, state, runner, engine, workspace_id, account_id, sandbox, jobs)
    try:
        yield world
    finally:
        install_engine(runtime, None)
        runner.close(timeout=5)
