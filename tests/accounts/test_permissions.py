"""The one list of required permissions: complete, explained, linked, and the same in the setup guide."""

from __future__ import annotations

from pathlib import Path

from replyflow.accounts.permissions import (
    OAUTH_SCOPES,
    PERMISSIONS,
    REQUIRED_SCOPES,
    missing_permissions,
    permission_hint,
)

GUIDE = Path(__file__).resolve().parents[2] / "docs" / "meta-setup.md"


def test_required_set_is_the_one_issue_5_names() -> None:
    assert set(REQUIRED_SCOPES) == {
        "pages_show_list",
        "pages_manage_metadata",
        "pages_read_engagement",
        "instagram_basic",
        "instagram_manage_comments",
        "instagram_manage_messages",
    }
    assert "business_management" in OAUTH_SCOPES and "business_management" not in REQUIRED_SCOPES


def test_every_permission_says_why_and_links_its_docs() -> None:
    for permission in PERMISSIONS:
        assert len(permission.why) > 30
        assert permission.docs_url == f"https://developers.facebook.com/docs/permissions#{permission.name}"
        assert permission.required or permission.when


def test_missing_and_hint() -> None:
    assert missing_permissions(["pages_show_list", "instagram_basic"]) == [
        "pages_manage_metadata",
        "pages_read_engagement",
        "instagram_manage_comments",
        "instagram_manage_messages",
    ]
    hint = permission_hint(["instagram_manage_messages"])
    assert "https://developers.facebook.com/tools/explorer/" in hint
    assert "#instagram_manage_messages" in hint


def test_the_setup_guide_explains_each_permission_as_the_code_does() -> None:
    guide = GUIDE.read_text(encoding="utf-8")
    for permission in PERMISSIONS:
        assert permission.docs_url in guide
        assert permission.why in guide
    assert "replyflow doctor" in guide and "MESSAGING" in guide
