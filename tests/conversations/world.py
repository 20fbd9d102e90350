"""A conversation world: the sandbox (Meta), our app over HTTP, the real engine, and jobs run when the test says.

Webhooks the sandbox queues are signed and POSTed to our real ``/webhooks/instagram`` endpoint, then the inbox
is drained in the test's thread, so intake runs exactly as in production. Graph calls reach the sandbox
in-process. The huey queue is replaced by :class:`RecordingQueue` so the test decides when a job runs. Time is
the sandbox's frozen clock, shared with intake, the engine, conversations and analytics.
"""

from __future__ import annotations

import datetime as dt
import random
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, cast

import httpx
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select

from replyflow.accounts.crypto import cipher_for
from replyflow.accounts.models import Account
from replyflow.automation.clock import use_clock
from replyflow.automation.engine import Engine, EngineOptions, install_engine
from replyflow.automation.graph_calls import AccountGraph
from replyflow.automation.models import ACTIVE_STATUSES, Rule, Run
from replyflow.automation.quota import DatabaseQuotaGate
from replyflow.automation.schemas import RuleSpec
from replyflow.config import Settings
from replyflow.conversations import followups
from replyflow.conversations.models import FollowUp, Thread, ThreadMessage
from replyflow.graph.client import GraphClient
from replyflow.graph.runner import GraphRunner
from replyflow.runtime import Runtime
from replyflow.sandbox import SandboxState, create_sandbox_app
from replyflow.sandbox.models import OutboxEntry
from replyflow.sandbox.payloads import encode_body, signature_256
from replyflow.webhooks import service as inbox
from replyflow.workspaces import service as workspaces

START = dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.UTC)
SCOPES = [
    "pages_show_list",
    "pages_read_engagement",
    "pages_manage_metadata",
    "pages_messaging",
    "instagram_basic",
    "instagram_manage_comments",
    "instagram_manage_messages",
]
APP_ID = "100000000000001"
APP_SECRET = "5a1d0b0c8e7f6a5b4c3d2e1f0a9b8c7d"
SECRET_KEY = "conversations-test-key-0123456789abcdef"


def production_like_settings(make_settings: Any, **overrides: Any) -> Settings:
    """Not sandbox mode: Meta is reached only through the transport the world injects."""
    values: dict[str, Any] = {
        "meta_app_id": APP_ID,
        "meta_app_secret": APP_SECRET,
        "secret_key": SECRET_KEY,
        "webhook_verify_token": "verify-token-for-tests",
        "public_url": "https://replyflow.example",
    }
    values.update(overrides)
    settings: Settings = make_settings(**values)
    return settings


class RecordingQueue:
    """Stands in for huey: jobs are recorded, and the test runs the ones it cares about, in its own thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()  # the webhook endpoint's waker enqueues from its own thread
        self.jobs: list[tuple[str, tuple[Any, ...], float | None]] = []

    def enqueue(self, name: str, *args: Any, eta: dt.datetime | None = None, delay: float | None = None) -> None:
        with self._lock:
            self.jobs.append((name, args, delay))

    def take(self, name: str) -> list[tuple[Any, ...]]:
        with self._lock:
            taken = [args for job, args, _ in self.jobs if job == name]
            self.jobs = [entry for entry in self.jobs if entry[0] != name]
        return taken


@dataclass
class ConversationWorld:
    runtime: Runtime
    app: FastAPI
    client: TestClient
    state: SandboxState
    engine: Engine
    queue: RecordingQueue
    workspace_id: str
    api_key: str
    account_id: str
    ig_id: str
    page_id: str
    media_ids: list[str]
    posted: list[httpx.Response] = field(default_factory=list)

    # -- time --------------------------------------------------------------------------------------------------

    def now(self) -> dt.datetime:
        return self.state.now()

    def advance(self, **kwargs: float) -> None:
        self.state.clock.advance(**kwargs)

    # -- HTTP ----------------------------------------------------------------------------------------------------

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"}

    def get(self, path: str, **params: Any) -> httpx.Response:
        response: httpx.Response = self.client.get(path, params=params, headers=self.headers)
        return response

    # -- rules and comments ------------------------------------------------------------------------------------

    def add_rule(self, **overrides: Any) -> str:
        data: dict[str, Any] = {
            "name": f"rule {uuid.uuid4().hex[:6]}",
            "posts": {"mode": "specific", "media_ids": [self.media_ids[0]]},
            "keywords": ["link"],
            "match": "contains_any",
            "public_reply": {"texts": ["Sent you a DM, @{username}!"]},
            "private_reply": {
                "text": "Tap below and I'll send the link, {username}.",
                "quick_replies": [{"title": "Send it"}],
            },
            "follow_up": {
                "text": "Here it is, {username}!",
                "buttons": [{"title": "Open", "url": "https://roastery.example/early-bird?ref=ig"}],
            },
        }
        data.update(overrides)
        spec = RuleSpec.model_validate(data)
        with self.runtime.session() as session:
            rule = Rule(
                workspace_id=self.workspace_id, account_id=self.account_id, created_at=self.now(), updated_at=self.now()
            )
            rule.apply_spec(spec)
            session.add(rule)
            session.flush()
            return rule.id

    def comment(self, text: str, *, username: str = "ana.cafe", media: int = 0) -> str:
        """Someone comments; the webhook goes through our endpoint and the engine answers it."""
        comment = self.state.add_comment(self.media_ids[media], text=text, username=username)
        self.deliver()
        self.drive()
        self.deliver()  # the echo of our DM, and the comments webhook of our own public reply
        return comment.id

    def person(self, username: str) -> str:
        found = self.state.world.people
        for igsid, person in found.items():
            if person.username == username:
                return igsid
        raise KeyError(username)

    # -- the person in the DM ----------------------------------------------------------------------------------

    def reply(self, text: str, *, username: str = "ana.cafe", quick_reply_payload: str | None = None) -> str:
        item = self.state.user_message(
            self.ig_id, text=text, from_id=self.person(username), quick_reply_payload=quick_reply_payload
        )
        self.deliver()
        return str(item["message"]["mid"])

    def tap_postback(self, payload: str, *, title: str = "Get it", username: str = "ana.cafe") -> str:
        item = self.state.user_postback(self.ig_id, payload=payload, title=title, from_id=self.person(username))
        self.deliver()
        return str(item["postback"]["mid"])

    def seen(self, mid: str, *, username: str = "ana.cafe") -> None:
        self.state.user_seen(self.ig_id, mid=mid, from_id=self.person(username))
        self.deliver()

    # -- plumbing ------------------------------------------------------------------------------------------------

    def deliver(self) -> int:
        """POST every webhook the sandbox queued to /webhooks/instagram, signed like Meta, then drain the inbox."""
        pending = self.state.take_pending_webhooks()
        for webhook in pending:
            self.post_webhook(webhook.payload)
        return len(pending)

    def post_webhook(self, payload: dict[str, Any]) -> httpx.Response:
        body = encode_body(payload)
        response: httpx.Response = self.client.post(
            "/webhooks/instagram",
            content=body,
            headers={"Content-Type": "application/json", "X-Hub-Signature-256": signature_256(body, APP_SECRET)},
        )
        assert response.status_code == 200, response.text
        self.posted.append(response)
        inbox.drain(runtime=self.runtime)
        return response

    def drive(self, *, max_rounds: int = 200) -> None:
        """Process due runs until none is left (rules here have no delay, so no waiting is involved)."""
        for _ in range(max_rounds):
            now = self.now()
            with self.runtime.session() as session:
                due = list(
                    session.scalars(
                        select(Run.id).where(
                            Run.account_id == self.account_id,
                            Run.status.in_([s.value for s in ACTIVE_STATUSES]),
                            (Run.next_attempt_at.is_(None)) | (Run.next_attempt_at <= now),
                        )
                    )
                )
            if not due:
                return
            for run_id in due:
                self.engine.process_run(run_id)
        raise AssertionError("the engine did not settle")

    def run_follow_ups(self) -> list[str]:
        """Run the follow-up jobs that were enqueued; returns each one's resulting status."""
        return [
            followups.send(runtime=self.runtime, follow_up_id=args[0], graph=self.engine.graph)
            for args in self.queue.take(followups.SEND_FOLLOW_UP_JOB)
        ]

    # -- looking ---------------------------------------------------------------------------------------------------

    def outbox(self, kind: str | None = None) -> list[OutboxEntry]:
        """What Meta received, oldest first."""
        return [e for e in reversed(self.state.outbox(ig_account_id=self.ig_id)) if kind is None or e.kind == kind]

    def run_for(self, comment_id: str) -> Run:
        with self.runtime.session() as session:
            run = session.scalar(select(Run).where(Run.comment_id == comment_id))
            assert run is not None
            return run

    def thread(self, username: str = "ana.cafe") -> Thread:
        with self.runtime.session() as session:
            thread = session.scalar(
                select(Thread).where(Thread.account_id == self.account_id, Thread.igsid == self.person(username))
            )
            assert thread is not None, f"no thread for {username}"
            return thread

    def messages(self, username: str = "ana.cafe") -> list[ThreadMessage]:
        thread_id = self.thread(username).id
        with self.runtime.session() as session:
            return list(
                session.scalars(
                    select(ThreadMessage)
                    .where(ThreadMessage.thread_id == thread_id)
                    .order_by(ThreadMessage.created_at, ThreadMessage.id)
                )
            )

    def follow_ups(self) -> list[FollowUp]:
        with self.runtime.session() as session:
            return list(session.scalars(select(FollowUp).order_by(FollowUp.created_at, FollowUp.id)))


def build_world(
    settings: Settings, runtime: Runtime, *, start: dt.datetime = START, login: str = "facebook"
) -> Iterator[ConversationWorld]:
    """The world on the sandbox clock frozen at ``start`` (tests that move time forward keep the default).

    ``login="instagram"``: the account has no Page and is connected through Instagram Login (graph.instagram.com).
    """
    from replyflow.app import create_app

    queue = RecordingQueue()
    runtime.__dict__["queue"] = queue  # Runtime.queue is a cached_property: this is its value for the test
    state = SandboxState(app_id=APP_ID, app_secret=APP_SECRET)
    state.clock.freeze(start)
    user = state.add_user("Owner", scopes=SCOPES)
    page = state.add_page("Roastery", owner_user_id=user.id)
    instagram = login == "instagram"
    ig = state.add_instagram_account(None if instagram else page.id, username="roastery.test")
    media_ids = [
        state.add_media(ig.id, caption=f"Post {i}", timestamp=start - dt.timedelta(days=3 - i)).id for i in range(3)
    ]
    user_token = state.issue_user_token(user.id, scopes=SCOPES, long_lived=True)
    page_token = state.page_token(user_token=user_token, page_id=page.id)
    state.set_app_subscription(
        object="instagram", fields=["comments", "messages", "messaging_postbacks", "messaging_seen"]
    )
    state.subscribe_page(page.id, fields=["feed", "messages"])
    if instagram:
        page_token = state.issue_instagram_token(ig.id, long_lived=True)
        state.subscribe_instagram(ig.id, fields=["comments", "messages", "messaging_postbacks"])

    with runtime.session() as session:
        ws, issued = workspaces.create_workspace(session=session, name=f"ws-{uuid.uuid4().hex[:8]}")
        account = Account(
            workspace_id=ws.id,
            login=login,
            instagram_user_id=ig.app_scoped_id if instagram else None,
            page_id=None if instagram else page.id,
            page_name="Roastery",
            instagram_id=ig.id,
            username=ig.username,
            token_ciphertext=cipher_for(settings).encrypt(page_token),
            scopes=list(SCOPES),
            webhooks_subscribed=True,
            created_at=start - dt.timedelta(days=1),
        )
        session.add(account)
        session.flush()
        workspace_id, api_key, account_id = ws.id, issued.secret, account.id

    sandbox_app = create_sandbox_app(state)
    runner = GraphRunner(
        lambda: GraphClient(
            base_url="http://sandbox.test/graph",
            instagram_base_url="http://sandbox.test/instagram",
            version=settings.graph_api_version,
            app_id=APP_ID,
            app_secret=APP_SECRET,
            transport=httpx.ASGITransport(app=sandbox_app),
            timeout=5.0,
        )
    )
    engine = Engine(
        runtime=runtime,
        graph=AccountGraph(run=cast(Any, runner.run_sync), cipher=cipher_for(settings)),
        gate=DatabaseQuotaGate(session_factory=runtime.session_factory, quota=settings.private_reply_quota),
        options=EngineOptions(lease_seconds=30, backoff_base_seconds=1.0, backoff_max_seconds=60.0),
        clock=state.now,
        rng=random.Random(7),
        enqueue=lambda _run_id, _delay: None,
    )
    install_engine(runtime, engine)
    app = create_app(settings, runtime=runtime)
    try:
        with use_clock(state.now), TestClient(app, raise_server_exceptions=True) as client:
            yield ConversationWorld(
                runtime=runtime,
                app=app,
                client=client,
                state=state,
                engine=engine,
                queue=queue,
                workspace_id=workspace_id,
                api_key=api_key,
                account_id=account_id,
                ig_id=ig.id,
                page_id=page.id,
                media_ids=media_ids,
            )
    finally:
        install_engine(runtime, None)
        runner.close(timeout=5)
