"""Members and invitations through the dashboard: inviting by a one-time link (emailed when SMTP is set up),
joining with it, links that expire or were used, changing roles, removing people, and the last owner."""

from __future__ import annotations

import datetime as dt
import re
import socket
import uuid
from collections.abc import Iterator
from email import message_from_bytes
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from fastapi.testclient import TestClient
from sqlalchemy import select, update

from replyflow.app import create_app
from replyflow.audit.models import AuditEvent
from replyflow.logging import redact_text
from replyflow.runtime import Runtime
from replyflow.workspaces import service, users
from replyflow.workspaces.models import ApiKey, Invitation, User
from tests.web.conftest import PASSWORD, WebUser, csrf_of, sign_in

LINK = re.compile(r"http://testserver/invite/([A-Za-z0-9_\-]{40,})")


def _invite(client: TestClient, email: str, role: str = "member") -> Any:
    return client.post(
        "/app/members/invite", data={"csrf_token": csrf_of(client, "/app/members"), "email": email, "role": role}
    )


def _link(response: Any) -> str:
    found = LINK.search(response.text)
    assert found, "the page does not show the invitation link"
    return found.group(0).removeprefix("http://testserver")


def _join(app: Any, path: str, password: str = "a long enough password", repeat: str | None = None) -> Any:
    guest = TestClient(app, raise_server_exceptions=False)
    page = guest.get(path)
    response = guest.post(
        path, data={"password": password, "password_repeat": repeat or password}, follow_redirects=False
    )
    return page, response, guest


def _actions(runtime: Runtime, workspace_id: str) -> list[tuple[str, str, str]]:
    with runtime.session() as session:
        rows = session.scalars(
            select(AuditEvent).where(AuditEvent.workspace_id == workspace_id).order_by(AuditEvent.id)
        ).all()
        return [(e.actor_label, e.action, e.target_label) for e in rows]


def test_invite_join_and_the_link_works_once(
    signed_in: TestClient, web_user: WebUser, app: Any, runtime: Runtime
) -> None:
    invited = _invite(signed_in, "Ana.Lopez@Example.com", role="admin")
    assert invited.status_code == 201
    assert "Invitation ready for ana.lopez@example.com" in invited.text
    assert "This server sends no email" in invited.text  # no SMTP configured: the owner passes it on
    path = _link(invited)
    secret = path.rsplit("/", 1)[1]
    with runtime.session() as session:
        stored = session.scalars(select(Invitation)).one()
        assert stored.role == "admin" and secret not in stored.token_hash  # only a hash is kept
        assert stored.expires_at - stored.created_at == dt.timedelta(days=7)
    assert secret not in redact_text(f"page_failed path={path}")  # should a log line ever name the page
    listed = signed_in.get("/app/members").text
    assert "Waiting to join" in listed and "ana.lopez@example.com" in listed
    assert secret not in listed  # the link was shown once

    page, mismatch, _ = _join(app, path, repeat="something else entirely")
    assert page.status_code == 200 and "Join ws-" in page.text and "as admin" in page.text
    assert mismatch.status_code == 422 and "not the same" in mismatch.text
    _, short, _ = _join(app, path, password="short")
    assert short.status_code == 422 and "too short" in short.text

    _, joined, guest = _join(app, path)
    assert joined.status_code == 303 and joined.headers["location"] == "/app"
    welcome = guest.get("/app")
    assert "You joined as admin" in welcome.text and "ana.lopez@example.com" in welcome.text
    with runtime.session() as session:
        user = session.scalars(select(User).where(User.email == "ana.lopez@example.com")).one()
        assert user.role == "admin" and user.workspace_id == web_user.workspace_id

    again = TestClient(app, raise_server_exceptions=False).get(path)
    assert again.status_code == 410 and "already used" in again.text
    unknown = TestClient(app, raise_server_exceptions=False).get("/invite/not-a-real-link")
    assert unknown.status_code == 404 and "not valid" in unknown.text

    assert _actions(runtime, web_user.workspace_id)[-3:] == [
        (web_user.email, "invitation.created", "ana.lopez@example.com"),
        ("ana.lopez@example.com", "member.added", "ana.lopez@example.com"),
        ("ana.lopez@example.com", "invitation.accepted", "ana.lopez@example.com"),
    ]


def test_expired_and_withdrawn_links_say_so(signed_in: TestClient, app: Any, runtime: Runtime) -> None:
    expired_path = _link(_invite(signed_in, "late@example.com"))
    with runtime.session() as session:
        session.execute(
            update(Invitation)
            .where(Invitation.email == "late@example.com")
            .values(expires_at=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1))
        )
    page, joined, _ = _join(app, expired_path)
    assert page.status_code == 410 and "expired" in page.text and "invite you again" in page.text
    assert joined.status_code == 410
    assert "late@example.com" not in signed_in.get("/app/members").text  # no longer pending

    withdrawn_path = _link(_invite(signed_in, "oops@example.com"))
    with runtime.session() as session:
        invitation_id = session.scalars(select(Invitation.id).where(Invitation.email == "oops@example.com")).one()
    revoked = signed_in.post(
        f"/app/members/invitations/{invitation_id}/revoke", data={"csrf_token": csrf_of(signed_in)}
    )
    assert "no longer works" in revoked.text
    page, _, _ = _join(app, withdrawn_path)
    assert page.status_code == 410 and "withdrawn" in page.text
    with runtime.session() as session:
        assert session.scalar(select(User).where(User.email == "oops@example.com")) is None


def test_inviting_someone_who_already_signs_in_is_refused_plainly(signed_in: TestClient, web_user: WebUser) -> None:
    response = _invite(signed_in, web_user.email)
    assert response.status_code == 409
    assert "already has a sign-in, in this workspace" in response.text
    bad = _invite(signed_in, "not an address")
    assert bad.status_code == 422 and "does not look like an email address" in bad.text


def test_the_last_owner_can_be_neither_demoted_nor_removed(
    signed_in: TestClient, web_user: WebUser, runtime: Runtime, app: Any
) -> None:
    with runtime.session() as session:
        me = session.scalars(select(User).where(User.email == web_user.email)).one()
        workspace = service.get_workspace(session=session, ref=web_user.workspace_id)
        other = users.create_user(
            session=session, workspace=workspace, email="sam@example.com", password=PASSWORD, role="member"
        )
        my_id, other_id = me.id, other.id
    csrf = csrf_of(signed_in)
    demoted = signed_in.post(f"/app/members/{my_id}/role", data={"csrf_token": csrf, "role": "admin"})
    assert demoted.status_code == 409 and "only owner" in demoted.text
    removed = signed_in.post(f"/app/members/{my_id}/remove", data={"csrf_token": csrf})
    assert removed.status_code == 409 and "only owner" in removed.text
    with runtime.session() as session:
        assert session.get(User, my_id).role == "owner"  # type: ignore[union-attr]

    # Sam signs in, then becomes an owner; now the first owner may step down and Sam may remove them.
    sam = TestClient(app, raise_server_exceptions=False)
    assert sign_in(sam, "sam@example.com", PASSWORD).status_code == 303
    promoted = signed_in.post(f"/app/members/{other_id}/role", data={"csrf_token": csrf, "role": "owner"})
    assert "sam@example.com is now owner" in promoted.text
    stepped_down = signed_in.post(f"/app/members/{my_id}/role", data={"csrf_token": csrf, "role": "member"})
    assert f"{web_user.email} is now member" in stepped_down.text
    # A demoted owner loses the rights at once, on the very next request.
    refused = signed_in.post(f"/app/members/{other_id}/role", data={"csrf_token": csrf, "role": "member"})
    assert refused.status_code == 403
    sam_csrf = csrf_of(sam, "/app/members")
    assert "Remove" in sam.get(f"/app/members/{my_id}/remove").text
    gone = sam.post(f"/app/members/{my_id}/remove", data={"csrf_token": sam_csrf})
    assert "can no longer sign in" in gone.text
    # The removed person's open session ended with it.
    assert signed_in.get("/app", follow_redirects=False).status_code == 303
    assert ("sam@example.com", "member.removed", web_user.email) in _actions(runtime, web_user.workspace_id)


# -- email ---------------------------------------------------------------------------------------------------


class _Inbox:
    def __init__(self) -> None:
        self.messages: list[Any] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # aiosmtpd calls it by this name
        self.messages.append((envelope.rcpt_tos, message_from_bytes(envelope.content)))
        return "250 Message accepted for delivery"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def smtp_server() -> Iterator[tuple[int, _Inbox]]:
    inbox = _Inbox()
    port = _free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield port, inbox
    finally:
        controller.stop()


def _mailing_client(make_settings: Any, port: int) -> tuple[TestClient, Runtime, str]:
    from replyflow.db import Base

    settings = make_settings(
        smtp_host="127.0.0.1", smtp_port=port, smtp_security="none", smtp_from="replyflow <team@example.com>"
    )
    runtime = Runtime(settings)
    Base.metadata.create_all(runtime.engine)
    email = f"owner-{uuid.uuid4().hex[:6]}@example.com"
    with runtime.session() as session:
        workspace, _ = service.create_workspace(session=session, name="Mail Roastery")
        users.create_user(session=session, workspace=workspace, email=email, password=PASSWORD)
    client = TestClient(create_app(settings, runtime=runtime), raise_server_exceptions=False)
    assert sign_in(client, email, PASSWORD).status_code == 303
    return client, runtime, email


def test_invitations_are_emailed_when_smtp_is_configured(make_settings: Any, smtp_server: tuple[int, _Inbox]) -> None:
    port, inbox = smtp_server
    client, runtime, owner = _mailing_client(make_settings, port)
    try:
        invited = _invite(client, "kim@example.com", role="member")
        assert invited.status_code == 201 and "We emailed this link to kim@example.com" in invited.text
        assert len(inbox.messages) == 1
        recipients, message = inbox.messages[0]
        assert recipients == ["kim@example.com"]
        assert message["Subject"] == "Join Mail Roastery on replyflow"
        assert message["From"] == "replyflow <team@example.com>"
        body = message.get_payload(decode=True).decode()
        assert f"{owner} invited you" in body and "as member" in body and "7 days" in body
        emailed = LINK.search(body)
        assert emailed and emailed.group(0).removeprefix("http://testserver") == _link(invited)
        # The emailed link works.
        _, joined, _ = _join(client.app, emailed.group(0).removeprefix("http://testserver"))
        assert joined.status_code == 303
    finally:
        client.close()
        runtime.close()


def test_a_mail_server_that_is_down_still_leaves_the_owner_the_link(make_settings: Any) -> None:
    client, runtime, _ = _mailing_client(make_settings, _free_port())  # nothing listens there
    try:
        invited = _invite(client, "lee@example.com")
        assert invited.status_code == 201
        assert "The email could not be sent" in invited.text and "Send this link to lee@example.com" in invited.text
        assert _link(invited).startswith("/invite/")
    finally:
        client.close()
        runtime.close()


# -- API keys --------------------------------------------------------------------------------------------------

KEY = re.compile(r'value="(rf_[A-Za-z0-9_\-]{20,})"')


def test_owners_create_and_revoke_api_keys_and_everyone_else_only_sees_them(
    signed_in: TestClient, web_user: WebUser, runtime: Runtime, app: Any
) -> None:
    created = signed_in.post("/app/keys", data={"csrf_token": csrf_of(signed_in), "label": "Zapier"})
    assert created.status_code == 201 and "shown only this once" in created.text
    found = KEY.search(created.text)
    assert found
    secret = found.group(1)
    assert signed_in.get("/api/audit-log", headers={"Authorization": f"Bearer {secret}"}).status_code == 200
    listed = signed_in.get("/app/keys").text
    assert secret[:11] in listed and secret not in listed and "Zapier" in listed

    with runtime.session() as session:
        workspace = service.get_workspace(session=session, ref=web_user.workspace_id)
        users.create_user(session=session, workspace=workspace, email="ro@example.com", password=PASSWORD, role="admin")
        key_id = session.scalars(select(ApiKey.id).where(ApiKey.label == "Zapier")).one()
    admin = TestClient(app, raise_server_exceptions=False)
    sign_in(admin, "ro@example.com", PASSWORD)
    seen = admin.get("/app/keys").text
    assert secret[:11] in seen and "Create key" not in seen and "Revoke" not in seen
    assert admin.post(f"/app/keys/{key_id}/revoke", data={"csrf_token": csrf_of(admin)}).status_code == 403

    revoked = signed_in.post(f"/app/keys/{key_id}/revoke", data={"csrf_token": csrf_of(signed_in)})
    assert "stopped working" in revoked.text
    assert signed_in.get("/api/audit-log", headers={"Authorization": f"Bearer {secret}"}).status_code == 401
    actions = _actions(runtime, web_user.workspace_id)
    assert (web_user.email, "api_key.created", f"{secret[:11]}…") in actions
    assert (web_user.email, "api_key.revoked", f"{secret[:11]}…") in actions


# -- two owners demoting each other at once (PostgreSQL) ----------------------------------------------------------


@pytest.mark.postgres
def test_two_owners_demoting_each_other_at_once_leave_one_owner(make_settings: Any, postgres_url: str) -> None:
    import threading
    import time

    from sqlalchemy import text

    from replyflow.db import Base
    from replyflow.workspaces import members
    from replyflow.workspaces.members import LastOwner

    runtime = Runtime(make_settings(database_url=postgres_url))
    Base.metadata.create_all(runtime.engine)
    try:
        with runtime.session() as session:
            workspace, _ = service.create_workspace(session=session, name="Two owners")
            ids = [
                users.create_user(
                    session=session, workspace=workspace, email=f"o{i}@example.com", password=PASSWORD, role="owner"
                ).id
                for i in (1, 2)
            ]
            workspace_id = workspace.id
        outcome: dict[str, Any] = {}

        def demote_second() -> None:
            try:
                with runtime.session() as other:
                    ws = service.get_workspace(session=other, ref=workspace_id)
                    members.change_role(session=other, workspace=ws, user_id=ids[1], role="member")
                outcome["second"] = "demoted"
            except LastOwner:
                outcome["second"] = "refused"

        with runtime.session() as first:
            ws = service.get_workspace(session=first, ref=workspace_id)
            members.change_role(session=first, workspace=ws, user_id=ids[0], role="member")
            thread = threading.Thread(target=demote_second)
            thread.start()
            # Wait until the second transaction is queued behind this one's row lock, then commit. (Asked on
            # another connection: inside a transaction PostgreSQL's activity view is a frozen snapshot.)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                with runtime.engine.connect() as probe:
                    query = "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                    if probe.execute(text(query)).scalar_one() >= 1:
                        break
                time.sleep(0.02)
            else:
                pytest.fail("the second demotion never waited for the first")
        thread.join(timeout=10)
        assert outcome == {"second": "refused"}
        with runtime.session() as session:
            assert members.count_owners(session=session, workspace_id=workspace_id) == 1
    finally:
        runtime.close()
