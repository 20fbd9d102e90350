"""The audit log: every change to accounts, rules, members and keys lands in it — who, what, when — whether it
came from the dashboard, the API (by session or by key) or the command line; shown on /app/audit and served by
``GET /api/audit-log``."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import select

from replyflow.audit.models import AuditEvent
from replyflow.runtime import Runtime
from replyflow.web.sessions import CSRF_HEADER
from replyflow.workspaces import service
from replyflow.workspaces.models import Workspace
from tests.web.conftest import WebUser, connect_demo, csrf_of

# A whole token or key (a key's first 11 characters, its prefix, are how people tell keys apart).
SECRET_SHAPES = re.compile(r"EAA[A-Za-z0-9]{16,}|IG(?:QV|AA)[A-Za-z0-9_\-]{16,}|rf_[A-Za-z0-9_\-]{20,}|\$argon2")


def _rule(account_id: str, media_id: str, name: str) -> dict[str, Any]:
    return {
        "account_id": account_id,
        "name": name,
        "posts": {"mode": "specific", "media_ids": [media_id]},
        "keywords": ["roast"],
        "match": "contains_any",
        "public_reply": {"texts": ["Sent you a DM!"]},
        "private_reply": {"text": "Here you go"},
    }


def test_accounts_and_rules_changed_from_the_dashboard_and_the_api(
    live: TestClient, emulator: Any, live_user: WebUser, live_runtime: Runtime
) -> None:
    account_id = connect_demo(live, emulator)
    csrf = csrf_of(live)
    media_id = emulator.demo.media_ids[0]
    # By session (the dashboard's own API calls) ...
    created = live.post("/api/rules", json=_rule(account_id, media_id, "Roast"), headers={CSRF_HEADER: csrf})
    assert created.status_code == 201, created.text
    rule_id = created.json()["id"]
    assert live.patch(f"/api/rules/{rule_id}", json={"enabled": False}, headers={CSRF_HEADER: csrf}).is_success
    assert live.patch(f"/api/rules/{rule_id}", json={"keywords": ["beans"]}, headers={CSRF_HEADER: csrf}).is_success
    # ... by API key ...
    with live_runtime.session() as session:
        workspace = session.get(Workspace, live_user.workspace_id)
        assert workspace is not None
        key = service.issue_key(session=session, workspace=workspace, label="zapier")
    by_key = {"Authorization": f"Bearer {key.secret}"}
    assert live.delete(f"/api/rules/{rule_id}", headers=by_key).status_code == 204
    # ... and by the dashboard's forms.
    disconnected = live.post(f"/app/accounts/{account_id}/disconnect", data={"csrf_token": csrf})
    assert disconnected.status_code == 200

    log = live.get("/api/audit-log", params={"limit": 200}).json()["items"]
    mine = [(e["actor"]["label"], e["action"], e["target"]["label"]) for e in reversed(log)]
    key_label = f"API key {key.key.prefix}… (zapier)"
    # The workspace (with its first key) and its user were made by a test fixture: nobody behind them.
    assert mine[1][:2] == ("replyflow", "api_key.created")
    assert mine[:1] + mine[2:] == [
        ("replyflow", "workspace.created", workspace.name),
        ("replyflow", "member.added", live_user.email),
        (live_user.email, "account.connected", "@demo.roastery"),
        (live_user.email, "rule.created", "Roast"),
        (live_user.email, "rule.turned_off", "Roast"),
        (live_user.email, "rule.updated", "Roast"),
        ("replyflow", "api_key.created", f"{key.key.prefix}…"),
        (key_label, "rule.deleted", "Roast"),
        (live_user.email, "account.disconnected", "@demo.roastery"),
    ]
    updated = next(e for e in log if e["action"] == "rule.updated")
    assert updated["details"] == {"fields": ["keywords"]}
    assert updated["summary"] == f"{live_user.email} changed the rule “Roast” (keywords)"
    assert all(e["created_at"] for e in log)
    raw = json.dumps(log)
    assert key.secret not in raw and not SECRET_SHAPES.search(raw), "the audit log holds a secret"

    page = live.get("/app/audit")
    assert page.status_code == 200
    for sentence in (
        "connected the Instagram account @demo.roastery",
        "turned the rule “Roast” off",
        "deleted the rule “Roast”",
        "disconnected the Instagram account @demo.roastery",
    ):
        assert sentence in page.text
    assert key_label in page.text

    # Paging: the newest two, then the next two, no overlap.
    first = live.get("/api/audit-log", params={"limit": 2}).json()
    second = live.get("/api/audit-log", params={"limit": 2, "cursor": first["next_cursor"]}).json()
    assert [e["id"] for e in first["items"]] == [e["id"] for e in log[:2]]
    assert [e["id"] for e in second["items"]] == [e["id"] for e in log[2:4]]


def test_another_workspace_sees_none_of_it(live: TestClient, emulator: Any, live_runtime: Runtime) -> None:
    connect_demo(live, emulator)
    with live_runtime.session() as session:
        _, other = service.create_workspace(session=session, name="Someone else")
    theirs = live.get("/api/audit-log", headers={"Authorization": f"Bearer {other.secret}"}).json()["items"]
    assert [e["action"] for e in theirs] == ["api_key.created", "workspace.created"]  # newest first
    assert live.get("/api/audit-log", headers={"Authorization": "Bearer rf_wrong"}).status_code == 401


def _cli(tmp_path: Path, *args: str, stdin: str = "") -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("REPLYFLOW_")}
    env.update(REPLYFLOW_DATABASE_URL=f"sqlite:///{tmp_path / 'cli.db'}", REPLYFLOW_DATA_DIR=str(tmp_path / "data"))
    proc = subprocess.run(
        [sys.executable, "-m", "replyflow", *args], env=env, input=stdin, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_the_command_line_signs_its_changes(tmp_path: Path) -> None:
    created = json.loads(_cli(tmp_path, "workspace", "create", "Cli Roastery", "--json").splitlines()[-1])

    def add_user(email: str, *extra: str) -> str:
        password = "a long enough password\n"
        return _cli(tmp_path, "user", "create", "--workspace", "Cli Roastery", "--email", email, *extra, stdin=password)

    add_user("o@example.com", "--password-stdin")
    added = add_user("m@example.com", "--role", "admin", "--password-stdin", "--json")
    assert json.loads(added.splitlines()[-1])["role"] == "admin"
    listed = _cli(tmp_path, "user", "list", "--workspace", "Cli Roastery", "--json")
    assert [u["role"] for u in json.loads(listed.splitlines()[-1])["items"]] == ["owner", "admin"]
    _cli(tmp_path, "workspace", "keys", "revoke", "Cli Roastery", created["api_key"][:11])

    from replyflow.db import make_engine

    engine = make_engine(f"sqlite:///{tmp_path / 'cli.db'}")
    try:
        with engine.connect() as conn:
            rows = conn.execute(select(AuditEvent.actor_label, AuditEvent.action, AuditEvent.details)).all()
    finally:
        engine.dispose()
    assert [(r[0], r[1]) for r in rows] == [
        ("command line", "workspace.created"),
        ("command line", "api_key.created"),
        ("command line", "member.added"),
        ("command line", "member.added"),
        ("command line", "api_key.revoked"),
    ]
    assert [r[2].get("role") for r in rows if r[1] == "member.added"] == ["owner", "admin"]
