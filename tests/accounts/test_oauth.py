"""Connect with Facebook end to end against the emulator's consent page, and every way the callback is refused."""

from __future__ import annotations

import datetime as dt
import html
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select, update
from tests.accounts.conftest import error_of, hidden_inputs

from replyflow.accounts.models import OAuthState, TokenConversion
from replyflow.accounts.oauth import OAUTH_COOKIE
from replyflow.config import Settings
from replyflow.runtime import Runtime
from replyflow.sandbox.models import DemoWorld

START = "/api/instagram/oauth/start"


def _start(client: TestClient, headers: dict[str, str]) -> str:
    response = client.post(START, headers=headers)
    assert response.status_code == 200, response.text
    assert OAUTH_COOKIE in response.cookies
    set_cookie = response.headers["set-cookie"]
    assert "HttpOnly" in set_cookie and "SameSite=lax" in set_cookie and "Path=/oauth/facebook" in set_cookie
    url: str = response.json()["authorize_url"]
    return url


def _consent(sandbox_app: Any, authorize_url: str, *, decision: str = "continue") -> str:
    """Click through the emulator's Facebook Login dialog; returns where it sends the browser back to."""
    with TestClient(sandbox_app, base_url="http://sandbox.test") as facebook:
        page = facebook.get(authorize_url)
        assert page.status_code == 200, page.text
        assert "is requesting access to" in page.text
        form: dict[str, Any] = {k: html.unescape(v) for k, v in hidden_inputs(page.text).items()}
        form["granted"] = [s for s in form["scope"].split(",") if s != "public_profile"]
        form["pages"] = parse_pages(page.text)
        form["decision"] = decision
        answer = facebook.post(urlsplit(authorize_url).path, data=form, follow_redirects=False)
        assert answer.status_code == 303, answer.text
        location: str = answer.headers["location"]
        return location


def parse_pages(page: str) -> list[str]:
    import re

    return re.findall(r'name="pages" value="([^"]+)"', page)


def _callback_path(location: str) -> str:
    parts = urlsplit(location)
    assert parts.netloc == "testserver" and parts.path == "/oauth/facebook/callback"
    return f"{parts.path}?{parts.query}"


def _oauth_error(response: Any) -> str:
    """The code a browser is sent back to the Integrations page with (it explains it; see the web tests)."""
    assert response.status_code == 302, response.text
    location: str = response.headers["location"]
    target = urlsplit(location)
    assert target.path == "/app/integrations" and target.fragment == "step-connect"
    assert response.headers["cache-control"] == "no-store"
    (code,) = parse_qs(target.query)["oauth_error"]
    return code


def _count(runtime: Runtime, model: Any) -> int:
    with runtime.session() as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


def test_connect_with_facebook_end_to_end(
    client: TestClient,
    auth_headers: dict[str, str],
    sandbox_app: Any,
    demo: DemoWorld,
    settings: Settings,
    runtime: Runtime,
    tmp_path: Path,
) -> None:
    authorize_url = _start(client, auth_headers)
    query = parse_qs(urlsplit(authorize_url).query)
    assert authorize_url.startswith("http://sandbox.test/v25.0/dialog/oauth?")
    assert query["redirect_uri"] == ["http://testserver/oauth/facebook/callback"]
    assert query["client_id"] == [settings.app_id]
    assert "instagram_manage_messages" in query["scope"][0].split(",")
    state = query["state"][0]

    location = _consent(sandbox_app, authorize_url)
    assert "code=" in location and f"state={state}" in location

    callback = client.get(_callback_path(location), follow_redirects=False)

    assert callback.status_code == 302, callback.text
    target = urlsplit(callback.headers["location"])
    assert target.path == "/app/integrations"
    conversion_id = parse_qs(target.query)["conversion_id"][0]
    assert "code=" not in callback.headers["location"]
    conversion = client.get(f"/api/instagram/conversions/{conversion_id}", headers=auth_headers).json()
    assert conversion["long_lived"] is True
    roastery = next(p for p in conversion["pages"] if p["page_id"] == demo.page_id)
    assert roastery["ready"] is True

    saved = client.post(
        "/api/instagram/save-page-token",
        json={"conversion_id": conversion_id, "page_id": demo.page_id},
        headers=auth_headers,
    )
    assert saved.status_code == 201 and saved.json()["account"]["webhooks_subscribed"] is True

    # The state is single-use and stored only hashed.
    replay = client.get(_callback_path(location), follow_redirects=False)
    assert _oauth_error(replay) == "oauth_state_used"
    replay_json = client.get(_callback_path(location), headers={"Accept": "application/json"})
    assert replay_json.status_code == 400 and "already used" in error_of(replay_json)["message"]
    db = Path(settings.database_url.removeprefix("sqlite:///"))
    stored = b"".join(p.read_bytes() for p in db.parent.glob(db.name + "*"))
    assert state.encode() not in stored


def test_callback_can_answer_json(
    client: TestClient, auth_headers: dict[str, str], sandbox_app: Any, demo: DemoWorld
) -> None:
    location = _consent(sandbox_app, _start(client, auth_headers))
    response = client.get(_callback_path(location), headers={"Accept": "application/json"})
    assert response.status_code == 200
    body = response.json()
    assert body["conversion_id"].startswith("conv_") and {p["page_id"] for p in body["pages"]} >= {demo.page_id}


def test_cancelled_dialog_stores_nothing(
    client: TestClient, auth_headers: dict[str, str], sandbox_app: Any, runtime: Runtime
) -> None:
    location = _consent(sandbox_app, _start(client, auth_headers), decision="cancel")
    assert "error=access_denied" in location

    response = client.get(_callback_path(location), follow_redirects=False)

    assert _oauth_error(response) == "oauth_denied"
    assert _count(runtime, TokenConversion) == 0


def test_callback_in_another_browser_is_refused(
    app: Any, client: TestClient, auth_headers: dict[str, str], sandbox_app: Any, runtime: Runtime
) -> None:
    location = _consent(sandbox_app, _start(client, auth_headers))
    # A victim's browser (no cookie from the start call) is sent the attacker's callback link.
    with TestClient(app) as victim:
        response = victim.get(_callback_path(location), headers={"Accept": "application/json"})
    assert response.status_code == 403
    assert error_of(response)["code"] == "oauth_browser_mismatch"
    assert _count(runtime, TokenConversion) == 0
    # Spent: even the right browser cannot use it afterwards.
    assert _oauth_error(client.get(_callback_path(location), follow_redirects=False)) == "oauth_state_used"


def test_expired_state_is_refused(
    client: TestClient, auth_headers: dict[str, str], sandbox_app: Any, runtime: Runtime
) -> None:
    location = _consent(sandbox_app, _start(client, auth_headers))
    with runtime.session() as session:
        session.execute(update(OAuthState).values(expires_at=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)))
    response = client.get(_callback_path(location), headers={"Accept": "application/json"})
    assert response.status_code == 400
    assert error_of(response)["code"] == "oauth_state_expired"
    assert _count(runtime, TokenConversion) == 0


@pytest.mark.parametrize(
    "query",
    ["code=AQxyz&state=forged", "code=AQxyz", "state=&code=AQxyz", "error=access_denied&state=forged"],
)
def test_unknown_state_is_refused(client: TestClient, runtime: Runtime, query: str) -> None:
    response = client.get(f"/oauth/facebook/callback?{query}", headers={"Accept": "application/json"})
    assert response.status_code == 400
    assert error_of(response)["code"] == "oauth_state_invalid"
    assert "AQxyz" not in response.text
    assert _count(runtime, TokenConversion) == 0


def test_a_refused_callback_sends_the_browser_back_with_a_stable_code(client: TestClient, runtime: Runtime) -> None:
    client.cookies.set(OAUTH_COOKIE, "nonce", path="/oauth/facebook")
    response = client.get(
        "/oauth/facebook/callback?code=AQxyz&state=forged&error_description=%3Cscript%3E",
        headers={"Accept": "text/html,application/xhtml+xml"},
        follow_redirects=False,
    )
    assert _oauth_error(response) == "oauth_state_invalid"
    # Nothing of the query travels on, and the flow's cookie is cleared.
    assert "AQxyz" not in response.headers["location"] and "script" not in response.headers["location"]
    assert f"{OAUTH_COOKIE}=" in response.headers["set-cookie"] and "Max-Age=0" in response.headers["set-cookie"]
    assert _count(runtime, TokenConversion) == 0


def test_rejected_code_is_a_clear_error(
    client: TestClient, auth_headers: dict[str, str], sandbox_app: Any, runtime: Runtime
) -> None:
    location = _consent(sandbox_app, _start(client, auth_headers))
    tampered = location.replace("code=", "code=AQtampered")
    response = client.get(_callback_path(tampered), headers={"Accept": "application/json"})
    assert response.status_code == 400
    assert error_of(response)["code"] == "oauth_code_rejected"
    assert _count(runtime, TokenConversion) == 0


def test_start_needs_an_api_key(client: TestClient) -> None:
    assert client.post(START).status_code == 401
