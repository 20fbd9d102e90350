"""The one list of what replyflow needs from Meta: permissions (and why), the Page task and the webhook fields.

Facts come from ``/work/shared/meta-graph-api-notes.md`` (§1 permissions, §3 subscriptions, §4 tokens).
Everything else in replyflow (conversion, health checks, the OAuth dialog, ``replyflow doctor``, the
dashboard and ``docs/meta-setup.md``) reads from here, so a change in Meta's rules is a change in one file.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

GRAPH_API_EXPLORER_URL = "https://developers.facebook.com/tools/explorer/"
PERMISSIONS_REFERENCE_URL = "https://developers.facebook.com/docs/permissions"
APP_REVIEW_URL = "https://developers.facebook.com/docs/app-review"
PAGE_TASKS_URL = "https://www.facebook.com/business/help/442345745885606"
LINK_INSTAGRAM_URL = "https://www.facebook.com/business/help/898752960195806"


@dataclass(frozen=True)
class Permission:
    """One Facebook Login permission, said in plain words for the people who have to grant it."""

    name: str
    why: str
    required: bool = True
    when: str | None = None  # for a conditional permission: when it matters

    @property
    def docs_url(self) -> str:
        return f"{PERMISSIONS_REFERENCE_URL}#{self.name}"


PERMISSIONS: tuple[Permission, ...] = (
    Permission(
        "pages_show_list",
        "Lists the Facebook Pages you manage, so you can pick the one linked to your Instagram account.",
    ),
    Permission(
        "pages_manage_metadata",
        "Subscribes your Page to replyflow's webhooks, so Meta tells replyflow about new comments and messages.",
    ),
    Permission(
        "pages_read_engagement",
        "Reads your Page and the Instagram account linked to it; Meta requires it to read comments with a Page token.",
    ),
    Permission(
        "instagram_basic",
        "Reads your Instagram profile (username, picture) and your posts and reels, so rules can target them.",
    ),
    Permission(
        "instagram_manage_comments",
        "Reads comments, posts the public reply under a comment, and lets Meta send comment webhooks.",
    ),
    Permission(
        "instagram_manage_messages",
        "Sends the private reply (the DM) to the person who commented. Often forgotten: without it no DM goes out.",
    ),
    Permission(
        "business_management",
        "Lets replyflow see Pages that a Business portfolio (Business Manager) owns, not you personally.",
        required=False,
        when=(
            "Only needed when your Page belongs to a Business portfolio and does not show up without it. "
            "Meta then leaves such Pages out of the list of your Pages."
        ),
    ),
)

_BY_NAME = {p.name: p for p in PERMISSIONS}
REQUIRED_SCOPES: tuple[str, ...] = tuple(p.name for p in PERMISSIONS if p.required)
CONDITIONAL_SCOPES: tuple[str, ...] = tuple(p.name for p in PERMISSIONS if not p.required)
# What "Connect with Facebook" asks for: the required set plus business_management, so Business-owned
# Pages appear without a second round trip (people may still untick it; it is not required).
OAUTH_SCOPES: tuple[str, ...] = (*REQUIRED_SCOPES, *CONDITIONAL_SCOPES)

# The Page task (Meta's replacement for Page roles) the person who connects must have: without it Meta
# refuses to send messages as the Page, whatever the token's permissions.
MESSAGING_TASK = "MESSAGING"
MESSAGING_TASK_WHY = (
    "Meta only sends DMs for a Page when the person who connected it has the 'Messages' task "
    "(MESSAGING) on that Page, for example as a Page admin with full control."
)

# Page-level webhook fields replyflow subscribes the Page to (POST /{page-id}/subscribed_apps). Instagram
# comments themselves are a field of the app's ``instagram`` subscription; Meta delivers them for an account
# only while the app is subscribed to its Page, with a Page token that carries instagram_manage_comments.
PAGE_WEBHOOK_FIELDS: tuple[str, ...] = ("feed", "messages", "messaging_postbacks")
# App-level fields (App Dashboard → Webhooks → Instagram) replyflow needs to hear about.
APP_WEBHOOK_OBJECT = "instagram"
APP_WEBHOOK_FIELDS: tuple[str, ...] = ("comments", "live_comments", "messages", "messaging_postbacks")


# -- Instagram Login (no Facebook Page) ---------------------------------------------------------------------
# meta-graph-api-notes.md §0/§1: Instagram Login uses instagram_business_* scopes on graph.instagram.com.

INSTAGRAM_LOGIN_DOCS_URL = "https://developers.facebook.com/docs/instagram-platform/instagram-api-with-instagram-login"
INSTAGRAM_PROFESSIONAL_URL = "https://help.instagram.com/502981923235522"

INSTAGRAM_PERMISSIONS: tuple[Permission, ...] = (
    Permission(
        "instagram_business_basic",
        "Reads your Instagram profile and your posts and reels, and lets replyflow keep the token fresh.",
    ),
    Permission(
        "instagram_business_manage_comments",
        "Reads comments, posts the public reply under a comment, and lets Meta send comment webhooks.",
    ),
    Permission(
        "instagram_business_manage_messages",
        "Sends the private reply (the DM) to the person who commented, and the messages that follow.",
    ),
)
INSTAGRAM_SCOPES: tuple[str, ...] = tuple(p.name for p in INSTAGRAM_PERMISSIONS)
# Fields replyflow subscribes an Instagram Login account to (POST /me/subscribed_apps on graph.instagram.com).
INSTAGRAM_WEBHOOK_FIELDS: tuple[str, ...] = ("comments", "live_comments", "messages", "messaging_postbacks")

_BY_NAME.update({p.name: p for p in INSTAGRAM_PERMISSIONS})


def missing_instagram_permissions(scopes: Iterable[str]) -> list[str]:
    granted = set(scopes)
    return [name for name in INSTAGRAM_SCOPES if name not in granted]


def permission(name: str) -> Permission | None:
    return _BY_NAME.get(name)


def missing_permissions(scopes: Iterable[str]) -> list[str]:
    """Required permissions a token lacks, in the order of ``PERMISSIONS``."""
    granted = set(scopes)
    return [name for name in REQUIRED_SCOPES if name not in granted]


def missing_permission_problem(name: str) -> str:
    """The plain-words problem line for one missing permission."""
    known = permission(name)
    why = f" It {known.why[0].lower()}{known.why[1:]}" if known else ""
    return f"The token lacks {name}.{why}"


def _docs_url(name: str) -> str:
    known = permission(name)
    return known.docs_url if known else f"{PERMISSIONS_REFERENCE_URL}#{name}"


def permission_hint(names: Iterable[str]) -> str:
    """How to fix missing permissions: where to grant them, and where each is explained."""
    names = list(names)
    if not names:
        return ""
    links = ", ".join(f"{n} ({_docs_url(n)})" for n in names)
    return (
        f"Generate a new token with {', '.join(names)} ticked in Graph API Explorer ({GRAPH_API_EXPLORER_URL}), "
        f"or connect with Facebook again and approve every permission. About each: {links}."
    )
