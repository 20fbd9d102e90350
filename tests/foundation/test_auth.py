"""API keys: shown once, stored hashed, required on /api/*, and scoped to their workspace."""

from __future__ import annotations

import hashlib
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import select

from replyflow.accounts.models import Account
from replyflow.runtime import Runtime
from replyflow.workspaces import service
from replyflow.workspaces.models import ApiKey


def _error(resp: Any) -> dict[str, Any]:
    body: dict[str, Any] = resp.json()["error"]
    assert set(body) >= {"code", "message", "hint"}
    return body


def test_missing_and_wrong_keys_are_401(client: TestClient, auth_headers: dict[str, str]) -> None:
    assert client.get("/api/accounts").status_code == 401
    assert _error(client.get("/api/accounts"))["code"] == "not_authenticated"
    for header in ("Bearer rf_wrong", "Bearer ", "Basic abc", "Bearer " + auth_headers["Authorization"][-10:]):
        resp = client.get("/api/accounts", headers={"Authorization": header})
        assert resp.status_code == 401, header
        assert resp.headers["www-authenticate"] == "Bearer"
    assert client.get("/api/accounts", headers=auth_headers).status_code == 200


def test_keys_are_stored_only_as_hashes(runtime: Runtime, workspace_key: tuple[str, str]) -> None:
    _, secret = workspace_key
    assert secret.startswith("rf_") and len(secret) >= 40
    with runtime.session() as session:
        keys = list(session.scalars(select(ApiKey)))
    assert len(keys) == 1
    assert keys[0].key_hash == hashlib.sha256(secret.encode()).hexdigest()
    assert secret not in (keys[0].prefix, keys[0].key_hash)
    assert secret.startswith(keys[0].prefix)


def test_other_workspace_objects_are_404(client: TestClient, runtime: Runtime, auth_headers: dict[str, str]) -> None:
    with runtime.session() as session:
        other, _ = service.create_workspace(session=session, name="Someone else")
        session.add(Account(id="acc_theirs", workspace_id=other.id, page_id="p1", instagram_id="ig1"))
    resp = client.get("/api/accounts/acc_theirs", headers=auth_headers)
    assert resp.status_code == 404
    assert _error(resp)["code"] == "not_found"
    assert client.get("/api/accounts/acc_nothing", headers=auth_headers).status_code == 404
    assert client.get("/api/accounts", headers=auth_headers).json() == {"items": [], "next_cursor": None}


def test_revoke_and_rotate(client: TestClient, runtime: Runtime, workspace_key: tuple[str, str]) -> None:
    ws_id, secret = workspace_key
    with runtime.session() as session:
        ws = service.get_workspace(session=session, ref=ws_id)
        rotated = service.rotate_key(session=session, workspace=ws, prefix=secret[:11])
        new_secret = rotated.secret
    assert client.get("/api/accounts", headers={"Authorization": f"Bearer {secret}"}).status_code == 401
    assert client.get("/api/accounts", headers={"Authorization": f"Bearer {new_secret}"}).status_code == 200
    with runtime.session() as session:
        ws = service.get_workspace(session=session, ref=ws_id)
        service.revoke_key(session=session, workspace=ws, prefix=new_secret[:11])
    assert client.get("/api/accounts", headers={"Authorization": f"Bearer {new_secret}"}).status_code == 401


def test_error_shape_for_unknown_routes_and_methods(client: TestClient) -> None:
    assert _error(client.get("/nope"))["code"] == "not_found"
    resp = client.delete("/healthz")
    assert resp.status_code == 405
    assert _error(resp)["code"] == "method_not_allowed"


BROWSER = {"Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}


def test_browsers_get_a_page_for_unknown_routes_and_methods_outside_the_api(client: TestClient) -> None:
    missing = client.get("/nope", headers=BROWSER)
    assert missing.status_code == 404 and missing.headers["content-type"].startswith("text/html")
    assert "Page not found" in missing.text and "There is nothing at this address." in missing.text
    assert "frame-ancestors 'none'" in missing.headers["content-security-policy"]
    wrong_method = client.delete("/healthz", headers=BROWSER)
    assert wrong_method.status_code == 405 and wrong_method.headers["content-type"].startswith("text/html")
    assert "cannot be used this way" in wrong_method.text and "GET" in wrong_method.headers["allow"]
    # API and webhook clients keep the JSON error shape, even when they say they accept HTML.
    for method, path, code in (
        ("GET", "/api/nope", "not_found"),
        ("GET", "/webhooks/nope", "not_found"),
        ("DELETE", "/webhooks/instagram", "method_not_allowed"),
    ):
        resp = client.request(method, path, headers=BROWSER)
        assert resp.headers["content-type"] == "application/json", path
        assert _error(resp)["code"] == code, path


def test_health_and_openapi(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["checks"]["database"] == "ok"
    assert client.get("/openapi.json").json()["info"]["title"] == "replyflow"


def test_list_pagination(client: TestClient, runtime: Runtime, workspace_key: tuple[str, str]) -> None:
    ws_id, secret = workspace_key
    with runtime.session() as session:
        for i in range(5):
            session.add(Account(workspace_id=ws_id, page_id=f"p{i}", instagram_id=f"ig{i}"))
    headers = {"Authorization": f"Bearer {secret}"}
    seen: list[str] = []
    cursor = None
    while True:
        params = {"limit": 2} | ({"cursor": cursor} if cursor else {})
        body = client.get("/api/accounts", headers=headers, params=params).json()
        seen += [a["page_id"] for a in body["items"]]
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert sorted(seen) == [f"p{i}" for i in range(5)] and len(seen) == 5
    bad = client.get("/api/accounts", headers=headers, params={"cursor": "garbage!"})
    assert bad.status_code == 422 and _error(bad)["code"] == "validation_failed"
