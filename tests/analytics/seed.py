"""A small, hand-counted data set of runs and engagement across two workspaces, three accounts and four days."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.orm import Session

from replyflow.accounts.models import Account
from replyflow.automation.models import Rule, Run, RunStatus, SendState
from replyflow.conversations.repository import bump_engagement
from replyflow.ids import new_id
from replyflow.workspaces import service as workspaces

D0 = dt.date(2026, 2, 27)  # before the range the tests ask for
D1 = dt.date(2026, 3, 1)
D2 = dt.date(2026, 3, 2)
D3 = dt.date(2026, 3, 3)


def at(day: dt.date, seconds: int = 0) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(10, 0), tzinfo=dt.UTC) + dt.timedelta(seconds=seconds)


@dataclass
class Seeded:
    workspace_id: str
    api_key: str
    other_workspace_id: str
    other_api_key: str
    accounts: dict[str, str] = field(default_factory=dict)  # name -> id
    rules: dict[str, str] = field(default_factory=dict)
    runs: dict[str, list[str]] = field(default_factory=dict)  # group name -> run ids


def _account(session: Session, workspace_id: str, name: str, token: bytes | None) -> Account:
    account = Account(
        workspace_id=workspace_id,
        page_id=f"page-{uuid.uuid4().hex[:10]}",
        instagram_id=f"1784{uuid.uuid4().int % 10**12:012d}",
        username=name,
        webhooks_subscribed=True,
        token_ciphertext=token,
    )
    session.add(account)
    session.flush()
    return account


def _rule(session: Session, account: Account, name: str, media_id: str) -> Rule:
    rule = Rule(
        workspace_id=account.workspace_id,
        account_id=account.id,
        name=name,
        posts_mode="specific",
        media_ids=[media_id],
        keywords=["link"],
        match="contains_any",
        private_reply={"text": "hi"},
    )
    session.add(rule)
    session.flush()
    return rule


def add_run(
    session: Session,
    account: Account,
    *,
    day: dt.date,
    media_id: str,
    status: RunStatus,
    rule: Rule | None = None,
    reason: str | None = None,
    public_reply: bool = False,
    ttd: int | None = None,
    offset: int = 0,
    updated_at: dt.datetime | None = None,
) -> Run:
    """A run as the engine leaves it; ``ttd`` (seconds) means the DM went out that long after the comment."""
    created = at(day, offset)
    run = Run(
        id=new_id("run"),
        workspace_id=account.workspace_id,
        account_id=account.id,
        comment_id=f"c{uuid.uuid4().int % 10**15}",
        media_id=media_id,
        text="link",
        from_id=f"igsid-{uuid.uuid4().hex[:8]}",
        status=status.value,
        reason=reason,
        rule_id=rule.id if rule is not None else None,
        matched_at=created if rule is not None else None,
        public_reply_state=(SendState.SENT if public_reply else SendState.NONE).value,
        dm_state=(SendState.SENT if ttd is not None else SendState.NONE).value,
        dm_sent_at=created + dt.timedelta(seconds=ttd) if ttd is not None else None,
        created_at=created,
        updated_at=updated_at or created + dt.timedelta(seconds=(ttd or 0) + 1),
    )
    session.add(run)
    session.flush()
    return run


def seed(session: Session, *, token: bytes | None = None) -> Seeded:
    """``token``: the (encrypted) Page token every account holds; without one the accounts count as disconnected."""
    ws, key = workspaces.create_workspace(session=session, name=f"ws-{uuid.uuid4().hex[:6]}")
    other, other_key = workspaces.create_workspace(session=session, name=f"other-{uuid.uuid4().hex[:6]}")
    data = Seeded(ws.id, key.secret, other.id, other_key.secret)
    a = _account(session, ws.id, "roastery.a", token)
    b = _account(session, ws.id, "bakery.b", token)
    c = _account(session, other.id, "elsewhere.c", token)
    data.accounts = {"a": a.id, "b": b.id, "c": c.id}
    r1 = _rule(session, a, "Giveaway", "m1")
    r2 = _rule(session, a, "Price", "m2")
    r3 = _rule(session, b, "Recipe", "m3")
    r4 = _rule(session, c, "Elsewhere", "m4")
    data.rules = {"r1": r1.id, "r2": r2.id, "r3": r3.id, "r4": r4.id}

    def group(name: str, runs: list[Run]) -> list[Run]:
        data.runs[name] = [run.id for run in runs]
        return runs

    done = RunStatus.DONE
    r1_done = group(
        "r1_done",
        [
            add_run(session, a, day=D1, media_id="m1", status=done, rule=r1, public_reply=True, ttd=ttd, offset=i)
            for i, ttd in enumerate((2, 4, 6, 10))
        ],
    )
    group(
        "r1_failed",
        [
            add_run(
                session, a, day=D1, media_id="m1", status=RunStatus.FAILED, rule=r1, reason=reason, public_reply=True
            )
            for reason in ("permission_denied", "user_unavailable")
        ],
    )
    skipped: list[Run] = []
    for reason, count in (("no_keyword", 3), ("own_comment", 1)):
        skipped += [
            add_run(session, a, day=D1, media_id="m1", status=RunStatus.SKIPPED, reason=reason) for _ in range(count)
        ]
    r2_done = group(
        "r2_done",
        [
            add_run(session, a, day=D2, media_id="m2", status=done, rule=r2, public_reply=True, ttd=ttd)
            for ttd in (3, 300)
        ],
    )
    group(
        "r2_waiting",
        [add_run(session, a, day=D2, media_id="m2", status=RunStatus.WAITING_QUOTA, rule=r2, public_reply=True)],
    )
    skipped += [
        add_run(session, a, day=D2, media_id="m2", status=RunStatus.SKIPPED, reason="post_not_targeted")
        for _ in range(2)
    ]
    r3_done = group(
        "r3_done", [add_run(session, b, day=D2, media_id="m3", status=done, rule=r3, ttd=1) for _ in range(3)]
    )
    skipped.append(add_run(session, b, day=D3, media_id="m3", status=RunStatus.SKIPPED, reason="no_keyword"))
    group("skipped", skipped)
    group("other_ws", [add_run(session, c, day=D1, media_id="m4", status=done, rule=r4, ttd=5) for _ in range(5)])
    group("before", [add_run(session, a, day=D0, media_id="m1", status=done, rule=r1, ttd=7) for _ in range(2)])

    def engage(run: Run, **counts: Any) -> None:
        bump_engagement(session=session, run_id=run.id, account_id=run.account_id, at=run.updated_at, **counts)

    engage(r1_done[0], replies=2, taps=1, clicks=3, links=1, follow_ups=1)
    engage(r1_done[1], taps=1, links=1, follow_ups=1)
    engage(r1_done[2], links=1)
    engage(r2_done[0], replies=1, clicks=1, links=1)
    engage(r3_done[0], clicks=2, links=1)
    session.flush()
    return data
