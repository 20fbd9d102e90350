"""The dashboard's pages against the Graph API emulator: connecting, accounts, rules, the dry run and activity."""

from __future__ import annotations

import re
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import select

from replyflow.accounts.models import Account
from replyflow.automation.models import Rule, Run
from replyflow.runtime import Runtime
from tests.web.conftest import connect_demo, csrf_of, user_token


def _field_errors(html: str) -> list[str]:
    return re.findall(r'class="field-error"[^>]*>([^<]*)<', html)


def _rule_form(account_id: str, media_id: str, **overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "account_id": account_id,
        "name": "Roast giveaway",
        "enabled": "on",
        "posts_mode": "specific",
        "media_ids": [media_id],
        "match": "contains_any",
        "keywords": "roast, link",
        "exclude_keywords": "no",
        "public_reply_text": ["Sent you a DM, @{username}!", "Check your inbox 📬"],
        "dm_text": "Here is the early-bird link, {username}",
        "button_title": ["Open the shop"],
        "button_url": ["https://example.com/roast"],
        "once_per_user": "on",
        "priority": "0",
    }
    data.update(overrides)
    return data


def test_every_page_needs_a_session(live_app: Any) -> None:
    with TestClient(live_app) as anonymous:
        for path in ("/app", "/app/integrations", "/app/accounts", "/app/rules", "/app/rules/new", "/app/activity"):
            response = anonymous.get(path, follow_redirects=False)
            assert response.status_code == 303, path
            assert response.headers["location"].startswith("/login")


def test_empty_states_say_what_to_do_first(live: TestClient) -> None:
    assert "Connect your first account" in live.get("/app/accounts").text
    assert "Connect an Instagram account first" in live.get("/app/rules").text
    assert "No comments yet" in live.get("/app/activity").text
    overview = live.get("/app").text
    assert "Connect your Instagram account" in overview and 'href="/app/integrations"' in overview


def test_converter_lists_pages_and_connects_one_without_showing_tokens(
    live: TestClient, emulator: Any, live_runtime: Runtime
) -> None:
    token = user_token(emulator)
    csrf = csrf_of(live, "/app/integrations")
    converted = live.post("/app/integrations/convert", data={"csrf_token": csrf, "user_access_token": token})
    assert converted.status_code == 200
    page = converted.text
    assert "Demo Roastery" in page and "@demo.roastery" in page and "Ready" in page
    # The demo Page without Instagram is listed as not ready, with the problem and its fix in plain words.
    assert "No Instagram account linked" in page and "Not ready" in page
    assert "has no Instagram professional account linked" in page and "Fix:" in page
    assert token not in page

    account_id = connect_demo(live, emulator)
    result = live.get(f"/app/integrations?account_id={account_id}")
    assert "Subscribed" in result.text and "Token valid" in result.text
    assert f"/app/rules/new?account_id={account_id}" in result.text

    accounts = live.get("/app/accounts").text
    assert "@demo.roastery" in accounts and "Token valid" in accounts and "0 of 750" in accounts
    with live_runtime.session() as session:
        stored = session.scalars(select(Account)).all()
        assert len(stored) == 1 and stored[0].token_ciphertext is not None
        page_token = emulator.page_token(user_token=token, page_id=emulator.demo.page_id)
    for path in ("/app", "/app/integrations", "/app/accounts", "/app/rules/new", "/app/activity"):
        html = live.get(path).text
        for secret in (token, page_token, emulator.demo.user_token):
            assert secret not in html, path
        assert not re.search(r"EAA[A-Za-z0-9]{20,}", html), path


def test_converter_explains_bad_tokens_next_to_the_field(live: TestClient, emulator: Any) -> None:
    csrf = csrf_of(live, "/app/integrations")
    cases = {
        "not a token at all": "token",
        user_token(emulator, scopes=["pages_show_list"]): "instagram_manage_messages",
    }
    for token, expected in cases.items():
        response = live.post("/app/integrations/convert", data={"csrf_token": csrf, "user_access_token": token})
        text = response.text
        if response.status_code == 200:
            # Missing permissions do not stop the conversion: the Pages step explains them.
            assert "missing" in text and expected in text
            continue
        assert response.status_code in (400, 422)
        errors = _field_errors(text)
        assert errors, text
        assert 'id="token-error"' in text and 'aria-invalid="true"' in text
        assert token not in text
    expired = user_token(emulator)
    emulator.invalidate_token(expired, reason="expired")
    response = live.post("/app/integrations/convert", data={"csrf_token": csrf, "user_access_token": expired})
    assert response.status_code == 400
    assert "expired" in " ".join(_field_errors(response.text))


def test_converter_rejects_expired_conversions_calmly(live: TestClient) -> None:
    page = live.get("/app/integrations?conversion_id=conv_doesnotexist").text
    assert "Start again" in page
    csrf = csrf_of(live, "/app/integrations")
    refused = live.post("/app/integrations/save", data={"csrf_token": csrf, "conversion_id": "conv_x", "page_id": "1"})
    assert refused.status_code == 404 and "Start again" in refused.text


def test_connect_with_facebook_starts_the_login_dialog(live: TestClient) -> None:
    csrf = csrf_of(live, "/app/integrations")
    response = live.post("/app/integrations/connect", data={"csrf_token": csrf}, follow_redirects=False)
    assert response.status_code == 303
    assert "dialog/oauth" in response.headers["location"] and "state=" in response.headers["location"]
    assert "rf_oauth=" in response.headers["set-cookie"]


def test_a_failed_facebook_sign_in_is_explained_on_the_integrations_page(live: TestClient) -> None:
    # A refused callback (here: a state replyflow never issued) sends the browser back with a stable code.
    landed = live.get("/oauth/facebook/callback?code=AQxyz&state=forged")
    assert landed.status_code == 200 and landed.url.path == "/app/integrations"
    assert landed.url.params["oauth_error"] == "oauth_state_invalid"
    alert = re.search(r'<div class="alert alert-warning" role="alert" id="oauth-error">(.*?)</div>', landed.text, re.S)
    assert alert is not None and "not one replyflow started" in alert.group(1)
    assert "Start &#39;Connect with Facebook&#39; again" in alert.group(1) and "AQxyz" not in landed.text

    cancelled = live.get("/app/integrations?oauth_error=oauth_denied").text
    assert "The Facebook dialog was cancelled or did not grant access" in cancelled
    # Only known codes map to texts: anything else reads as the generic failure and is never echoed.
    forged = live.get("/app/integrations", params={"oauth_error": "<b>Call +1 555 0100 for help</b>"}).text
    assert "Connecting with Facebook did not work." in forged and "555 0100" not in forged
    assert 'id="oauth-error"' not in live.get("/app/integrations").text


def test_doctor_runs_from_the_page(live: TestClient, emulator: Any) -> None:
    connect_demo(live, emulator)
    partial = live.get("/app/integrations/doctor", headers={"HX-Request": "true"})
    assert partial.status_code == 200
    assert "App credentials" in partial.text and "@demo.roastery" in partial.text
    full = live.get("/app/integrations/doctor")
    assert "<html" in full.text and "App credentials" in full.text


def test_account_check_and_disconnect(live: TestClient, emulator: Any, live_runtime: Runtime) -> None:
    account_id = connect_demo(live, emulator)
    csrf = csrf_of(live, "/app/accounts")
    checked = live.post(f"/app/accounts/{account_id}/check", data={"csrf_token": csrf})
    assert "everything is in order" in checked.text
    assert "Disconnect @demo.roastery?" in live.get(f"/app/accounts/{account_id}/disconnect").text
    gone = live.post(f"/app/accounts/{account_id}/disconnect", data={"csrf_token": csrf})
    assert "is disconnected" in gone.text and "Connect your first account" in gone.text
    with live_runtime.session() as session:
        account = session.get(Account, account_id)
        assert account is not None and account.token_ciphertext is None
    other = live.get("/app/accounts/acc_someone_else/disconnect")
    assert other.status_code == 404 and "Not found" in other.text


def test_rule_builder_shows_posts_and_saves_a_rule(live: TestClient, emulator: Any, live_runtime: Runtime) -> None:
    account_id = connect_demo(live, emulator)
    builder = live.get(f"/app/rules/new?account_id={account_id}").text
    media_id = emulator.demo.media_ids[0]
    assert f'value="{media_id}"' in builder and "Comment ROAST" in builder
    assert "/assets/media/" in builder  # thumbnails
    csrf = csrf_of(live, "/app/rules")
    saved = live.post("/app/rules/new", data={"csrf_token": csrf, **_rule_form(account_id, media_id)})
    assert saved.status_code == 200 and "is saved and on" in saved.text
    assert "Roast giveaway" in saved.text
    with live_runtime.session() as session:
        rule = session.scalars(select(Rule)).one()
        assert rule.media_ids == [media_id] and rule.keywords == ["roast", "link"]
        assert rule.private_reply == {
            "text": "Here is the early-bird link, {username}",
            "buttons": [{"title": "Open the shop", "url": "https://example.com/roast"}],
            "quick_replies": [],
            "delay": None,
        }
        assert rule.public_reply is not None and len(rule.public_reply["texts"]) == 2
        rule_id = rule.id

    toggled = live.post(f"/app/rules/{rule_id}/toggle", data={"csrf_token": csrf}, headers={"HX-Request": "true"})
    assert toggled.status_code == 200 and "“Roast giveaway” is off" in toggled.text
    assert 'id="toggle-input-' in toggled.text and "<html" not in toggled.text
    edited = live.post(
        f"/app/rules/{rule_id}",
        data={"csrf_token": csrf, **_rule_form(account_id, media_id, dm_text="New text", enabled="on")},
    )
    assert "is saved" in edited.text
    with live_runtime.session() as session:
        rule = session.get(Rule, rule_id)
        assert rule is not None and rule.enabled and rule.private_reply is not None
        assert rule.private_reply["text"] == "New text"

    assert "Delete “Roast giveaway”?" in live.get(f"/app/rules/{rule_id}/delete").text
    deleted = live.post(f"/app/rules/{rule_id}/delete", data={"csrf_token": csrf})
    assert "is deleted" in deleted.text and "No rules yet" in deleted.text


def test_rule_builder_puts_each_error_next_to_its_field(live: TestClient, emulator: Any) -> None:
    account_id = connect_demo(live, emulator)
    csrf = csrf_of(live, "/app/rules")
    bad = _rule_form(
        account_id,
        "",
        name="",
        media_ids=[],
        button_url=["http://not-https.example"],
        public_reply_text=["Hi {nickname}"],
    )
    response = live.post("/app/rules/new", data={"csrf_token": csrf, **bad})
    assert response.status_code == 422
    html = response.text
    assert "The rule was not saved." in html
    assert re.search(r'id="name"[^>]*aria-invalid="true"', html)
    assert 'id="name-error"' in html and "can’t be empty" in html
    assert 'id="button_url.0-error"' in html and "https://" in html
    assert 'id="public_reply_text.0-error"' in html and "{nickname}" in html
    # What was typed comes back (nothing to type again), minus nothing secret.
    assert 'value="Hi {nickname}"' in html and 'value="http://not-https.example"' in html

    no_posts = live.post("/app/rules/new", data={"csrf_token": csrf, **_rule_form(account_id, "", media_ids=[])}).text
    assert 'id="media_ids-error"' in no_posts and "Pick at least one post" in no_posts
    foreign = live.post("/app/rules/new", data={"csrf_token": csrf, **_rule_form(account_id, "17800000000000999")}).text
    assert 'id="media_ids-error"' in foreign and "is not a post or reel of @demo.roastery" in foreign
    keywords = live.post(
        "/app/rules/new", data={"csrf_token": csrf, **_rule_form(account_id, "", posts_mode="any", keywords="")}
    ).text
    assert 'id="keywords-error"' in keywords and "Add at least one keyword" in keywords


def test_test_this_rule_says_match_or_why_not(live: TestClient, emulator: Any) -> None:
    account_id = connect_demo(live, emulator)
    csrf = csrf_of(live, "/app/rules")
    form = _rule_form(account_id, emulator.demo.media_ids[0])
    htmx = {"HX-Request": "true"}
    yes = live.post("/app/rules/test", data={"csrf_token": csrf, **form, "sample_text": "ROAST please!"}, headers=htmx)
    assert "✓ This comment would be answered." in yes.text and "roast" in yes.text
    assert "Here is the early-bird link, alex.rivera" in yes.text
    no = live.post("/app/rules/test", data={"csrf_token": csrf, **form, "sample_text": "lovely"}, headers=htmx)
    assert "✗ Not answered." in no.text and "does not contain the rule" in no.text
    excluded = live.post(
        "/app/rules/test", data={"csrf_token": csrf, **form, "sample_text": "no roast for me"}, headers=htmx
    )
    assert "excluded words" in excluded.text
    broken = live.post(
        "/app/rules/test", data={"csrf_token": csrf, **form, "name": "", "sample_text": "roast"}, headers=htmx
    )
    assert "Fix the rule first" in broken.text


def test_activity_lists_runs_with_reasons_and_filters(
    live: TestClient, emulator: Any, live_runtime: Runtime, live_user: Any
) -> None:
    account_id = connect_demo(live, emulator)
    with live_runtime.session() as session:
        session.add_all(
            [
                Run(
                    id="run_0001",
                    workspace_id=live_user.workspace_id,
                    account_id=account_id,
                    comment_id="c1",
                    media_id="m1",
                    text="is this available?",
                    username="sam",
                    status="skipped",
                    reason="no_keyword",
                ),
                Run(
                    id="run_0002",
                    workspace_id=live_user.workspace_id,
                    account_id=account_id,
                    comment_id="c2",
                    media_id="m1",
                    text="LINK please",
                    username="ana",
                    status="done",
                    dm_state="sent",
                ),
            ]
        )
    page = live.get("/app/activity").text
    assert "is this available?" in page and "does not contain the rule" in page
    assert "LINK please" in page and "Done" in page and "See the conversation" in page
    assert 'hx-trigger="every 3s"' in page
    feed = live.get("/app/activity/feed?status=skipped", headers={"HX-Request": "true"}).text
    assert "is this available?" in feed and "LINK please" not in feed and "<html" not in feed
    filtered = live.get("/app/activity?status=failed").text
    assert "Nothing matches these filters" in filtered


def test_post_picker_reloads_for_another_account(live: TestClient, emulator: Any) -> None:
    account_id = connect_demo(live, emulator)
    grid = live.get(f"/app/rules/posts?account_id={account_id}", headers={"HX-Request": "true"})
    assert grid.status_code == 200 and "<html" not in grid.text
    assert grid.text.count('name="media_ids"') == len(emulator.demo.media_ids)
    other = live.get("/app/rules/posts?account_id=acc_not_mine", headers={"HX-Request": "true"})
    assert other.status_code == 404
    # htmx failures land in the page's notice area, in plain words.
    assert other.headers["HX-Retarget"] == "#notice" and "No connected account" in other.text


def test_demo_user_gets_a_fresh_password_each_time(runtime: Runtime) -> None:
    from replyflow.workspaces import service, users

    with runtime.session() as session:
        workspace, _ = service.create_workspace(session=session, name="Demo")
        first = users.ensure_demo_user(session=session, workspace=workspace)
        again = users.ensure_demo_user(session=session, workspace=workspace)
        kept = users.ensure_demo_user(session=session, workspace=workspace, reset_password=False)
        assert first.user.id == again.user.id == kept.user.id and first.user.email == users.DEMO_EMAIL
        assert first.password and again.password and first.password != again.password and kept.password is None
        assert users.verify_credentials(session=session, email=users.DEMO_EMAIL, password=again.password)
        assert users.verify_credentials(session=session, email=users.DEMO_EMAIL, password=first.password) is None
