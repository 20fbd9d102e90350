"""The team in a real browser (Debian's Chromium through Playwright, against ``replyflow serve``): an owner
invites a colleague, the colleague joins with the link, is refused what a member may not do, is made an admin,
and the audit log tells the story. Screenshots go to docs/screenshots/ (members, invite-accept, audit-log)."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.web.test_browser import (  # noqa: F401 (fixtures)
    CHROMIUM,
    VIEWPORT,
    Server,
    _check_page,
    _sign_in,
    browser,
    page,
    server,
)

pytestmark = [pytest.mark.browser, pytest.mark.xdist_group("browser")]

COLLEAGUE = "barista@example.com"


def test_invite_a_colleague_who_joins_as_member_and_becomes_admin(page: Any, browser: Any, server: Server) -> None:  # noqa: F811
    _sign_in(page)
    page.get_by_role("link", name="Members").click()
    page.wait_for_url("**/app/members")
    page.get_by_label("Email address").fill(COLLEAGUE)
    page.get_by_role("radio", name=re.compile(r"^\s*Member")).check()
    page.get_by_role("button", name="Create invitation").click()
    link_box = page.get_by_label("Invitation link (works once, for 7 days)")
    link = link_box.input_value()
    assert link.startswith(f"{server.url}/invite/")
    assert COLLEAGUE in page.locator(".invitation-row").inner_text()
    _check_page(page, "members")

    # The colleague opens the link in their own browser.
    other = browser.new_context(viewport=VIEWPORT, base_url=server.url, locale="en-GB")
    try:
        colleague = other.new_page()
        colleague.goto(link)
        assert colleague.get_by_role("heading", name="Join Demo Roastery").is_visible()
        assert "as member" in colleague.locator("main").inner_text()
        _check_page(colleague, "invite-accept")
        colleague.get_by_label("Password", exact=True).fill("my own long password")
        colleague.get_by_label("Repeat the password").fill("my own long password")
        colleague.get_by_role("button", name="Join the workspace").click()
        colleague.wait_for_url("**/app")
        assert "You joined as member" in colleague.locator(".flash").inner_text()
        nav = colleague.get_by_role("navigation", name="Main")
        assert nav.get_by_role("link", name="Integrations").count() == 0
        assert nav.get_by_role("link", name="Audit log").is_visible()

        # A member cannot connect accounts: the server says so, even at the address itself.
        refused = colleague.goto("/app/integrations")
        assert refused is not None and refused.status == 403
        text = colleague.locator("main").inner_text()
        assert "Your role in this workspace (member) cannot connect" in text and "Ask one of" in text
        colleague.goto("/app/members")
        assert colleague.get_by_role("button", name="Create invitation").count() == 0

        # The owner makes them an admin; it holds at their very next page.
        page.reload()
        page.get_by_label(f"Role of {COLLEAGUE}").select_option("admin")
        page.get_by_role("button", name=f"Change role of {COLLEAGUE}").click()
        page.wait_for_url("**/app/members")
        assert f"{COLLEAGUE} is now admin" in page.locator(".flash").inner_text()
        colleague.goto("/app")
        assert colleague.get_by_role("navigation", name="Main").get_by_role("link", name="Integrations").is_visible()
        assert colleague.goto("/app/integrations").status == 200  # type: ignore[union-attr]
    finally:
        other.close()

    page.get_by_role("link", name="Audit log").click()
    page.wait_for_url("**/app/audit")
    log = page.locator("#audit-log").inner_text()
    assert f"invited {COLLEAGUE} as member" in log
    assert "accepted the invitation to join as member" in log and "joined the workspace as member" in log
    assert f"changed the role of {COLLEAGUE} from member to admin" in log
    _check_page(page, "audit-log")
