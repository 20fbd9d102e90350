"""Fixtures for the inbox: Meta-configured settings, signed posts, connected accounts and fake consumers."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from replyflow.accounts.models import Account
from replyflow.config import Settings
from replyflow.db import Base
from replyflow.runtime import Runtime
from replyflow.webhooks import dispatch
from replyflow.webhooks.signature import sign
from replyflow.workspaces.models import Workspace

APP_SECRET = "meta-app-secret-current-0123456789"
OLD_APP_SECRET = "meta-app-secret-previous-987654321"
VERIFY_TOKEN = "verify-token-for-tests-42"
IG_ID = "17841400000000001"  # the account in tests/fixtures/meta
PAGE_ID = "109000000000001"
FIXTURES = Path(__file__).parent.parent / "fixtures" / "meta"
META_SETTINGS: dict[str, Any] = {
    "meta_app_id": "100000000000042",
    "meta_app_secret": APP_SECRET,
    "meta_app_secret_previous": OLD_APP_SECRET,
    "webhook_verify_token": VERIFY_TOKEN,
    "secret_key": "test-encryption-key-0123456789abcdef",
}


def fixture_bytes(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def encode(payload: Any) -> bytes:
    return json.dumps(payload, separators=(",", ":")).encode()


def signed_headers(body: bytes, secret: str = APP_SECRET) -> dict[str, str]:
    return {"X-Hub-Signature-256": sign(body, secret), "Content-Type": "application/json"}


def comment_change(comment_id: str, *, text: str = "link please", media_id: str = "17900000000000001") -> Any:
    return {
        "field": "comments",
        "value": {
            "from": {"id": "17841455500000001", "username": "ana.cafe"},
            "media": {"id": media_id, "media_product_type": "FEED"},
            "id": comment_id,
            "text": text,
        },
    }


def comments_delivery(*comment_ids: str, entry_id: str = IG_ID) -> bytes:
    changes = [comment_change(cid) for cid in comment_ids]
    return encode({"object": "instagram", "entry": [{"id": entry_id, "time": 1764400000, "changes": changes}]})


@pytest.fixture
def settings(make_settings: Any) -> Settings:
    """Real-Meta mode (not the sandbox): known app secrets, so tests can sign like Meta does."""
    return make_settings(**META_SETTINGS)


@pytest.fixture
def db_runtime(make_settings: Any, database_url: str) -> Iterator[Runtime]:
    """A runtime on SQLite and, in a second run, on a throwaway PostgreSQL database."""
    rt = Runtime(make_settings(database_url=database_url, **META_SETTINGS))
    Base.metadata.create_all(rt.engine)
    yield rt
    rt.close()


@pytest.fixture
def db_client(db_runtime: Runtime) -> Iterator[TestClient]:
    from replyflow.app import create_app

    with TestClient(create_app(db_runtime.settings, runtime=db_runtime), raise_server_exceptions=False) as c:
        yield c


def _connect(runtime: Runtime, *, instagram_id: str, page_id: str, workspace: str | None = None) -> Account:
    with runtime.session() as session:
        ws = Workspace(name=workspace or f"ws-{uuid.uuid4().hex[:8]}")
        session.add(ws)
        session.flush()
        account = Account(workspace_id=ws.id, page_id=page_id, instagram_id=instagram_id, username="roastery")
        session.add(account)
    return account


@pytest.fixture
def connect() -> Callable[..., Account]:
    """``connect(runtime, instagram_id=..., page_id=...)`` stores a connected account in a new workspace."""

    def build(runtime: Runtime, *, instagram_id: str = IG_ID, page_id: str = PAGE_ID) -> Account:
        return _connect(runtime, instagram_id=instagram_id, page_id=page_id)

    return build


@dataclass
class Consumers:
    """What the fake automation and conversations consumers received, and how they should behave."""

    calls: list[tuple[str, str, Any]] = field(default_factory=list)
    fail_with: BaseException | None = None
    on_call: Callable[..., None] | None = None

    def of_kind(self, kind: str) -> list[Any]:
        return [event for (k, _, event) in self.calls if k == kind]


@pytest.fixture(autouse=True)
def consumers(monkeypatch: pytest.MonkeyPatch) -> Consumers:
    """Fake consumers in place of the automation and conversations domains (a seam, not our storage)."""
    record = Consumers()

    def consumer(kind: str) -> Callable[..., None]:
        def accept(*, session: Any, account: Account, event: Any, runtime: Runtime) -> None:
            if record.on_call is not None:
                record.on_call(session=session, account=account, event=event, runtime=runtime)
            if record.fail_with is not None:
                raise record.fail_with
            record.calls.append((kind, account.id, event))

        return accept

    comments, messaging = consumer("comment"), consumer("messaging")
    for kind in dispatch.KINDS:
        monkeypatch.setitem(dispatch.CONSUMERS, kind, comments if kind == "comment" else messaging)
    return record
