"""Roles are enforced by the server on every page and API route that changes something.

``CHANGING_ROUTES`` names each such route with the permission it needs (``None``: any signed-in role). The first
test walks the application's real route table and fails when a route that changes something is missing from it,
so a new route cannot skip the question; the others sign in as each role and call every route in the table: a
role without the permission gets ``403 insufficient_role`` (JSON on the API, the "Not allowed" page on the
dashboard) and nothing lands in the audit log; a role with it is never refused.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from replyflow.audit.models import AuditEvent
from replyflow.runtime import Runtime
from replyflow.web.sessions import CSRF_HEADER
from replyflow.workspaces import service, users
from replyflow.workspaces.roles import Permission, Role, can
from tests.web.conftest import PASSWORD, csrf_of, sign_in

SAFE = {"GET", "HEAD", "OPTIONS"}
ACCOUNTS, RULES, MEMBERS, KEYS = (
    Permission.MANAGE_ACCOUNTS,
    Permission.MANAGE_RULES,
    Permission.MANAGE_MEMBERS,
    Permission.MANAGE_KEYS,
)

# (method, path) -> the permission it needs; None: every signed-in role may use it (it changes nothing the
# roles guard: a token check, a dry run, the sandbox's simulated comments).
CHANGING_ROUTES: dict[tuple[str, str], Permission | None] = {
    # API
    ("DELETE", "/api/accounts/{account_id}"): ACCOUNTS,
    ("POST", "/api/accounts/{account_id}/check"): None,
    ("POST", "/api/instagram/convert-token"): ACCOUNTS,
    ("POST", "/api/instagram/save-page-token"): ACCOUNTS,
    ("POST", "/api/instagram/oauth/start"): ACCOUNTS,
    ("POST", "/api/instagram/save-instagram-token"): ACCOUNTS,
    ("POST", "/api/instagram/oauth/instagram/start"): ACCOUNTS,
    ("POST", "/api/rules"): RULES,
    ("POST", "/api/rules/test"): None,
    ("PATCH", "/api/rules/{rule_id}"): RULES,
    ("DELETE", "/api/rules/{rule_id}"): RULES,
    ("POST", "/api/sandbox/comments"): None,
    ("POST", "/api/sandbox/messages"): None,
    ("POST", "/api/sandbox/follows"): None,
    ("POST", "/api/sandbox/live"): None,
    ("POST", "/api/sandbox/live/{media_id}/end"): None,
    # dashboard: forms, and the pages that show a form for something the role may not do
    ("GET", "/app/integrations"): ACCOUNTS,
    ("POST", "/app/integrations/connect"): ACCOUNTS,
    ("POST", "/app/integrations/convert"): ACCOUNTS,
    ("POST", "/app/integrations/save"): ACCOUNTS,
    ("POST", "/app/integrations/save-page-token"): ACCOUNTS,
    ("POST", "/app/integrations/sandbox-token"): ACCOUNTS,
    ("POST", "/app/integrations/connect-instagram"): ACCOUNTS,
    ("POST", "/app/integrations/save-instagram-token"): ACCOUNTS,
    ("POST", "/app/accounts/{account_id}/check"): None,
    ("POST", "/app/accounts/{account_id}/retry"): None,
    ("GET", "/app/accounts/{account_id}/disconnect"): ACCOUNTS,
    ("POST", "/app/accounts/{account_id}/disconnect"): ACCOUNTS,
    ("GET", "/app/rules/new"): RULES,
    ("POST", "/app/rules/new"): RULES,
    ("POST", "/app/rules/test"): None,
    ("POST", "/app/rules/{rule_id}"): RULES,
    ("POST", "/app/rules/{rule_id}/toggle"): RULES,
    ("GET", "/app/rules/{rule_id}/delete"): RULES,
    ("POST", "/app/rules/{rule_id}/delete"): RULES,
    ("POST", "/app/sandbox/comments"): None,
    ("POST", "/app/sandbox/follower"): None,
    ("POST", "/app/members/invite"): MEMBERS,
    ("POST", "/app/members/invitations/{invitation_id}/revoke"): MEMBERS,
    ("POST", "/app/members/{user_id}/role"): MEMBERS,
    ("GET", "/app/members/{user_id}/remove"): MEMBERS,
    ("POST", "/app/members/{user_id}/remove"): MEMBERS,
    ("POST", "/app/keys"): KEYS,
    ("POST", "/app/keys/{key_id}/revoke"): KEYS,
}

# Routes that change something but are not a signed-in role's to refuse, and why.
NOT_ROLE_ROUTES = {
    ("POST", "/webhooks/instagram"): "Meta's deliveries, authenticated by their signature",
    ("POST", "/login"): "signing in",
    ("POST", "/logout"): "signing out is everyone's right",
    ("POST", "/invite/{secret}"): "the invited person joins with the link",
    ("POST", "/app/{rest:path}"): "the dashboard's not-found page",
}


def _flat_routes(routes: list[Any]) -> Iterator[Any]:
    for route in routes:
        original = getattr(route, "original_router", None)  # FastAPI's included routers
        if original is not None:
            yield from _flat_routes(original.routes)
        else:
            yield route


def _app_changing_routes(app: Any) -> set[tuple[str, str]]:
    found = set()
    for route in _flat_routes(app.routes):
        path = getattr(route, "path", "")
        methods = getattr(route, "methods", None) or set()
        if path == "/sandbox" or not methods:  # the mounted Graph API emulator stands in for Meta
            continue
        found |= {(method, path) for method in methods if method not in SAFE}
    return found


def test_every_route_that_changes_something_is_in_the_table(app: Any) -> None:
    changing = _app_changing_routes(app)
    get_routes = {(m, p) for m, p in CHANGING_ROUTES if m == "GET"}
    missing = changing - set(CHANGING_ROUTES) - set(NOT_ROLE_ROUTES)
    assert not missing, f"say which role may use these routes in CHANGING_ROUTES: {sorted(missing)}"
    stale = set(CHANGING_ROUTES) - changing - get_routes
    assert not stale, f"these routes no longer exist: {sorted(stale)}"


@pytest.fixture
def team(runtime: Runtime) -> dict[str, str]:
    """One workspace with an owner, an admin and a member; returns role -> email."""
    emails = {}
    with runtime.session() as session:
        workspace, _ = service.create_workspace(session=session, name=f"ws-{uuid.uuid4().hex[:8]}")
        for role in Role:
            email = f"{role.value}-{uuid.uuid4().hex[:6]}@example.com"
            users.create_user(session=session, workspace=workspace, email=email, password=PASSWORD, role=role)
            emails[role.value] = email
    return emails


def _fill(path: str) -> str:
    for name in ("account_id", "rule_id", "user_id", "invitation_id", "key_id"):
        path = path.replace("{" + name + "}", f"x_{name}")
    return path


def _audit_count(runtime: Runtime) -> int:
    with runtime.session() as session:
        return session.scalar(select(func.count()).select_from(AuditEvent)) or 0


@pytest.mark.parametrize("role", [r.value for r in Role])
def test_each_role_is_refused_exactly_what_it_may_not_do(
    role: str, client: TestClient, team: dict[str, str], runtime: Runtime
) -> None:
    assert sign_in(client, team[role], PASSWORD).status_code == 303
    csrf = csrf_of(client)
    before = _audit_count(runtime)
    wrong = []
    for (method, path), permission in CHANGING_ROUTES.items():
        url = _fill(path)
        is_api = path.startswith("/api/")
        headers = {CSRF_HEADER: csrf, "accept": "application/json" if is_api else "text/html"}
        kwargs: dict[str, Any] = {"json": {}} if is_api and method != "DELETE" else {}
        if not is_api and method == "POST":
            kwargs = {"data": {"csrf_token": csrf, "email": "new.person@example.com", "role": "owner"}}
        response = client.request(method, url, headers=headers, follow_redirects=False, **kwargs)
        refused = response.status_code == 403
        should_refuse = permission is not None and not can(role, permission)
        if should_refuse:
            if not refused:
                wrong.append(f"{method} {path}: {response.status_code}, expected 403")
            elif is_api:
                error = response.json()["error"]
                if error["code"] != "insufficient_role" or f"({role})" not in error["message"] or not error["hint"]:
                    wrong.append(f"{method} {path}: {error}")
            elif "Not allowed" not in response.text or f"({role})" not in response.text:
                wrong.append(f"{method} {path}: the page does not say why")
        elif refused:
            wrong.append(f"{method} {path}: refused a {role} ({response.text[:200]})")
        assert response.status_code < 500, f"{method} {path}: {response.status_code}"
    assert not wrong, "\n".join(wrong)
    if role != Role.OWNER:
        # What they may do here failed on made-up ids or empty bodies, and the rest was refused: no change.
        assert _audit_count(runtime) == before


def test_api_keys_act_with_an_owners_rights(client: TestClient, auth_headers: dict[str, str]) -> None:
    for (method, path), permission in CHANGING_ROUTES.items():
        if not path.startswith("/api/") or permission is None:
            continue
        kwargs: dict[str, Any] = {} if method == "DELETE" else {"json": {}}
        response = client.request(method, _fill(path), headers=auth_headers, **kwargs)
        assert response.status_code != 403, f"{method} {path}: {response.text}"


def test_a_member_sees_no_button_for_what_the_server_refuses(client: TestClient, team: dict[str, str]) -> None:
    sign_in(client, team["member"], PASSWORD)
    overview = client.get("/app").text
    assert 'href="/app/integrations"' not in overview.split("</nav>")[0]
    assert 'href="/app/members"' in overview and 'href="/app/audit"' in overview
    accounts_page = client.get("/app/accounts").text
    assert "Ask an owner or admin of the workspace to connect it" in accounts_page
    assert "Connect your first account" not in accounts_page
    members_page = client.get("/app/members")
    assert members_page.status_code == 200
    assert "Invite someone" not in members_page.text and "Change role" not in members_page.text
    assert team["owner"] in members_page.text
