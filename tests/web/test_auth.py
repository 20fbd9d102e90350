"""Signing in to the dashboard: passwords, sessions, CSRF, the rate limit, expiry and the API's cookie access."""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import re
import subprocess
import sys
from pathlib import Path

from fastapi.testclient import TestClient
from sqlalchemy import select, update

from replyflow.runtime import Runtime
from replyflow.web.models import DashboardSession, LoginFailure
from replyflow.web.sessions import MAX_FAILURES_PER_EMAIL_AND_ADDRESS, SESSION_COOKIE
from replyflow.workspaces.models import User
from tests.web.conftest import PASSWORD, WebUser, csrf_of, form_token, sign_in


def test_root_sends_visitors_to_sign_in_and_pages_need_a_session(client: TestClient) -> None:
    assert client.get("/", follow_redirects=False).headers["location"] == "/login"
    response = client.get("/app/rules", follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == "/login?next=%2Fapp%2Frules"
    # htmx requests are told where to go instead of receiving the sign-in page as a fragment.
    htmx = client.get("/app/activity", headers={"HX-Request": "true"}, follow_redirects=False)
    assert htmx.headers["HX-Redirect"] == "/login"


def test_sign_in_and_out(client: TestClient, web_user: WebUser, runtime: Runtime) -> None:
    response = sign_in(client, web_user.email.upper(), web_user.password, next="/app/rules")
    assert response.status_code == 303
    assert response.headers["location"] == "/app/rules"
    cookie = response.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Secure" not in cookie
    page = client.get("/app")
    assert page.status_code == 200 and web_user.email in page.text
    assert client.get("/", follow_redirects=False).headers["location"] == "/app"

    old_cookie = client.cookies.get(SESSION_COOKIE)
    out = client.post("/logout", data={"csrf_token": csrf_of(client)}, follow_redirects=False)
    assert out.status_code == 303 and out.headers["location"] == "/login"
    assert client.get("/app", follow_redirects=False).status_code == 303
    # The old cookie is dead on the server too, not merely deleted from this browser.
    assert old_cookie
    replay = TestClient(client.app, cookies={SESSION_COOKIE: old_cookie})
    assert replay.get("/app", follow_redirects=False).status_code == 303
    with runtime.session() as session:
        assert session.scalars(select(DashboardSession)).all() == []


def test_wrong_password_and_unknown_email_get_the_same_answer(client: TestClient, web_user: WebUser) -> None:
    wrong = sign_in(client, web_user.email, "not the password")
    unknown = sign_in(client, "nobody@example.com", "not the password")
    for response in (wrong, unknown):
        assert response.status_code == 400
        assert "The email or password is wrong." in response.text
        assert SESSION_COOKIE not in response.headers.get("set-cookie", "")
    # The email stays filled in; the password never comes back.
    assert f'value="{web_user.email}"' in wrong.text
    assert "not the password" not in wrong.text


def test_sign_in_form_needs_its_csrf_nonce(client: TestClient, web_user: WebUser) -> None:
    client.get("/login")
    response = client.post(
        "/login",
        data={"email": web_user.email, "password": web_user.password, "csrf_token": "forged"},
        follow_redirects=False,
    )
    assert response.status_code == 403
    assert "expired" in response.text
    fresh = TestClient(client.app)  # no nonce cookie at all
    token = form_token(client.get("/login").text)
    response = fresh.post(
        "/login",
        data={"email": web_user.email, "password": web_user.password, "csrf_token": token},
        follow_redirects=False,
    )
    assert response.status_code == 403


def test_rate_limit_blocks_guessing_even_with_the_right_password(
    client: TestClient, web_user: WebUser, runtime: Runtime
) -> None:
    for _ in range(MAX_FAILURES_PER_EMAIL_AND_ADDRESS):
        assert sign_in(client, web_user.email, "guess guess guess").status_code == 400
    blocked = sign_in(client, web_user.email, web_user.password)
    assert blocked.status_code == 429
    assert "Too many sign-in attempts" in blocked.text
    assert SESSION_COOKIE not in blocked.headers.get("set-cookie", "")
    with runtime.session() as session:
        rows = session.scalars(select(LoginFailure)).all()
        assert rows and all(web_user.email not in row.key_hash for row in rows)
        # Fifteen minutes later the window has passed.
        for row in rows:
            row.created_at -= dt.timedelta(minutes=16)
    assert sign_in(client, web_user.email, web_user.password).status_code == 303


def test_session_expires_when_idle(signed_in: TestClient, runtime: Runtime) -> None:
    assert signed_in.get("/app").status_code == 200
    with runtime.session() as session:
        session.execute(update(DashboardSession).values(expires_at=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)))
    response = signed_in.get("/app", follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"].startswith("/login")
    with runtime.session() as session:
        assert session.scalars(select(DashboardSession)).all() == []


def test_forged_or_tampered_cookies_are_ignored(client: TestClient, signed_in: TestClient) -> None:
    cookie = signed_in.cookies.get(SESSION_COOKIE)
    assert cookie
    for value in (cookie[:-2] + "xx", "junk", "a" * 2000):
        other = TestClient(client.app, cookies={SESSION_COOKIE: value})
        assert other.get("/app", follow_redirects=False).status_code == 303


def test_unsafe_requests_without_the_csrf_token_change_nothing(signed_in: TestClient, runtime: Runtime) -> None:
    response = signed_in.post("/logout", data={}, follow_redirects=False)
    assert response.status_code == 403
    assert "could not be verified" in response.text
    response = signed_in.post("/logout", data={"csrf_token": "wrong"}, follow_redirects=False)
    assert response.status_code == 403
    with runtime.session() as session:
        assert len(session.scalars(select(DashboardSession)).all()) == 1
    assert signed_in.get("/app").status_code == 200


def test_api_accepts_the_session_cookie_with_the_csrf_header(signed_in: TestClient) -> None:
    assert signed_in.get("/api/accounts").status_code == 200
    token = csrf_of(signed_in)
    # A write without the header is refused even though the cookie is valid.
    missing = signed_in.post("/api/rules", json={})
    assert missing.status_code == 403
    assert missing.json()["error"]["code"] == "csrf_failed"
    wrong = signed_in.post("/api/rules", json={}, headers={"X-CSRF-Token": "not-it"})
    assert wrong.status_code == 403
    with_header = signed_in.post("/api/rules", json={}, headers={"X-CSRF-Token": token})
    assert with_header.status_code == 422
    anonymous = TestClient(signed_in.app)
    assert anonymous.get("/api/accounts").status_code == 401
    assert anonymous.post("/api/rules", json={}, headers={"X-CSRF-Token": token}).status_code == 401


def test_next_parameter_cannot_leave_the_dashboard(client: TestClient, web_user: WebUser) -> None:
    for target in ("https://evil.example/app", "//evil.example/app", "/login", "/\\evil.example"):
        response = sign_in(client, web_user.email, web_user.password, next=target)
        assert response.headers["location"] == "/app", target
        client.cookies.clear()


def test_secure_cookie_when_served_over_https(make_settings: object, runtime: Runtime, web_user: WebUser) -> None:
    from replyflow.app import create_app

    settings = make_settings(public_url="https://replyflow.example.com")  # type: ignore[operator]
    with TestClient(create_app(settings, runtime=runtime), base_url="https://testserver") as client:
        response = sign_in(client, web_user.email, web_user.password)
        assert response.status_code == 303
        assert "Secure" in response.headers["set-cookie"]


def test_passwords_are_stored_as_argon2_hashes(runtime: Runtime, web_user: WebUser) -> None:
    with runtime.session() as session:
        user = session.scalar(select(User).where(User.email == web_user.email))
        assert user is not None
        assert user.password_hash.startswith("$argon2id$")
        assert PASSWORD not in user.password_hash


def test_error_pages_are_calm_html(signed_in: TestClient) -> None:
    response = signed_in.get("/app/no-such-page")
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("text/html")
    assert "Page not found" in response.text and "Traceback" not in response.text
    headers = signed_in.get("/app").headers
    assert headers["x-frame-options"] == "DENY"
    assert "frame-ancestors 'none'" in headers["content-security-policy"]
    assert headers["cache-control"] == "no-store"


def test_vendored_htmx_matches_its_recorded_checksum(client: TestClient) -> None:
    static = Path(__file__).parents[2] / "src/replyflow/web/static/vendor"
    recorded = re.search(r"htmx\.min\.js`.*?`([0-9a-f]{64})`", (static / "VENDORED.md").read_text())
    assert recorded, "VENDORED.md must record htmx.min.js's sha256"
    body = (static / "htmx.min.js").read_bytes()
    assert hashlib.sha256(body).hexdigest() == recorded.group(1)
    served = client.get("/static/vendor/htmx.min.js")
    assert served.status_code == 200 and served.content == body
    assert "immutable" in served.headers["cache-control"]
    assert client.get("/static/../views.py").status_code == 404


def _cli(tmp_path: Path, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("REPLYFLOW_")}
    env["REPLYFLOW_DATABASE_URL"] = f"sqlite:///{tmp_path / 'cli.db'}"
    env["REPLYFLOW_DATA_DIR"] = str(tmp_path / "data")
    return subprocess.run(
        [sys.executable, "-m", "replyflow", *args],
        env=env,
        cwd=tmp_path,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_user_create_reads_the_password_from_stdin_only(tmp_path: Path) -> None:
    assert _cli(tmp_path, "workspace", "create", "Studio", "--json").returncode == 0
    created = _cli(
        tmp_path,
        "user",
        "create",
        "--workspace",
        "Studio",
        "--email",
        "Me@Example.com",
        "--password-stdin",
        "--json",
        stdin="a long enough password\n",
    )
    assert created.returncode == 0, created.stderr
    assert '"email": "me@example.com"' in created.stdout.splitlines()[-1]
    assert "a long enough password" not in created.stdout + created.stderr
    short = _cli(
        tmp_path,
        "user",
        "create",
        "--workspace",
        "Studio",
        "--email",
        "b@example.com",
        "--password-stdin",
        stdin="short\n",
    )
    assert short.returncode == 1 and "too short" in short.stderr
    again = _cli(
        tmp_path,
        "user",
        "create",
        "--workspace",
        "Studio",
        "--email",
        "me@example.com",
        "--password-stdin",
        stdin="a long enough password\n",
    )
    assert again.returncode == 1 and "already exists" in again.stderr
    assert _cli(tmp_path, "user", "create", "--help").returncode == 0
    listed = _cli(tmp_path, "user", "list", "--workspace", "Studio", "--json")
    assert "me@example.com" in listed.stdout
    reset = _cli(
        tmp_path,
        "user",
        "set-password",
        "--email",
        "me@example.com",
        "--password-stdin",
        stdin="another long password\n",
    )
    assert reset.returncode == 0, reset.stderr
